"""The study loop: `python -m agent explore name=jp_study field=Jp policy=heuristic n_blocks=2 n_iter_block=12`.

Each round: build a StudyView from the journal -> ask the policy for `batch` children (slot roles from the design
document's parallel variant) -> validate every proposal (agent.runs.overrides + tree rules; rejected ones are journaled
with the reason and the policy is asked again, then the heuristic fills the slot) -> journal `planned` -> run the
round as one `python train.py --multirun` (agent.runs.runner) -> journal each job's `finished` as soon as it ends ->
re-render.
After the block's last iteration the policy's block-end decision picks the next regime.
The parts: agent.loop.planner (a round's proposals, validated, as a RoundPlan), agent.loop.rounds (jobs and their
`finished` events), agent.loop.blocks (block starts and ends), agent.loop.recovery (the resume rule below), all
sharing one agent.loop.context.StudyContext.

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

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agent.codemod.handler import CodeModHandler
from agent.codemod.hooks import CodeModHooks
from agent.loop.blocks import BlockKeeper, first_base
from agent.loop.checks import check_config, check_train_overrides, split_kv
from agent.loop.context import StudyContext
from agent.loop.plan_phase import PlanKeeper
from agent.loop.planner import PolicyStopped, RoundPlanner
from agent.loop.recovery import recover
from agent.loop.rounds import RoundLauncher
from agent.policies import PolicyContext, build_policy
from agent.policies.base import Policy
from agent.runs.overrides import Validator, merge_train
from agent.runs.runner import LauncherSpec, RoundRunner
from agent.runs.trainconf import compose_train
from agent.study.identity import ConfigIdentity
from agent.study.instructions import base_instructions
from agent.study.journal import SCHEMA_VERSION, Journal, StudyLock
from agent.study.plan import SEED_KIND, StudyPlan, parse_plan
from agent.study.state import StudyState
from mpm_inr.errors import ConfigError, StudyError

REPO = Path(__file__).resolve().parents[2]


def _canonical(x: Any) -> str:
    """A config value as the journal stores it (JSON: integer mapping keys become strings, and are sorted as
    strings only after that round trip: {400: .., 1000: ..} and the journal's {"1000": .., "400": ..} are one)."""
    return json.dumps(json.loads(json.dumps(x or None, default=str)), sort_keys=True)


def _runs_part(plan: Any) -> Any:
    """A plan without its `estimate` (the dry run's per-run costs): what decides the runs, which a resume must keep;
    a better cost figure does not make another study."""
    return {k: v for k, v in plan.items() if k != "estimate"} if isinstance(plan, dict) else plan


class Explorer:
    """Runs (or resumes) one study. `cfg` is the composed explore config as a plain dict; the parts it wires
    together are `study` (shared state and helpers), `planner`, `blocks` and `rounds`."""

    def __init__(self, cfg: Mapping[str, Any], *, out: Callable[[str], None] = print,
                 code_mod_handler: CodeModHooks | None = None):
        self.cfg = dict(cfg)
        self.out = out
        check_config(self.cfg)
        c = self.cfg
        self.name: str = c["name"]
        self.study_dir = (Path(c.get("root") or "explorations") / self.name).resolve()
        self.code_dir = Path(c.get("code_dir") or REPO).resolve()
        if not (self.code_dir / "train.py").exists():
            raise ConfigError(f"code_dir {self.code_dir} has no train.py")
        train_overrides = [str(o) for o in (c.get("train_overrides") or [])]
        split_kv(train_overrides)
        check_train_overrides(c, self.code_dir, train_overrides)
        identity = ConfigIdentity(self.code_dir, train_overrides)
        validator = Validator(limits=c.get("limits") or None, progression=c.get("frames_progression"))
        launcher = c.get("launcher") or {}
        self.launcher = LauncherSpec(str(launcher.get("name")),
                                     {k: v for k, v in (launcher.get("params") or {}).items() if v is not None})
        t = c.get("timeout") or {}
        self.runner = RoundRunner(code_dir=self.code_dir, launcher=self.launcher,
                                  per_run_s=float(t.get("per_run_s", 3600)), grace_s=float(t.get("grace_s", 120)),
                                  python=str(c.get("python") or sys.executable))
        pol = dict(c.get("policy") or {})
        policy_name = str(pol.get("name"))
        if policy_name == "claude" and not os.environ.get("ANTHROPIC_API_KEY"):
            raise ConfigError("policy=claude needs ANTHROPIC_API_KEY in the environment; export it or use "
                              "policy=heuristic")
        # policies see the budget without its unset (null) caps, so their own defaults apply to those
        pcfg = dict(self.cfg)
        pcfg["budget"] = {k: v for k, v in (c.get("budget") or {}).items() if v is not None}
        ctx = PolicyContext(study_dir=self.study_dir, seed=int(c.get("seed", 0)), config=pcfg)
        policy: Policy = build_policy(policy_name, pol, ctx)
        self.plan: StudyPlan | None = parse_plan(c.get("plan"), validator)
        base = first_base(c, validator, lambda ov: compose_train(self.code_dir, merge_train(train_overrides, ov)))
        self.journal = Journal(self.study_dir)
        self.lock = StudyLock(self.study_dir)
        self.study = StudyContext(cfg=self.cfg, name=self.name, study_dir=self.study_dir, code_dir=self.code_dir,
                                  train_overrides=train_overrides, identity=identity, validator=validator,
                                  journal=self.journal, policy=policy, policy_name=policy_name, policy_ctx=ctx,
                                  out=out, code_mod_handler=code_mod_handler)
        if code_mod_handler is None and (c.get("codemod") or {}).get("enabled"):
            # issue 6: the study's branch, guardrails, smoke test
            self.study.code_mod_handler = CodeModHandler(c, study_dir=self.study_dir, code_dir=self.code_dir,
                                                         emit=self.study.emit, events=self.journal.read,
                                                         state=self.study.state, out=self.out,
                                                         python=self.runner.python)
        self.planner = RoundPlanner(self.study)
        self.blocks = BlockKeeper(self.study, base)
        self.rounds = RoundLauncher(self.study, self.runner, self.launcher)
        self.plan_keeper = PlanKeeper(self.study, self.planner, self.plan) if self.plan is not None else None

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
        study = self.study
        st = study.state()
        if not st.name:
            if any(self.study_dir.glob("runs/*")):
                raise StudyError(f"{self.study_dir} has runs but no journal; use another name or remove it")
            study.emit({"event": "study_start", "name": self.name, "schema": SCHEMA_VERSION, "config": self.cfg,
                        "instructions": base_instructions(self.name, self.cfg, study.validator.specs)})
            self.out(f"study {self.name}: started in {self.study_dir}")
            self._start_code()
        else:
            old = st.config
            if old.get("n_iter_block") != self.cfg["n_iter_block"]:
                raise StudyError(f"study {self.name} was started with n_iter_block={old.get('n_iter_block')}; "
                                 f"pass n_iter_block={old.get('n_iter_block')} to resume it")
            if _canonical(_runs_part(old.get("plan"))) != _canonical(_runs_part(self.cfg.get("plan"))):
                raise StudyError(f"study {self.name} was started with another plan; resume it with the same plan= "
                                 "and plan settings, or start a new study (name=...)")
            study.emit({"event": "resume", "config": self.cfg})
            self.out(f"study {self.name}: resuming ({st.n_iterations} iterations, {len(st.blocks)} block(s))")
            self._start_code()
            recover(study, st, finish=self.rounds.finish,
                    relaunch=lambda nodes: self.rounds.run_round(study.state(), nodes))
        study.render()
        return self._loop()

    def _start_code(self) -> None:
        """The code-modification hooks set up (or, on resume, reconcile) the study's code."""
        if self.study.code_mod_handler is not None:
            self.study.code_mod_handler.start()

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
        plan = self.plan_keeper
        n_blocks = plan.plan.n_blocks if plan is not None else int(self.cfg["n_blocks"])
        while True:
            st = self.study.state()
            reason = self._stop_reason(st)
            if reason:
                return self._end(reason)
            blk = st.current_block
            if blk is None:
                if plan is not None:
                    plan.start_next(st)
                else:
                    self.blocks.start_first()
                continue
            nodes = st.block_nodes(blk.block)
            done = f"done: {blk.block} block(s)" + (f" of {blk.n_iter_block} iterations" if plan is None else
                                                    f" of plan {plan.plan.name}")
            if blk.ended:
                if blk.block >= n_blocks:
                    return self._end(done)
                if plan is not None:
                    plan.start_next(st)
                else:
                    self.blocks.start_next(st)
                continue
            k = self.batch_size(st, blk.n_iter_block - len(nodes))
            if blk.kind == SEED_KIND:
                assert plan is not None
                planned = plan.seed_round(st, k) if k > 0 else []
                if not planned:
                    if any(not n.finished for n in nodes):  # cannot happen after recovery; never loop on it
                        raise StudyError(f"seed-spread block {blk.block} has unfinished nodes and nothing to plan")
                    plan.end_seed_phase(st)
                    return self._end(done)
                self.rounds.run_round(self.study.state(), planned)
                continue
            if len(nodes) >= blk.n_iter_block and all(n.finished for n in nodes):
                self.blocks.end(st)
                if blk.block >= n_blocks:
                    return self._end(done)
                continue
            planned = plan.plan_round(st, k) if plan is not None else []
            if not planned:
                try:
                    planned = self.planner.plan(self.study.state(), k)
                except PolicyStopped as e:  # the policy asked to stop (budget / user error inside the policy)
                    return self._end(str(e))
            self.rounds.run_round(self.study.state(), planned)

    def batch_size(self, st: StudyState, left_in_block: int) -> int:
        """Children of the next round: `batch`, the block's remaining iterations and budget.max_iterations."""
        k = min(int(self.cfg["batch"]), left_in_block)
        max_it = (self.cfg.get("budget") or {}).get("max_iterations")
        if max_it is not None:
            k = min(k, int(max_it) - st.n_iterations)
        return k

    def _end(self, reason: str) -> int:
        st = self.study.state()
        if not st.ended or st.ended.get("reason") != reason:
            self.study.emit({"event": "study_end", "reason": reason})
        self.study.render()
        ended = [b.block for b in st.blocks if b.ended]
        if ended:  # a block end may have skipped the rewrite (blocks.REFRESH_GAP_FACTOR): the finished study has it all
            self.blocks.refresh_study_run(max(ended), force=True)
        self.out(f"study {self.name}: {reason}. Files in {self.study_dir}")
        return 0
