"""The code-modification handler: the study's own git branch and worktree, and what runs against which commit.

Layout under the study dir (all owned by the study; the user's branch, index and working tree are never written):

    code/work/              git worktree of branch `explore/<name>`: diffs are applied, smoke-tested and committed
    code/commits/<sha12>/   read-only export of one commit: every node's training runs from one of these
    code/smoke/<attempt>/   logs (and the run dir) of each smoke test
    code/datasets/          logs of the datasets generated before a confined run (agent.codemod.datasets)

Every process that runs the study's code (the smoke test, each round's training jobs) starts inside a bubblewrap
sandbox (agent.codemod.sandbox) that reads only that code, the datasets and Python, and writes only its run dir;
codemod refuses to start where no sandbox can be made, unless `codemod.sandbox=false` (unsafe).

The study's code is a line of commits on `explore/<name>`: the user's HEAD when the study started (plus the
user's uncommitted changes to tracked files, committed as "[Study base]"), then every accepted modification, and
a `git revert` commit for each one that failed. Every node runs from the export of the branch head at the start
of its round, a code-modification node from its own commit, so a change made in one slot never leaks into a
sibling of the same round, and `git show <code_commit>` of any node shows the code it ran.

A proposal with a diff: rules (not in the first `protect_first` iterations of a block, one change per round) ->
parse + guardrails (agent.codemod.guard) -> `git apply --check` -> apply -> source guardrails -> smoke test
(agent.codemod.smoke) -> commit "[Iter N] description / File / Changes +X -Y / Hypothesis". A refusal before the
commit leaves the branch where it was (`git reset --hard`, recorded as rollback "reset") and is raised as
`agent.study.proposal.Rejection`, so the loop journals it and asks the policy again. After the node's run:
a failed run (or, with `revert_if_worse`, an R² below its parent's) is undone by `git revert` (rollback
"revert"); the node's error then reads "code modification failed: ...".

Every step is a journal event `{"event": "code", "action": base|rejected|smoke_failed|committed|kept|reverted|
reset, ...}`. On (re)start the branch is put back where the journal says it is: a commit the agent made but never
journaled, or one that no planned node uses (the agent died in between), is dropped with a recorded `reset`.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.codemod import datasets, gitops, layout
from agent.codemod.diffparse import DiffError, FilePatch, parse
from agent.codemod.guard import GuardError, changed_lines, check_patches, check_sources
from agent.codemod.history import journaled_head, log_fields
from agent.codemod.sandbox import Sandbox, probe
from agent.codemod.settings import CodeModSettings
from agent.codemod.smoke import run_smoke
from agent.runs.overrides import Validator, as_dict, merge, merge_train
from agent.runs.runner import JobResult
from agent.runs.trainconf import ComposeError, compose_train, has_key, value
from agent.study.proposal import Proposal, Rejection
from agent.study.state import FAILED_STATUSES, StudyState
from agent.study.view import StudyView
from mpm_inr.errors import ConfigError, StudyError


class CodeModHandler:
    """See the module docstring. `Explorer` calls it for every accepted proposal (`pins_code`)."""

    pins_code = True   # called for config-only proposals too: they get the round's pinned code

    def __init__(self, cfg: Mapping[str, Any], *, study_dir: Path, code_dir: Path,
                 emit: Callable[[dict[str, Any]], Any], events: Callable[[], list[dict[str, Any]]],
                 state: Callable[[], StudyState], out: Callable[[str], None] = print, python: str = sys.executable,
                 settings: CodeModSettings | None = None):
        self.settings = settings or CodeModSettings.from_config(cfg)
        self.cfg = dict(cfg)
        self.name = str(cfg["name"])
        self.study_dir = Path(study_dir).resolve()
        self.code_dir = Path(code_dir).resolve()
        top = gitops.toplevel(self.code_dir)
        if top is None or top != self.code_dir:
            raise ConfigError(f"codemod.enabled=true needs code_dir ({self.code_dir}) to be the root of a git "
                              f"repository" + (f" (it is inside {top})" if top else ""))
        self.branch = layout.branch(self.name)
        d = self.study_dir
        self.work, self.commits, self.smoke_dir = layout.worktree(d), layout.commits_dir(d), layout.smoke_dir(d)
        self.emit, self.events, self.state, self.out, self.python = emit, events, state, out, python
        self.train_overrides = [str(o) for o in (cfg.get("train_overrides") or [])]
        self.validator = Validator(limits=cfg.get("limits") or None, progression=cfg.get("frames_progression"))
        self._round: tuple[int, str] | None = None   # (launched nodes when the round was planned, head then)
        self._round_with_mod: int | None = None
        self._started = False
        self._check_smoke_overrides()
        self.sandbox = self._sandbox()
        if not any(e.get("event") == "code" and e.get("action") == "base" for e in self.events()):
            self._check_branch_is_free()

    def _check_branch_is_free(self) -> None:
        """Before the study journals anything: `explore/<name>` must be new, or this study's own half-made one."""
        if gitops.branch_commit(self.code_dir, self.branch) is None:
            return
        if gitops.worktrees(self.code_dir).get(self.work.resolve()) != self.branch:
            raise StudyError(f"branch {self.branch} already exists in {self.code_dir} (an earlier study named "
                             f"{self.name}?); delete it (git branch -D {self.branch}; git worktree prune) or "
                             f"choose another study name")

    def _sandbox(self) -> Sandbox | None:
        """The sandbox every run of the study's code starts in (None with codemod.sandbox=false)."""
        if not self.settings.sandbox:
            self.out("code: warning: codemod.sandbox=false: modified code runs unconfined, with your rights (unsafe)")
            return None
        launcher = str((self.cfg.get("launcher") or {}).get("name") or "basic")
        if launcher == "submitit_slurm":
            raise ConfigError("codemod's sandbox cannot confine jobs that SLURM runs on other nodes "
                              "(launcher=submitit_slurm); use launcher=basic, joblib or submitit_local, or set "
                              "codemod.sandbox=false (unsafe: modified code then runs unconfined)")
        return probe(self.python, extra_read=[layout.REPO / "hydra_plugins"])

    def confine(self, code_dir: str | Path,
                override_lists: Sequence[Sequence[str]]) -> Callable[[list[str], Path | None], list[str]] | None:
        """The sandbox wrapper for runs of `code_dir` with these trainer overrides (None: it is not the study's
        code, or the sandbox is off). Missing datasets are generated first, by the user's code (see
        agent.codemod.datasets), since the sandbox reads them read-only."""
        code = Path(code_dir).resolve()
        if self.sandbox is None or not code.is_relative_to(layout.code_root(self.study_dir)):
            return None
        roots, problems = datasets.prepare(self.code_dir, self.python, override_lists,
                                           log_dir=layout.code_root(self.study_dir) / "datasets",
                                           env=dict(os.environ))
        for problem in problems:
            self.out(f"code: {problem}")
        box = self.sandbox

        def wrap(cmd: list[str], write: Path | None) -> list[str]:
            return box.wrap(cmd, cwd=code, read=[code, *roots], write=[write] if write else [])

        return wrap

    # ------------------------------------------------------------------ start / reconcile
    def _check_smoke_overrides(self) -> None:
        if not self.settings.smoke.train:
            return
        try:
            compose_train(self.code_dir, merge_train(self.train_overrides, list(self.settings.smoke.overrides)))
        except ComposeError as e:
            raise ConfigError(f"codemod.smoke.overrides do not compose with the trainer's config: {e}") from None

    def start(self) -> None:
        """Create the study's branch + worktree on first start; on resume, put the branch where the journal says."""
        events = self.events()
        code = [e for e in events if e.get("event") == "code"]
        if not any(e.get("action") == "base" for e in code):
            self._create_base()
        else:
            self._reconcile(events, code)
        self._started = True
        st = self.state()
        for n in st.unfinished():  # relaunches run from their own export: make sure it is there
            if n.code_commit and n.code_dir and Path(n.code_dir).parent == self.commits:
                self.snapshot(n.code_commit)

    def _create_base(self) -> None:
        repo = self.code_dir
        if gitops.branch_commit(repo, self.branch) is not None:
            self._check_branch_is_free()
            gitops.reset_hard(self.work, gitops.head(self.work))  # adopt our own half-made start
            head = gitops.head(self.work)
            self.emit({"event": "code", "action": "base", "branch": self.branch, "worktree": str(self.work),
                       "repo": str(repo), "base_commit": head, "head": head, "adopted": True})
            return
        user_head = gitops.head(repo)
        dirty = gitops.dirty_diff(repo)
        untracked = [p for p in gitops.untracked(repo) if p.endswith(".py")]
        if self.work.exists():
            raise StudyError(f"{self.work} exists but is not this study's worktree; remove it")
        self.work.parent.mkdir(parents=True, exist_ok=True)
        gitops.add_worktree(repo, self.work, self.branch, user_head)
        head, files = user_head, []
        if dirty.strip():
            gitops.apply(self.work, dirty)
            files = gitops.out(self.work, "diff", "--name-only", "HEAD").splitlines()
            plus, minus = _numstat(self.work)
            msg = (f"[Study base] uncommitted changes in {repo} when study {self.name} started\n\n"
                   f"File: {', '.join(files)}\nChanges: +{plus} -{minus}\n")
            head = gitops.commit(self.work, msg, ["."])
            self.out(f"code: the study's branch {self.branch} includes your uncommitted changes to "
                     f"{len(files)} file(s) (commit {head[:12]})")
        if untracked:
            self.out(f"code: {len(untracked)} untracked .py file(s) in {repo} are not part of the study's code "
                     f"(e.g. {untracked[0]})")
        self.emit({"event": "code", "action": "base", "branch": self.branch, "worktree": str(self.work),
                   "repo": str(repo), "base_commit": user_head, "head": head, "dirty_files": files,
                   "untracked_py": untracked[:50]})

    def journaled_head(self, events: Sequence[Mapping[str, Any]]) -> str | None:
        """The branch head the journal vouches for (a commit no planned node uses does not count)."""
        return journaled_head(events)

    def _reconcile(self, events: list[dict[str, Any]], code: list[dict[str, Any]]) -> None:
        want = self.journaled_head(events)
        if want is None or not self.work.exists():
            raise StudyError(f"the study's code worktree {self.work} is missing; the study cannot resume its code "
                             f"(restore it or start a new study)")
        have = gitops.head(self.work)
        if have != want or not gitops.is_clean(self.work):
            gitops.reset_hard(self.work, want)
            if have != want:
                self.emit({"event": "code", "action": "reset", "from": have, "to": want, "head": want,
                           "rollback": "reset",
                           "reason": "resume: the agent stopped between a code change and its journal entry; the "
                                     "unrecorded commit was dropped"})
                self.out(f"code: branch {self.branch} reset from {have[:12]} to {want[:12]} (unrecorded change)")

    def head(self) -> str:
        return gitops.head(self.work)

    def snapshot(self, commit: str) -> Path:
        """The read-only export of `commit` that runs train.py (created once)."""
        return gitops.export(self.code_dir, commit, self.commits / commit[:12])

    # ------------------------------------------------------------------ the seam
    def __call__(self, p: Proposal, view: StudyView) -> tuple[str, str]:
        """(code dir, commit) for an accepted proposal; raises Rejection to refuse its code change."""
        if not self._started:
            self.start()
        key = sum(1 for n in view.nodes if n.launched)
        if self._round is None or self._round[0] != key:
            self._round = (key, self.head())
        if not p.code_diff:
            commit = self._round[1]
            return str(self.snapshot(commit)), commit
        return self._modify(p, view, key)

    def _reject(self, stage: str, reason: str, p: Proposal, view: StudyView, **extra: Any) -> Rejection:
        diff = p.code_diff or ""
        self.emit({"event": "code", "action": "rejected", "stage": stage, "reason": reason,
                   "iteration": view.iteration, "block": view.block.block, "parent_id": p.parent_id,
                   "diff_sha256": hashlib.sha256(diff.encode()).hexdigest(), "diff": diff[:20000], **extra})
        return Rejection(reason)

    def _modify(self, p: Proposal, view: StudyView, key: int) -> tuple[str, str]:
        s = self.settings
        if view.iter_in_block <= s.protect_first:
            raise self._reject("rules", f"code modifications are not allowed in the first {s.protect_first} "
                                        f"iterations of a block (this is iteration {view.iter_in_block} of block "
                                        f"{view.block.block}); propose a config change", p, view)
        if self._round_with_mod == key:
            raise self._reject("rules", "one code modification per round: another child of this round already "
                                        "changes the code", p, view)
        try:
            patches = parse(p.code_diff or "")
            check_patches(patches, s)
        except (DiffError, GuardError) as e:
            raise self._reject("guardrail", f"code change refused: {e}", p, view) from None
        for fp in patches:
            link = _symlink_in(self.work, fp.paths)
            if link:
                raise self._reject("guardrail", f"code change refused: {link} is a symbolic link", p, view)
        head = self.head()
        try:
            gitops.apply(self.work, p.code_diff or "", check_only=True)
        except gitops.GitError as e:
            raise self._reject("apply", f"code change refused: the diff does not apply cleanly to the study's code "
                                        f"(commit {head[:12]}): {e}", p, view) from None
        gitops.apply(self.work, p.code_diff or "")
        try:
            self._check_sources(patches, head)
        except GuardError as e:
            gitops.reset_hard(self.work, head)
            raise self._reject("guardrail", f"code change refused: {e}", p, view) from None
        except BaseException:
            gitops.reset_hard(self.work, head)
            raise
        try:
            return self._smoke_and_commit(p, view, key, patches, head)
        except Rejection:
            raise
        except BaseException:
            if gitops.head(self.work) == head:  # not committed yet: leave the branch as it was
                gitops.reset_hard(self.work, head)
            raise

    def _check_sources(self, patches: Sequence[FilePatch], head: str) -> None:
        for fp in patches:
            old = gitops.show(self.work, head, fp.old_path) if fp.old_path else None
            new = (self.work / fp.new_path).read_text(errors="replace") if fp.new_path else None
            check_sources(fp.path, old, new, self.settings)

    def _smoke_and_commit(self, p: Proposal, view: StudyView, key: int, patches: Sequence[FilePatch],
                          head: str) -> tuple[str, str]:
        changed = [path for fp in patches for path in fp.paths]
        attempt = self.smoke_dir / f"iter_{view.iteration:04d}_{len(list(self.smoke_dir.glob('iter_*'))) + 1:03d}"
        overrides = self._smoke_overrides(p, view) if self.settings.smoke.train else None
        res = run_smoke(self.work, changed, overrides, log_dir=attempt, timeout_s=self.settings.smoke.timeout_s,
                        python=self.python, confine=self.confine(self.work, [overrides] if overrides else []))
        if not res.ok:
            gitops.reset_hard(self.work, head)
            reason = (f"code modification failed: smoke test ({res.stage}): {res.reason}; the change was discarded "
                      f"(git reset --hard {head[:12]})")
            self.emit({"event": "code", "action": "smoke_failed", "stage": res.stage, "reason": reason,
                       "rollback": "reset", "head": head, "iteration": view.iteration, "block": view.block.block,
                       "parent_id": p.parent_id, "smoke_s": round(res.seconds, 2), "log": res.log,
                       "diff": (p.code_diff or "")[:20000]})
            self.out(f"code: smoke test failed at iteration {view.iteration}: {res.reason[:200]}")
            raise Rejection(reason)
        plus, minus = changed_lines(patches)
        desc, hyp = describe(p)
        files = ", ".join(dict.fromkeys(fp.path for fp in patches))
        parent = "root" if p.parent_id is None else f"node {p.parent_id}"
        message = (f"[Iter {view.iteration}] {desc}\n\nFile: {files}\nChanges: +{plus} -{minus}\nHypothesis: {hyp}\n"
                   f"Study: {self.name}, block {view.block.block}, parent {parent}\n")
        commit = gitops.commit(self.work, message, changed)
        self.emit({"event": "code", "action": "committed", "commit": commit, "parent": head, "head": commit,
                   "iteration": view.iteration, "block": view.block.block, "parent_id": p.parent_id,
                   "files": [fp.path for fp in patches], "added": plus, "removed": minus, "description": desc,
                   "hypothesis": hyp, "message": message, "smoke_s": round(res.seconds, 2)})
        self.out(f"code: [Iter {view.iteration}] {desc} committed as {commit[:12]} on {self.branch}")
        self._round_with_mod = key
        return str(self.snapshot(commit)), commit

    def _smoke_overrides(self, p: Proposal, view: StudyView) -> list[str]:
        """The node's config (base training overrides + its own) with the smoke settings on top."""
        full = merge(view.overrides_of(p.parent_id), self.validator.normalise(p.overrides))
        ov = merge_train(merge_train(self.train_overrides, full), list(self.settings.smoke.overrides))
        if "data.root" not in as_dict(ov):
            try:
                cfg = compose_train(self.code_dir, ov)
            except ComposeError:
                return ov
            root = value(cfg, "data.root") if has_key(cfg, "data.root") else None
            if isinstance(root, str) and not Path(root).is_absolute() and re.match(r"^[A-Za-z0-9_./-]+$", root):
                ov.append(f"data.root={(Path.cwd() / root).resolve()}")
        return ov

    # ------------------------------------------------------------------ after a run
    def on_finished(self, res: JobResult) -> JobResult:
        """Keep or revert a code-modification node's commit once its run ended; returns the result to journal."""
        st = self.state()
        node = st.nodes.get(res.node_id)
        if node is None or not node.code_diff or not node.code_commit:
            return res
        done = [e for e in self.events() if e.get("event") == "code" and e.get("node_id") == res.node_id
                and e.get("action") in ("kept", "reverted")]
        reason = None
        r2 = res.metrics.get("final_r2") if res.status == "ok" else None
        parent = st.nodes.get(node.parent_id) if node.parent_id is not None else None
        if res.status in FAILED_STATUSES:
            reason = f"code modification failed: run {res.status}: {res.error or 'no reason recorded'}"
        elif (self.settings.revert_if_worse and isinstance(r2, (int, float)) and parent is not None
              and parent.r2 is not None and r2 < parent.r2):
            reason = (f"code modification did not help: R² {r2:.6f} < {parent.r2:.6f} of parent node "
                      f"{parent.node_id} (same config, previous code)")
        if done:
            rev = done[-1]
        elif reason is None:
            self.emit({"event": "code", "action": "kept", "node_id": res.node_id, "commit": node.code_commit,
                       "r2": r2, "parent_r2": parent.r2 if parent is not None else None})
            return res
        else:
            subject = (gitops.out(self.work, "log", "-1", "--format=%s", node.code_commit) or "code modification")
            message = (f'Revert "{subject}"\n\nThis reverts commit {node.code_commit}.\nNode: {res.node_id} '
                       f"({res.status})\nReason: {reason}\n")
            commit = gitops.revert(self.work, node.code_commit, message)
            rev = {"event": "code", "action": "reverted", "node_id": res.node_id, "commit": node.code_commit,
                   "revert_commit": commit, "head": commit, "rollback": "revert", "reason": reason}
            self.emit(rev)
            self.out(f"code: {reason[:200]}; reverted by {commit[:12]}")
        if rev.get("action") == "reverted" and res.status in FAILED_STATUSES:
            return replace(res, error=f"{rev.get('reason')} (reverted by commit {str(rev.get('revert_commit'))[:12]})")
        return res


def describe(p: Proposal) -> tuple[str, str]:
    """(one-line description, hypothesis) of a code proposal, from its CODE MODIFICATION log block if present."""
    fields = log_fields(p.log_entry)
    mutation = re.sub(r"^\[code\]\s*(?:[a-z0-9_]+:\s*)?", "", (p.mutation or "").strip())
    desc = fields.get("Change") or mutation or (p.rationale or "").strip() or "code modification"
    hyp = fields.get("Hypothesis") or " ".join((p.rationale or "").split()) or "none stated"
    return " ".join(desc.split())[:120], " ".join(hyp.split())[:500]


def _numstat(work: Path) -> tuple[int, int]:
    plus = minus = 0
    for line in gitops.out(work, "diff", "--numstat", "HEAD").splitlines():
        a, b, *_ = line.split("\t")
        plus += int(a) if a.isdigit() else 0
        minus += int(b) if b.isdigit() else 0
    return plus, minus


def _symlink_in(work: Path, paths: Sequence[str]) -> str | None:
    for rel in paths:
        cur = work
        for part in rel.split("/"):
            cur = cur / part
            if cur.is_symlink():
                return str(cur.relative_to(work))
    return None
