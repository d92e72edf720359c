"""The study loop: `python -m agent explore name=jp_study field=Jp policy=heuristic n_blocks=2 n_iter_block=12`.

Each round: build a StudyView from the journal -> ask the policy for `batch` children (slot roles from the design
document's parallel variant) -> validate every proposal (agent.runs.overrides + tree rules; rejected ones are journaled
with the reason and the policy is asked again, then the heuristic fills the slot) -> journal `planned` -> run the
round as one `python train.py --multirun` (agent.runs.runner) -> journal each job's `finished` as soon as it ends ->
re-render.
After the block's last iteration the policy's block-end decision picks the next regime.

With `codemod.enabled=true` (issue 6, agent.codemod.handler) a proposal may carry a code diff: it is guarded,
smoke-tested and committed on the study's own branch `explore/<name>` before it runs, and reverted if the run
fails; every node then runs from an export of that branch at a known commit (`code_dir`, `code_commit`).

Resume rule (a `kill -9` at any moment): re-running the same command acquires the study lock, kills any process
still running from the dead agent's round (found by the round's environment token), then, for every node
planned or running without a `finished` event:
- its run dir has a metrics.json (or the job guard recorded a timeout): it is finished from that file, never
  re-run (the run completed; only the agent's bookkeeping was lost);
- otherwise, if it had started (its job guard marker exists) at most once, it is relaunched with the same node
  id, overrides and iteration, in a new round dir;
- a node that was in flight at two agent deaths (started twice, never finished) is recorded as `crashed` ("lost").
Every round is journaled (`launched`, with its environment token) before its process starts, so a restarted
agent always finds the previous round's processes (this search is local: a job already queued on SLURM by a
dead agent is not cancelled).
So no run is ever duplicated and at most the runs in flight are lost. Policies are deterministic given the
journal, so the resumed study continues as the uninterrupted one would have.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.policies import PolicyContext, build_policy
from agent.policies.base import Policy
from agent.reporting import render
from agent.runs.overrides import (
    FIELDS,
    OverrideError,
    Validator,
    as_dict,
    diff,
    merge,
    merge_train,
)
from agent.runs.runner import (
    MARKER,
    Job,
    JobResult,
    LauncherSpec,
    RoundRunner,
    classify,
    kill_group,
    read_json,
    round_alive,
)
from agent.runs.trainconf import ComposeError, compose_train, has_key, value
from agent.study.identity import ConfigIdentity
from agent.study.instructions import base_instructions
from agent.study.journal import SCHEMA_VERSION, Journal, StudyLock
from agent.study.proposal import BlockEndDecision, Proposal, Rejection
from agent.study.state import NodeState, StudyState, data_changes, fold
from agent.study.stats import best_node, block_stats, principles
from agent.study.tree import scores
from agent.study.view import STRATEGIES, StudyView, slot_roles
from mpm_inr.errors import ConfigError, StudyError, UserError

REPO = Path(__file__).resolve().parents[2]
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _split_kv(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for o in items:
        if "=" not in o:
            raise ConfigError(f"train_overrides entry {o!r} is not key=value")
        k, v = o.split("=", 1)
        out[k] = v
    return out


def git_commit(code_dir: Path) -> str | None:
    """HEAD of the code dir (+ "-dirty" with uncommitted changes to tracked files), or None outside git."""
    try:
        head = subprocess.run(["git", "-C", str(code_dir), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=False)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(code_dir), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30, check=False)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


class Explorer:
    """Runs (or resumes) one study. `cfg` is the composed explore config as a plain dict."""

    def __init__(self, cfg: Mapping[str, Any], *, out: Callable[[str], None] = print,
                 code_mod_handler: Callable[[Proposal, StudyView], tuple[str, str | None]] | None = None):
        self.cfg = dict(cfg)
        self.out = out
        # issue-6 seam: (proposal, view) -> (code dir to run train.py from, its commit); raise Rejection to refuse.
        # Without a handler, proposals carrying a code_diff are rejected (recorded, never run).
        self.code_mod_handler = code_mod_handler
        self._check_config()
        c = self.cfg
        self.name: str = c["name"]
        self.study_dir = (Path(c.get("root") or "explorations") / self.name).resolve()
        self.code_dir = Path(c.get("code_dir") or REPO).resolve()
        if not (self.code_dir / "train.py").exists():
            raise ConfigError(f"code_dir {self.code_dir} has no train.py")
        self.train_overrides = [str(o) for o in (c.get("train_overrides") or [])]
        _split_kv(self.train_overrides)
        self._check_train_overrides()
        self.identity = ConfigIdentity(self.code_dir, self.train_overrides)
        agent = c.get("agent") or {}
        self.validator = Validator(limits=c.get("limits") or None, progression=c.get("frames_progression"))
        self.min_compression = float(agent.get("min_compression", 1.0))
        self.max_attempts = int(agent.get("max_proposal_attempts", 3))
        launcher = c.get("launcher") or {}
        self.launcher = LauncherSpec(str(launcher.get("name")),
                                     {k: v for k, v in (launcher.get("params") or {}).items() if v is not None})
        t = c.get("timeout") or {}
        self.runner = RoundRunner(code_dir=self.code_dir, launcher=self.launcher,
                                  per_run_s=float(t.get("per_run_s", 3600)), grace_s=float(t.get("grace_s", 120)),
                                  python=str(c.get("python") or sys.executable))
        pol = dict(c.get("policy") or {})
        self.policy_name = str(pol.get("name"))
        if self.policy_name == "claude" and not os.environ.get("ANTHROPIC_API_KEY"):
            raise ConfigError("policy=claude needs ANTHROPIC_API_KEY in the environment; export it or use "
                              "policy=heuristic")
        # policies see the budget without its unset (null) caps, so their own defaults apply to those
        pcfg = dict(self.cfg)
        pcfg["budget"] = {k: v for k, v in (c.get("budget") or {}).items() if v is not None}
        ctx = PolicyContext(study_dir=self.study_dir, seed=int(c.get("seed", 0)), config=pcfg)
        self.policy: Policy = build_policy(self.policy_name, pol, ctx)
        self._fallback: Policy | None = None
        self.ctx = ctx
        self.first_base = self._first_base()
        self.journal = Journal(self.study_dir)
        self.lock = StudyLock(self.study_dir)
        if self.code_mod_handler is None and (c.get("codemod") or {}).get("enabled"):
            # issue 6: the study's branch, guardrails, smoke test (imported only when enabled)
            from agent.codemod.handler import CodeModHandler

            self.code_mod_handler = CodeModHandler(c, study_dir=self.study_dir, code_dir=self.code_dir,
                                                   emit=self._emit, events=self.journal.read, state=self._state,
                                                   out=self.out, python=self.runner.python)

    # ------------------------------------------------------------------ config
    def _check_config(self) -> None:
        c = self.cfg
        name = c.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ConfigError(f"name={name!r}: a study name is 1-64 letters, digits, '_' or '-'")
        if c.get("field") not in FIELDS:
            raise ConfigError(f"field={c.get('field')!r}: choose one of {', '.join(FIELDS)}")
        for key in ("n_blocks", "n_iter_block", "batch"):
            v = c.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{key}={v!r}: must be a positive integer")
        seed = c.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ConfigError(f"seed={seed!r}: the policy seed must be a non-negative integer")
        uc = c.get("ucb_c")
        if not isinstance(uc, (int, float)) or not 0 < float(uc) <= 10:
            raise ConfigError(f"ucb_c={uc!r}: must be a number in (0, 10] (the design document uses 0.5-3.0)")
        t = c.get("timeout") or {}
        if not float(t.get("per_run_s", 1)) > 0:
            raise ConfigError("timeout.per_run_s must be > 0")
        self._check_budget()

    def _check_budget(self) -> None:
        """A negative, NaN or zero cap would stop the study at once or never: refuse it before anything runs."""
        budget = self.cfg.get("budget") or {}
        if not isinstance(budget, Mapping):
            raise ConfigError(f"budget={budget!r}: must be a mapping, e.g. budget.max_usd=5")
        usd, its = budget.get("max_usd"), budget.get("max_iterations")
        if usd is not None and (isinstance(usd, bool) or not isinstance(usd, (int, float))
                                or not math.isfinite(usd) or usd <= 0):
            raise ConfigError(f"budget.max_usd={usd!r}: must be a positive number of dollars, or null for no cap")
        if its is not None and (isinstance(its, bool) or not isinstance(its, int) or its < 1):
            raise ConfigError(f"budget.max_iterations={its!r}: must be a positive integer (training runs), or null "
                              f"for no cap")

    def _check_train_overrides(self) -> None:
        """train_overrides go under every node's overrides, so a bad group option there could hide behind a
        node's own (field=Q under field=Jp) and a key the study sets itself would never take effect."""
        conf = self.code_dir / "conf"
        for o in self.train_overrides:
            key, _, val = o.partition("=")
            key = key.lstrip("+")
            if not re.match(r"^[A-Za-z0-9_]+$", key) or not (conf / key).is_dir():
                continue  # a plain key, or Hydra syntax the composition itself checks
            options = sorted(p.stem for p in (conf / key).glob("*.yaml"))
            if val not in options:
                raise ConfigError(f"train_overrides: {key}={val} is not an option of the trainer's '{key}' group; "
                                  f"choose one of {', '.join(options)}")
        own = {"field": "field", "data.n_training_frames": "n_training_frames"}
        if self.cfg.get("inr_type"):
            own["inr_type"] = "inr_type"
        own.update({str(k): f"start={{{k}: ...}}" for k in (self.cfg.get("start") or {})})
        for o in self.train_overrides:
            key = o.split("=", 1)[0].lstrip("+")
            if key in own:
                opt = own[key]
                raise ConfigError(f"train_overrides: {o} would be replaced by the study's own {key} in every run; "
                                  f"set it with the explore option {opt if '=' in opt else opt + '=...'} instead")

    # ------------------------------------------------------------------ state helpers
    def _state(self) -> StudyState:
        return fold(self.journal.read())

    def _emit(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.journal.append(event)

    def _resolve(self, overrides: Sequence[str], key: str) -> Any:
        try:
            return value(compose_train(self.code_dir, merge_train(self.train_overrides, overrides)), key)
        except ComposeError:
            return None

    def _view(self, st: StudyState, rejections: Sequence[NodeState] = ()) -> StudyView:
        return build_view(st, self.cfg, self.validator, self.study_dir, resolver=self._resolve,
                          rejections=rejections, identity=self.identity)

    def _render(self) -> None:
        render.render_all(self.study_dir)

    # ------------------------------------------------------------------ entry
    def run(self) -> int:
        self.lock.acquire()
        try:
            return self._run()
        finally:
            self.lock.release()

    def _clean_stale_temp_files(self) -> None:
        """Remove half-written render/jobs temp files of a killed agent (we hold the study lock)."""
        for pattern in (".*.tmp*", "configs/.*.tmp*", "instructions/.*.tmp*", "runs/*/jobs*.tmp"):
            for p in self.study_dir.glob(pattern):
                p.unlink(missing_ok=True)

    def _run(self) -> int:
        self._clean_stale_temp_files()
        st = self._state()
        if not st.name:
            if any(self.study_dir.glob("runs/*")):
                raise StudyError(f"{self.study_dir} has runs but no journal; use another name or remove it")
            self._emit({"event": "study_start", "name": self.name, "schema": SCHEMA_VERSION, "config": self.cfg,
                        "instructions": base_instructions(self.name, self.cfg, self.validator.specs)})
            self.out(f"study {self.name}: started in {self.study_dir}")
            self._start_code()
        else:
            old = st.config
            if old.get("n_iter_block") != self.cfg["n_iter_block"]:
                raise StudyError(f"study {self.name} was started with n_iter_block={old.get('n_iter_block')}; "
                                 f"pass n_iter_block={old.get('n_iter_block')} to resume it")
            self._emit({"event": "resume", "config": self.cfg})
            self.out(f"study {self.name}: resuming ({st.n_iterations} iterations, {len(st.blocks)} block(s))")
            self._start_code()
            self._recover(st)
        self._render()
        return self._loop()

    def _start_code(self) -> None:
        """A code-modification handler with a `start()` sets up (or, on resume, reconciles) the study's code."""
        start = getattr(self.code_mod_handler, "start", None)
        if callable(start):
            start()

    # ------------------------------------------------------------------ recovery
    def _recover(self, st: StudyState) -> None:
        unfinished = st.unfinished()
        if not unfinished:
            return
        ids = {n.node_id for n in unfinished}
        for ev in st.launches:
            if ids & {int(i) for i in ev.get("node_ids", [])} and round_alive(ev.get("token")):
                self.out(f"stopping the previous agent's round {ev.get('round')} (still running)")
                kill_group(None, ev.get("token"))
        relaunch: list[NodeState] = []
        for n in unfinished:
            done, started = None, 0
            for run_dir in n.run_dirs:  # every launch of this node, oldest first
                rd = Path(run_dir)
                marker = read_json(rd / MARKER)
                started += bool(marker and "started" in marker)
                if (rd / "metrics.json").exists() or (marker and marker.get("outcome") == "timeout"):
                    done = classify(n.node_id, rd, marker, killed=False, rc=None, log_path=rd.parent / "multirun.log")
            if done is not None:
                self._emit({"event": "recovered", "node_id": n.node_id, "action": "finished"})
                self._finish(done)
            elif started < 2:
                self._emit({"event": "recovered", "node_id": n.node_id, "action": "relaunch", "started": started})
                relaunch.append(n)
            else:
                self._emit({"event": "recovered", "node_id": n.node_id, "action": "lost", "started": started})
                self._finish(JobResult(n.node_id, "crashed", f"lost: the agent stopped {started} times while this "
                                       "run was in flight", {}, n.run_dir or ""))
        if relaunch:
            self.out(f"relaunching {len(relaunch)} run(s) that were in flight: nodes "
                     f"{', '.join(str(n.node_id) for n in relaunch)}")
            self._run_round(self._state(), relaunch)

    # ------------------------------------------------------------------ main loop
    def _stop_reason(self, st: StudyState) -> str | None:
        budget = self.cfg.get("budget") or {}
        max_it = budget.get("max_iterations")
        if max_it is not None and st.n_iterations >= int(max_it):
            return f"budget.max_iterations={max_it} reached"
        max_usd = budget.get("max_usd")
        if max_usd is not None and st.llm_totals()["usd"] >= float(max_usd):
            return f"budget.max_usd={max_usd} reached (spent ${st.llm_totals()['usd']:.4f})"
        return None

    def _loop(self) -> int:
        n_blocks = int(self.cfg["n_blocks"])
        while True:
            st = self._state()
            reason = self._stop_reason(st)
            if reason:
                return self._end(reason)
            blk = st.current_block
            if blk is None:
                self._start_first_block()
                continue
            nodes = st.block_nodes(blk.block)
            if blk.ended:
                if blk.block >= n_blocks:
                    return self._end(f"done: {blk.block} block(s) of {blk.n_iter_block} iterations")
                self._start_next_block(st)
                continue
            if len(nodes) >= blk.n_iter_block and all(n.finished for n in nodes):
                self._end_block(st)
                if blk.block >= n_blocks:
                    return self._end(f"done: {blk.block} block(s) of {blk.n_iter_block} iterations")
                continue
            k = min(int(self.cfg["batch"]), blk.n_iter_block - len(nodes))
            max_it = (self.cfg.get("budget") or {}).get("max_iterations")
            if max_it is not None:
                k = min(k, int(max_it) - st.n_iterations)
            planned = self._plan_round(st, k)
            if planned is None:  # the policy asked to stop (budget / user error inside the policy)
                return 0
            self._run_round(self._state(), planned)

    def _end(self, reason: str) -> int:
        st = self._state()
        if not st.ended or st.ended.get("reason") != reason:
            self._emit({"event": "study_end", "reason": reason})
        self._render()
        self.out(f"study {self.name}: {reason}. Files in {self.study_dir}")
        return 0

    # ------------------------------------------------------------------ blocks
    def _first_base(self) -> list[str]:
        """Block 1's base config from `start`, `field`, `n_training_frames`, `inr_type` (checked before running)."""
        c = self.cfg
        start = dict(c.get("start") or {})
        start["field"] = c["field"]
        start["data.n_training_frames"] = c.get("n_training_frames")
        if c.get("inr_type"):
            start["inr_type"] = c["inr_type"]
        try:
            base = self.validator.normalise(start)
        except OverrideError as e:
            raise ConfigError(f"start config rejected: {e}") from None
        try:
            compose_train(self.code_dir, merge_train(self.train_overrides, base))
        except ComposeError as e:
            raise ConfigError(f"start config does not compose with the trainer's config: {e}") from None
        return base

    def _start_first_block(self) -> None:
        c = self.cfg
        base = self.first_base
        self._emit({"event": "block_start", "block": 1, "field": c["field"],
                    "n_training_frames": int(c["n_training_frames"]), "base_overrides": base,
                    "ucb_c": float(c["ucb_c"]), "n_iter_block": int(c["n_iter_block"]), "first_iteration": 1,
                    "hypothesis": f"Baseline block: map the landscape around the base config "
                                  f"({', '.join(base)}) for {c['field']} at {c['n_training_frames']} frames."})
        self._render()

    def _end_block(self, st: StudyState) -> None:
        view = self._view(st)
        try:
            decision = self.policy.end_block(view)
            problem = self._check_decision(decision)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - a broken policy must not stop the study: the heuristic decides instead
            decision, problem = None, f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        fallback = None
        if problem is not None:
            fallback = f"{self.policy_name}: {problem}"
            decision = self._heuristic().end_block(view)
        assert decision is not None
        d = decision.to_dict()
        if fallback:
            d["fallback"] = fallback
        self._emit({"event": "block_end", "block": view.block.block, "decision": d,
                    "stats": view.stats.to_dict()})
        self.out(f"block {view.block.block} ended: {decision.summary}")
        self._render()
        self._study_wandb(view.block.block)

    def _study_wandb(self, block: int) -> None:
        """Study-level W&B run + report at each block end (agent.reporting.wandb_study); never stops the study."""
        try:
            from agent.reporting.wandb_study import log_block_end

            run_dir = log_block_end(self.study_dir, block)
        except Exception as e:  # noqa: BLE001 - W&B or plotting trouble must not stop a study
            self.out(f"warning: study W&B run not updated at block {block}: {type(e).__name__}: "
                     f"{' '.join(str(e).split())[:200]}")
            return
        if run_dir is not None:
            self.out(f"block {block}: study W&B run written to {run_dir}")

    def _check_decision(self, d: Any) -> str | None:
        if not isinstance(d, BlockEndDecision):
            return f"end_block returned {type(d).__name__}, not a BlockEndDecision"
        if d.next_field not in FIELDS:
            return f"next_field {d.next_field!r} is not one of {', '.join(FIELDS)}"
        frames = self.validator.specs["data.n_training_frames"].choices
        cap = self.cfg.get("max_training_frames")
        if d.next_n_training_frames not in frames or (cap is not None and d.next_n_training_frames > cap):
            return f"next_n_training_frames {d.next_n_training_frames!r} is not in the progression {list(frames)}" \
                   + (f" up to {cap}" if cap is not None else "")
        if d.ucb_c is not None and not (isinstance(d.ucb_c, (int, float)) and 0.5 <= d.ucb_c <= 3.0):
            return f"ucb_c {d.ucb_c!r} is outside 0.5-3.0"
        return None

    def _start_next_block(self, st: StudyState) -> None:
        prev = st.current_block
        assert prev is not None and prev.ended
        d = prev.decision
        best = best_node(st.block_nodes(prev.block), self.min_compression)
        base = dict(as_dict(best.overrides if best is not None else prev.base_overrides))
        base.pop("seed", None)  # robustness re-runs change the seed; a new block starts from the default seed
        base["field"] = d["next_field"]
        base["data.n_training_frames"] = d["next_n_training_frames"]
        notes = []
        extra = dict(d.get("next_overrides") or {})
        for k in ("field", "data.n_training_frames"):
            extra.pop(k, None)
        try:
            base_list = self.validator.normalise({**base, **extra})
        except OverrideError as e:
            notes.append(f"next_overrides dropped: {e}")
            base_list = self.validator.normalise(base)
        try:
            compose_train(self.code_dir, merge_train(self.train_overrides, base_list))
        except ComposeError as e:
            notes.append(f"base config did not compose ({e}); using the previous block's base with the new regime")
            base_list = self.validator.normalise({**as_dict(prev.base_overrides), "field": d["next_field"],
                                                  "data.n_training_frames": d["next_n_training_frames"]})
        ucb_c = d.get("ucb_c") if d.get("ucb_c") is not None else prev.ucb_c
        hyp = d.get("hypothesis") or ""
        if notes:
            hyp = (hyp + " " + " ".join(notes)).strip()
        self._emit({"event": "block_start", "block": prev.block + 1, "field": d["next_field"],
                    "n_training_frames": int(d["next_n_training_frames"]), "base_overrides": base_list,
                    "ucb_c": float(ucb_c), "n_iter_block": int(self.cfg["n_iter_block"]),
                    "first_iteration": st.n_iterations + 1, "hypothesis": hyp,
                    "from_node": best.node_id if best is not None else None})
        self._render()

    # ------------------------------------------------------------------ proposals
    def _heuristic(self) -> Policy:
        if self.policy_name == "heuristic":
            return self.policy
        if self._fallback is None:
            self._fallback = build_policy("heuristic", {"name": "heuristic", "seed": self.cfg.get("seed", 0)},
                                          self.ctx)
        return self._fallback

    def _validate(self, p: Any, view: StudyView, taken: set[str]) -> tuple[list[str], dict[str, list[Any]], str]:
        """(full overrides, changes {key: [old, new]}, config hash) of a valid proposal; else Rejection."""
        if not isinstance(p, Proposal):
            raise Rejection(f"not a Proposal: {type(p).__name__}")
        if p.strategy not in STRATEGIES:
            raise Rejection(f"unknown strategy {p.strategy!r} (allowed: {', '.join(STRATEGIES)})")
        ids = {n.node_id for n in view.block_nodes}
        if p.parent_id is not None:
            if isinstance(p.parent_id, bool) or not isinstance(p.parent_id, int):
                raise Rejection(f"parent_id {p.parent_id!r} is not an integer node id or None (root)")
            if p.parent_id not in ids:
                raise Rejection(f"parent {p.parent_id} is not a finished node of block {view.block.block}'s tree "
                                f"(nodes: {', '.join(map(str, sorted(ids))) or 'none: use parent=root'})")
        if not isinstance(p.overrides, Mapping):
            raise Rejection(f"overrides must be a mapping of key to value, got {type(p.overrides).__name__}")
        try:
            changes = self.validator.normalise(p.overrides)
        except OverrideError as e:
            raise Rejection(str(e)) from None
        for k in as_dict(changes):
            if k in ("field", "data.n_training_frames"):
                raise Rejection(f"{k} changes only between blocks (block-end decision), not within block "
                                f"{view.block.block}")
        if p.code_diff and self.code_mod_handler is None:
            raise Rejection("code modifications are disabled in this study (no code-modification handler)")
        parent_ov = view.overrides_of(p.parent_id)
        full = merge(parent_ov, changes)
        h = view.config_id(full)  # the resolved config's identity: a spelled-out default is no new config
        for n in view.nodes:
            if n.launched and n.is_failed and not p.code_diff and view.config_id(n.overrides) == h:
                raise Rejection(f"this exact config already failed as node {n.node_id} ({n.status}: "
                                f"{n.error or '-'}); change something")
        if h in taken:
            raise Rejection("duplicate of another proposal of this round")
        for n in view.block_nodes:
            if p.strategy != "robustness-test" and not p.code_diff and view.config_id(n.overrides) == h:
                raise Rejection(f"duplicate of node {n.node_id} in this block (only a robustness-test re-runs a "
                                f"config)")
        try:
            compose_train(self.code_dir, merge_train(self.train_overrides, full))
        except ComposeError as e:
            raise Rejection(f"does not compose with the trainer's config: {e}") from None
        delta = {k: [self.validator.canon(k, view.value(p.parent_id, k) if old is None else old), new]
                 for k, (old, new) in diff(parent_ov, full).items()}
        return full, delta, h

    def _plan_round(self, st: StudyState, k: int) -> list[NodeState] | None:
        roles = slot_roles(k) if int(self.cfg["batch"]) > 1 else ["auto"] * k
        slots = list(range(k))
        accepted: dict[int, tuple[Any, ...]] = {}
        rejections: list[NodeState] = []
        taken: set[str] = set()
        policy, policy_name, fallback = self.policy, self.policy_name, None
        attempt = 0
        while slots:
            attempt += 1
            if attempt > self.max_attempts:
                if policy_name == "heuristic":
                    raise StudyError(f"the heuristic policy produced no valid proposal in {self.max_attempts} "
                                     f"attempts: {rejections[-1].error if rejections else '?'}")
                policy, policy_name = self._heuristic(), "heuristic"
                fallback = f"{self.policy_name}: {len(rejections)} rejected proposal(s), last: " \
                           f"{rejections[-1].error if rejections else '?'}"[:300]
                attempt = 1
            st = self._state()
            view = self._view(st, rejections)
            try:
                props = policy.propose(view, [roles[i] for i in slots])
            except UserError as e:
                self._end(f"policy {policy_name} stopped: {e}")
                return None
            except Exception as e:  # a broken policy: the heuristic takes this round
                if policy_name == "heuristic":
                    raise
                fallback = f"{policy_name}: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
                policy, policy_name, attempt = self._heuristic(), "heuristic", 0
                continue
            if not isinstance(props, list) or len(props) != len(slots):
                props = list(props or []) if isinstance(props, (list, tuple)) else []
                props = (props + [None] * len(slots))[:len(slots)]
            still: list[int] = []
            for slot, p in zip(slots, props, strict=True):
                code: tuple[str | None, str | None] = (None, None)
                try:
                    if p is None:
                        raise Rejection("the policy returned no proposal for this slot")
                    full, delta, h = self._validate(p, view, taken)
                    handler = self.code_mod_handler
                    if handler is not None and (p.code_diff or getattr(handler, "pins_code", False)):
                        try:  # issue-6 seam: apply + smoke-test the diff, get (code dir, commit); the view is
                            # the slot's own (its iteration number), as the planned event will record it
                            code = handler(p, replace(view, iteration=view.iteration + slot,
                                                      iter_in_block=view.iter_in_block + slot))
                        except Rejection:
                            raise
                        except Exception as e:  # noqa: BLE001 - any failure of a code mod rejects the proposal
                            raise Rejection(f"code modification failed: {type(e).__name__}: "
                                            f"{' '.join(str(e).split())[:300]}") from None
                except Rejection as r:
                    rejections.append(self._reject(st, p, str(r), policy_name, slot))
                    still.append(slot)
                    continue
                taken.add(h)
                accepted[slot] = (p, full, delta, h, policy_name, fallback if policy_name == "heuristic" else None,
                                  code)
            slots = still
        st = self._state()
        blk = st.current_block
        assert blk is not None
        round_no = st.rounds + 1
        next_id = st.next_node_id
        for i, slot in enumerate(sorted(accepted)):
            p, full, delta, h, pname, fb, (code_dir, commit) = accepted[slot]
            nid = next_id + i
            mutation = "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in delta.items()) or (
                "none (block base config)" if p.parent_id is None else "none (re-run of the parent's config)")
            note = p.mutation if p.mutation and not all(k in p.mutation for k in delta) else ""
            if p.code_diff:  # the code change is the mutation; config changes (if any) follow it
                mutation = (p.mutation or "[code] code modification") + (f"; {mutation}" if delta else "")
                note = ""
            if isinstance(p.llm, Mapping) and p.llm.get("policy"):  # a policy that fell back internally says so
                pname, fb = str(p.llm["policy"]), p.llm.get("fallback") or fb
            ev = {"event": "planned", "node_id": nid, "parent_id": p.parent_id, "block": blk.block,
                  "iteration": st.n_iterations + 1 + i, "round": round_no, "slot": slot, "role": roles[slot],
                  "strategy": p.strategy, "overrides": full, "changes": delta, "mutation": mutation,
                  "rationale": f"{p.rationale} [policy's mutation note: {note}]" if note else p.rationale,
                  "log_entry": p.log_entry, "observation": p.observation, "memory_updates": list(p.memory_updates),
                  "code_diff": p.code_diff, "code_dir": code_dir, "code_commit": commit, "config_hash": h,
                  "policy": pname, "fallback": fb, "llm": p.llm}
            self._emit(ev)
        st = self._state()
        planned = [st.nodes[next_id + i] for i in range(len(accepted))]
        self._render()
        return planned

    def _reject(self, st: StudyState, p: Any, reason: str, policy_name: str, slot: int) -> NodeState:
        nid = self._state().next_node_id  # not `st`'s: an earlier rejection of this attempt may have taken it
        blk = st.current_block
        assert blk is not None
        ok = isinstance(p, Proposal)
        parent = p.parent_id if ok and isinstance(p.parent_id, int) and not isinstance(p.parent_id, bool) else None
        if ok and isinstance(p.llm, Mapping) and p.llm.get("policy"):  # the policy that actually decided
            policy_name = str(p.llm["policy"])
        ev = {"event": "rejected", "node_id": nid, "parent_id": parent, "block": blk.block, "slot": slot,
              "strategy": str(p.strategy)[:60] if ok else "", "mutation": str(p.mutation)[:300] if ok else "",
              "rationale": str(p.rationale)[:500] if ok else "",
              "overrides": [f"{k}={v}"[:200] for k, v in list(p.overrides.items())[:50]]
              if ok and isinstance(p.overrides, Mapping) else [],
              "reason": reason[:1000], "policy": policy_name, "llm": p.llm if ok else None}
        self._emit(ev)
        self.out(f"rejected a {policy_name} proposal: {reason[:200]}")
        return fold(self.journal.read()).nodes[nid]

    # ------------------------------------------------------------------ rounds
    def _job_overrides(self, n: NodeState, st: StudyState, code_dir: Path, cpu_threads: int | None = None) -> list[str]:
        """The job's full override list: the node's over train_overrides, the study.* keys, and what the agent adds
        where the trainer has the key and the user did not set it (logger group/tags, an absolute data.root, the
        job's share of the CPU threads)."""
        ov = merge_train(self.train_overrides, n.overrides)
        try:  # the same composition as the proposal's validation (cached): study.* values do not change keys
            cfg = compose_train(code_dir, ov)
        except ComposeError:
            cfg = None
        study = {"study.name": self.name, "study.node_id": n.node_id,
                 "study.parent_id": "null" if n.parent_id is None else n.parent_id, "study.block": n.block,
                 "study.iteration": n.iteration, "study.strategy": n.strategy}
        ov += [f"{k}={v}" for k, v in study.items()]
        if cfg is None:
            return ov
        keys = as_dict([o for o in ov if "=" in o])
        if has_key(cfg, "logger.group") and "logger.group" not in keys:
            ov.append(f"logger.group={self.name}")
        if has_key(cfg, "logger.tags") and "logger.tags" not in keys:
            inr = value(cfg, "inr_type") or "inr"
            ov.append(f"logger.tags=[block_{n.block},{n.strategy},{inr}]")
        if "data.root" not in keys and has_key(cfg, "data.root"):
            root = value(cfg, "data.root")
            if isinstance(root, str) and not Path(root).is_absolute() and re.match(r"^[A-Za-z0-9_./-]+$", root):
                ov.append(f"data.root={(Path.cwd() / root).resolve()}")
        if cpu_threads is not None and "trainer.cpu_threads" not in keys and has_key(cfg, "trainer.cpu_threads"):
            ov.append(f"trainer.cpu_threads={cpu_threads}")
        return ov

    def _run_round(self, st: StudyState, nodes: Sequence[NodeState]) -> None:
        round_no = st.rounds + 1
        sweep_dir = self.study_dir / "runs" / f"round_{round_no:04d}"
        groups: dict[str, list[NodeState]] = {}
        for n in nodes:
            groups.setdefault(n.code_dir or str(self.code_dir), []).append(n)
        commit_cache: dict[str, str | None] = {}
        confine = getattr(self.code_mod_handler, "confine", None)
        for code_dir, group in groups.items():
            cd = Path(code_dir)
            share = self.launcher.cpu_threads_per_job(len(group))
            jobs = [Job(n.node_id, self._job_overrides(n, st, cd, share), f"node_{n.node_id:04d}") for n in group]
            # issue 20: code a policy may have modified runs in the handler's sandbox (None: not confined)
            wrap = confine(cd, [j.overrides for j in jobs]) if callable(confine) else None
            runner = self.runner if cd == self.code_dir and wrap is None else RoundRunner(
                code_dir=cd, launcher=self.launcher, per_run_s=self.runner.per_run_s, grace_s=self.runner.grace_s,
                python=self.runner.python, wrap=wrap)
            if code_dir not in commit_cache:
                commit_cache[code_dir] = git_commit(cd)
            by_id = {n.node_id: n for n in group}
            gdir = sweep_dir if len(groups) == 1 else sweep_dir / f"code_{list(groups).index(code_dir)}"

            def on_launch(info: dict[str, Any], _cd: str = code_dir, by_id: dict = by_id) -> None:
                self._emit({"event": "launched", "round": round_no, "node_ids": info["node_ids"],
                            "run_dirs": {str(i): d for i, d in info["run_dirs"].items()}, "token": info["token"],
                            "jobs_file": info["jobs_file"], "attempt": info["attempt"],
                            "launcher": self.launcher.name, "code_dir": _cd,
                            "code_commit": by_id[info["node_ids"][0]].code_commit or commit_cache[_cd]})
                self.out(f"round {round_no}: launched node(s) {', '.join(map(str, info['node_ids']))} "
                         f"({self.launcher.name})")

            runner.run(gdir, jobs, on_launch=on_launch, on_done=self._finish)
        self._render()

    def _finish(self, res: JobResult) -> None:
        hook = getattr(self.code_mod_handler, "on_finished", None)
        if callable(hook):  # issue 6: keep or revert a code change once its run ended (may reword the error)
            res = hook(res)
        png = Path(res.run_dir) / "field.png" if res.run_dir else None
        self._emit({"event": "finished", "node_id": res.node_id, "status": res.status, "error": res.error,
                    "metrics": res.metrics, "run_dir": res.run_dir, "wandb_run_id": res.wandb_run_id,
                    "field_png": str(png) if png is not None and png.exists() else None})
        st = self._state()
        n = st.nodes.get(res.node_id)
        r2 = n.r2 if n is not None else None
        t = res.metrics.get("training_time")
        self.out(f"  iter {n.iteration if n else '?'} node {res.node_id} ({n.strategy if n else '?'}; "
                 f"{n.mutation if n else ''}): {res.status}"
                 + (f" R²={r2:.6f}" if r2 is not None else f" ({res.error})" if res.error else "")
                 + (f" in {t:.1f} s" if isinstance(t, (int, float)) else ""))
        change = data_changes(st).get(res.node_id)
        if change:
            self.out(f"  warning: {change}")


