"""The few git operations code modifications need, each a subprocess with a timeout and a one-line error.

Commands that only read the user's repository run with GIT_OPTIONAL_LOCKS=0, so they never rewrite its index
(a plain `git status` may refresh it). Writes happen only in the study's own worktree and branch
(`explore/<name>`): commits there use a fixed agent identity, skip the user's hooks and signing, and never
touch the user's branch, index or working tree.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

AGENT_IDENT = ("-c", "user.name=mpm-inr agent", "-c", "user.email=agent@mpm-inr.invalid",
               "-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null")


class GitError(RuntimeError):
    """A git command failed (message: the command and git's last error line)."""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0", GIT_EDITOR="true", LC_ALL="C")
    return env


def git(cwd: str | Path, *args: str, stdin: str | bytes | None = None, check: bool = True, timeout: float = 120,
        binary: bool = False) -> subprocess.CompletedProcess:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    try:
        proc = subprocess.run(["git", *AGENT_IDENT, *args], cwd=str(cwd), input=data, capture_output=True,
                              env=_env(), timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise GitError(f"git {' '.join(args[:3])}: timed out after {timeout:g} s") from None
    except OSError as e:
        raise GitError(f"git is not available: {e}") from None
    if check and proc.returncode != 0:
        err = [ln for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip()]
        raise GitError(f"git {' '.join(args[:3])}: {err[-1].strip() if err else f'exit {proc.returncode}'}"[:400])
    if not binary:
        proc.stdout = proc.stdout.decode(errors="replace")
        proc.stderr = proc.stderr.decode(errors="replace")
    return proc


def out(cwd: str | Path, *args: str, **kw) -> str:
    return git(cwd, *args, **kw).stdout.strip()


def toplevel(path: str | Path) -> Path | None:
    """The root of the git working tree containing `path`, or None."""
    try:
        p = git(path, "rev-parse", "--show-toplevel", check=False)
    except GitError:
        return None
    return Path(p.stdout.strip()).resolve() if p.returncode == 0 and p.stdout.strip() else None


def head(cwd: str | Path) -> str:
    return out(cwd, "rev-parse", "HEAD")


def branch_commit(repo: str | Path, branch: str) -> str | None:
    p = git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}", check=False)
    return p.stdout.strip() or None if p.returncode == 0 else None


def worktrees(repo: str | Path) -> dict[Path, str | None]:
    """Registered worktrees: path -> checked-out branch (None when detached)."""
    res: dict[Path, str | None] = {}
    cur: Path | None = None
    for line in out(repo, "worktree", "list", "--porcelain").splitlines():
        if line.startswith("worktree "):
            cur = Path(line[len("worktree "):]).resolve()
            res[cur] = None
        elif line.startswith("branch ") and cur is not None:
            res[cur] = line[len("branch "):].removeprefix("refs/heads/")
    return res


def add_worktree(repo: str | Path, path: Path, branch: str, start: str) -> None:
    """A new branch `branch` at `start`, checked out in a new worktree at `path`."""
    git(repo, "worktree", "prune")
    git(repo, "worktree", "add", "--quiet", "-b", branch, str(path), start)


def dirty_diff(repo: str | Path) -> str:
    """The uncommitted changes to tracked files (working tree + index vs HEAD), as a binary-safe patch."""
    return git(repo, "diff", "--binary", "--no-color", "--no-ext-diff", "HEAD").stdout


def untracked(repo: str | Path) -> list[str]:
    return [ln for ln in out(repo, "ls-files", "--others", "--exclude-standard").splitlines() if ln]


def apply(work: str | Path, diff: str, *, check_only: bool = False) -> None:
    """`git apply` (or `--check`) the diff in the worktree; GitError with git's reason when it does not apply."""
    text = diff if diff.endswith("\n") else diff + "\n"
    git(work, "apply", *(["--check"] if check_only else []), "--whitespace=nowarn", "-", stdin=text)


def commit(work: str | Path, message: str, paths: list[str]) -> str:
    """Stage exactly `paths` (additions, changes, deletions) and commit them; returns the new commit."""
    git(work, "add", "--all", "--", *paths)
    git(work, "commit", "--quiet", "--no-verify", "-F", "-", stdin=message)
    return head(work)


def revert(work: str | Path, commit_sha: str, message: str) -> str:
    """A new commit undoing `commit_sha` on the worktree's branch; returns it."""
    p = git(work, "revert", "--no-commit", commit_sha, check=False)
    if p.returncode != 0:
        git(work, "revert", "--abort", check=False)
        raise GitError(f"git revert {commit_sha[:12]} does not apply cleanly: {p.stderr.strip()[-200:]}")
    git(work, "commit", "--quiet", "--no-verify", "--allow-empty", "-F", "-", stdin=message)
    return head(work)


def reset_hard(work: str | Path, commit_sha: str) -> None:
    """Discard everything in the study's worktree back to `commit_sha` (its branch moves there)."""
    git(work, "reset", "--quiet", "--hard", commit_sha)
    git(work, "clean", "-fdq")


def is_clean(work: str | Path) -> bool:
    return not out(work, "status", "--porcelain")


def show(cwd: str | Path, commit_sha: str, path: str) -> str | None:
    """A file's content at a commit, or None if it does not exist there."""
    p = git(cwd, "show", f"{commit_sha}:{path}", check=False)
    return p.stdout if p.returncode == 0 else None


def is_ancestor(cwd: str | Path, a: str, b: str) -> bool:
    return git(cwd, "merge-base", "--is-ancestor", a, b, check=False).returncode == 0


def export(repo: str | Path, commit_sha: str, dest: Path) -> Path:
    """Write the tree of `commit_sha` to `dest` (atomically: a temporary folder renamed into place)."""
    if dest.exists():
        return dest
    data = git(repo, "archive", "--format=tar", commit_sha, binary=True, timeout=300).stdout
    tmp = dest.parent / f".{dest.name}.tmp{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            tar.extractall(tmp, filter="data")
        os.replace(tmp, dest)
    except FileExistsError:
        shutil.rmtree(tmp, ignore_errors=True)  # another writer finished first: same content
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not dest.exists():
            raise
    return dest
