"""Where a study keeps its code (one place, so the handler, the heuristic's library and the prompt agree).

    <study>/code/work/             git worktree of branch `explore/<name>`: the study's current code
    <study>/code/commits/<sha12>/  read-only export of one commit (what a node's training ran)
    <study>/code/smoke/<attempt>/  smoke-test logs
    <study>/code/datasets/         logs of datasets generated before a confined run
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def code_root(study_dir: str | Path) -> Path:
    return Path(study_dir) / "code"


def worktree(study_dir: str | Path) -> Path:
    return code_root(study_dir) / "work"


def commits_dir(study_dir: str | Path) -> Path:
    return code_root(study_dir) / "commits"


def smoke_dir(study_dir: str | Path) -> Path:
    return code_root(study_dir) / "smoke"


def branch(name: str) -> str:
    return f"explore/{name}"


def source_root(study_dir: str | Path, code_dir: str | Path | None) -> Path:
    """The study's current code: its worktree once it has one, else its code_dir (or this repository).

    Before the first start the branch does not exist yet; it will begin at code_dir's HEAD plus its uncommitted
    changes, i.e. exactly code_dir's working tree.
    """
    work = worktree(study_dir)
    if (work / ".git").exists():
        return work
    return Path(code_dir) if code_dir else REPO