def build_view(st: StudyState, cfg: Mapping[str, Any], validator: Validator, study_dir: Path, *,
               resolver: Callable[[Sequence[str], str], Any] | None = None,
               rejections: Sequence[NodeState] = (),
               identity: Callable[[Sequence[str]], str] | None = None) -> StudyView:
    """The policy's read-only view of a study state (also used by tests on synthetic journals). `identity` is the
    study's config identity (agent.study.identity.ConfigIdentity); without it configs compare by override list."""
    blk = st.current_block
    if blk is None:
        raise StudyError("the study has no block yet")
    agent = cfg.get("agent") or {}
    min_comp = float(agent.get("min_compression", 1.0))
    finished = [n for n in st.block_nodes(blk.block) if n.finished]
    stats = block_stats(finished, min_compression=min_comp,
                        plateau_window=int(agent.get("plateau_window", 3)),
                        plateau_nines=float(agent.get("plateau_nines", 0.05)),
                        stochastic_spread=float(agent.get("stochastic_spread", 0.1)))
    inr = str((resolver(blk.base_overrides, "inr_type") if resolver else None) or cfg.get("inr_type") or "?")
    est, open_ = principles(list(st.nodes.values()), inr)
    with_png = [n for n in st.launched_nodes() if n.finished and n.field_png]
    paths = render.paths(study_dir, st.name or str(cfg.get("name")))
    return StudyView(
        name=st.name or str(cfg.get("name")), study_dir=study_dir, block=blk, iteration=st.n_iterations + 1,
        iter_in_block=len(st.block_nodes(blk.block)) + 1, n_iter_block=blk.n_iter_block,
        nodes=tuple(st.nodes.values()), block_nodes=tuple(finished),
        ucb=tuple(scores(finished, blk.ucb_c, min_comp)), stats=stats, established=tuple(est),
        open_questions=tuple(open_), specs=dict(validator.specs),
        mutable=tuple((cfg.get("policy") or {}).get("params") or ()), config=dict(cfg),
        instructions_path=paths["instructions"], memory_path=paths["memory"], analysis_path=paths["analysis"],
        ucb_path=paths["ucb"], blocks=tuple(st.blocks), recent_rejections=tuple(rejections),
        field_png=Path(with_png[-1].field_png) if with_png else None, resolver=resolver, identity=identity)


def run_explore(cfg: Mapping[str, Any]) -> int:
    return Explorer(cfg).run()

