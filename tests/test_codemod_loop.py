"""Code modifications inside the explore loop, on a toy git repo (fake trainer + real allow-listed modules).

A scripted policy sends, at chosen iterations, a good change, a hostile one, one with a syntax error and one that
passes the smoke test but crashes its run; the heuristic fills every other iteration. The runs report which code
they ran (`code_marker`, file hashes), so the journal shows whether a change was used, kept or reverted.
"""

from __future__ import annotations

import difflib
import hashlib
import subprocess
from pathlib import Path

import pytest
from fakeapp import SyntheticStudy
from toyrepo import write_toy_repo

from agent.__main__ import compose_explore
from agent.loop.explorer import Explorer
from agent.policies import PolicyContext
from agent.policies.heuristic import build as build_heuristic
from agent.reporting.render import render_all
from agent.study.journal import Journal
from agent.study.proposal import Proposal
from agent.study.state import fold
from agent.study.stats import best_node

pytestmark = [pytest.mark.bwrap, pytest.mark.filterwarnings("ignore")]  # bwrap: the real sandbox (tests/conftest.py)
TOY = "mpm_inr/models/toy.py"


def toy_diff(repo: Path, old: str, new: str, path: str = TOY, *, after: tuple[str, str] | None = None) -> str:
    """A git diff replacing `old` by `new` in the repo's file (after the replacement `after`, if given)."""
    text = (repo / path).read_text()
    if after:
        text = text.replace(*after, 1)
    assert old in text
    body = difflib.unified_diff(text.splitlines(True), text.replace(old, new, 1).splitlines(True),
                                fromfile=f"a/{path}", tofile=f"b/{path}")
    return f"diff --git a/{path} b/{path}\n" + "".join(body)


def fingerprint(repo: Path) -> dict:
    """Everything of the user's repository that a study must leave alone."""
    files = {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(repo.rglob("*")) if p.is_file() and ".git" not in p.relative_to(repo).parts}

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=repo, capture_output=True, text=True, check=True).stdout

    return {"files": files, "status": git("status", "--porcelain", "--untracked-files=all"),
            "head": git("rev-parse", "HEAD"), "branch": git("symbolic-ref", "HEAD"),
            "index": hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest()}


class Scripted:
    """Scripted proposals at given iterations (one per attempt, in order), the heuristic everywhere else."""

    name = "scripted"

    def __init__(self, study_dir: Path, script: dict[int, list[tuple[str, str]]], cfg: dict):
        self.script = {k: list(v) for k, v in script.items()}
        self.heuristic = build_heuristic({"seed": 0}, PolicyContext(study_dir=study_dir, config=cfg))
        self.sent: list[tuple[int, str]] = []

    def propose(self, view, slots):
        todo = self.script.get(view.iteration) or []
        if not todo:
            return self.heuristic.propose(view, slots)
        label, diff = todo.pop(0)
        self.sent.append((view.iteration, label))
        best = best_node(view.block_nodes)
        return [Proposal(parent_id=best.node_id, strategy="code-modification", overrides={},
                         mutation=f"[code] {label}", rationale=f"test change {label}",
                         log_entry=f"CODE MODIFICATION:\n  File: {TOY}\n  Change: {label} change\n"
                                   f"  Hypothesis: the {label} change shows in the run's code marker",
                         code_diff=diff)]

    def end_block(self, view):
        return self.heuristic.end_block(view)


def code_events(d: Path, action: str | None = None) -> list[dict]:
    return [e for e in Journal(d).read() if e["event"] == "code" and (action is None or e["action"] == action)]


def test_good_hostile_broken_and_failing_changes_in_the_loop(tmp_path):
    repo = write_toy_repo(tmp_path / "repo")
    before = fingerprint(repo)
    root = tmp_path / "studies"
    study = SyntheticStudy(root / "s", "s", frames=48)  # iterations 1-3 already ran (synthetic journal)
    a = study.add(None, r2=0.90, strategy="baseline")
    b = study.add(a, {"optimizer.lr": 2e-4}, r2=0.93)
    study.add(b, {"model.hidden_dim": 512}, r2=0.92)
    cfg = compose_explore([f"code_dir={repo}", f"root={root}", "name=s", "n_training_frames=48", "n_blocks=1",
                           "n_iter_block=12", "budget.max_iterations=7", "codemod.enabled=true",
                           "codemod.heuristic.stuck_r2=0.01"])
    cfg["codemod"]["smoke"]["overrides"] = ["train.total_steps=10"]
    good = toy_diff(repo, 'MARKER = "base"', 'MARKER = "patched"')
    script = {4: [("early", good)],
              5: [("hostile", toy_diff(repo, "import", "import os  #", "mpm_inr/training/run.py")),
                  ("broken", toy_diff(repo, 'MARKER = "base"', 'MARKER = "base')),
                  ("good", good)],
              6: [("crashing", toy_diff(repo, "MAX_STEPS = 1000000", "MAX_STEPS = 50",
                                        after=('MARKER = "base"', 'MARKER = "patched"')))]}
    out: list[str] = []
    ex = Explorer(cfg, out=out.append)
    ex.study.policy, ex.study.policy_name = Scripted(root / "s", script, cfg), "scripted"
    assert ex.run() == 0
    d = root / "s"
    st = fold(Journal(d).read())
    nodes = {n.iteration: n for n in st.launched_nodes()}
    rejected = [n for n in st.nodes.values() if n.status == "rejected"]
    reasons = [n.error for n in rejected]

    # iteration 4: a change in the first 4 iterations of a block is refused; the heuristic ran instead
    assert any("first 4 iterations" in r for r in reasons)
    assert nodes[4].code_diff is None and nodes[4].metrics["code_marker"] == "base"
    # iteration 5: the hostile diff is refused before anything runs, the broken one fails its smoke test and is
    # reset, the good one is committed and used by its own run
    assert any("mpm_inr/training/run.py" in r and "evaluation code" in r for r in reasons)
    assert any(r.startswith("code modification failed: smoke test (import): SyntaxError") and "git reset --hard"
               in r for r in reasons)
    smoke_failed = code_events(d, "smoke_failed")
    assert len(smoke_failed) == 1 and smoke_failed[0]["rollback"] == "reset"
    assert len(list((d / "code" / "smoke").iterdir())) == 3  # broken, good, crashing: the hostile never ran
    committed = code_events(d, "committed")
    assert [c["iteration"] for c in committed] == [5, 6]
    n5 = nodes[5]
    assert n5.code_commit == committed[0]["commit"] and n5.code_diff == good and n5.status == "ok"
    assert n5.metrics["code_marker"] == "patched" and n5.mutation.startswith("[code] good")
    assert Path(n5.code_dir) == d / "code" / "commits" / n5.code_commit[:12]
    show = subprocess.run(["git", "show", n5.code_commit], cwd=repo, capture_output=True, text=True, check=True)
    assert '+MARKER = "patched"' in show.stdout
    msg = show.stdout.split("\n\n", 1)[1]
    assert "[Iter 5] good change" in msg and f"File: {TOY}" in msg and "Changes: +1 -1" in msg
    assert "Hypothesis: the good change shows in the run's code marker" in msg
    # iteration 6: passes the smoke test (10 steps), crashes its run (100 steps) -> reverted, the loop goes on
    n6 = nodes[6]
    assert n6.status == "crashed" and n6.error.startswith("code modification failed: run crashed")
    reverted = code_events(d, "reverted")
    assert len(reverted) == 1 and reverted[0]["node_id"] == n6.node_id and reverted[0]["rollback"] == "revert"
    assert reverted[0]["commit"] == n6.code_commit
    # iteration 7: config-only, on the reverted code: the good change is still in, the crashing one is gone
    n7 = nodes[7]
    assert n7.code_diff is None and n7.status == "ok" and n7.code_commit == reverted[0]["revert_commit"]
    assert n7.metrics["code_marker"] == "patched"
    toy_at_7 = subprocess.run(["git", "show", f"{n7.code_commit}:{TOY}"], cwd=repo, capture_output=True,
                              text=True, check=True).stdout
    assert "MAX_STEPS = 1000000" in toy_at_7 and n7.metrics["code_sha256"][TOY] == \
        hashlib.sha256(toy_at_7.encode()).hexdigest()
    # every launched node carries its commit, so `git show` gives any node's code
    assert all(n.code_commit and len(n.code_commit) == 40 for n in nodes.values() if n.iteration >= 4)
    # the claude/replay policy field comes from the proposal, the branch is the study's, the user's tree untouched
    assert fingerprint(repo) == before
    branches = subprocess.run(["git", "branch", "--format=%(refname:short)"], cwd=repo, capture_output=True,
                              text=True, check=True).stdout.split()
    assert sorted(branches) == ["explore/s", "main"]
    assert (d / "code" / "work" / TOY).read_text().startswith('MARKER = "patched"')
    # the memory the policy reads next shows every step, in the design document's "Code mod iter N: result" form
    memory = (d / "s_memory.md").read_text()
    obs = memory[memory.index("### Emerging Observations"):]
    assert "- Code mod iter 4: code modification rejected: code modifications are not allowed in the first 4" in obs
    assert "- Code mod iter 5: code modification rejected: touches mpm_inr/training/run.py" in obs
    assert "- Code mod iter 5: code modification failed: smoke test (import): SyntaxError" in obs
    assert (f'- Code mod iter 5: code modification committed: {n5.code_commit[:12]} "[Iter 5] good change"; '
            f"File: {TOY}; Changes: +1 -1; Hypothesis: the good change shows in the run's code marker") in obs
    assert (f"- Code mod iter 6: code modification failed: run crashed: no metrics.json: RuntimeError: toy: 100 "
            f"steps > MAX_STEPS=50; reverted by commit {reverted[0]['revert_commit'][:12]}") in obs
    entry6 = memory[memory.index("## Iter 6:"):memory.index("## Iter 7:")]
    assert "  Result: code modification failed: run crashed" in entry6 and n6.code_commit[:12] in entry6
    analysis = (d / "s_analysis.md").read_text()
    assert "(node 7, scripted, code modification for iteration 5): code modification failed: smoke test" in analysis
    # re-rendering from the journal alone gives the same text
    for p in (d / "s_memory.md", d / "s_analysis.md"):
        p.unlink()
    render_all(d)
    assert (d / "s_memory.md").read_text() == memory and (d / "s_analysis.md").read_text() == analysis
