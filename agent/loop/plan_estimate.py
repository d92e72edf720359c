"""How long a study plan takes, before it runs: `python -m agent explore plan=landscape name=x dry_run=true`.

A run costs its training time plus a fixed part. Training time is the fitted time model's prediction
(agent.reporting.timemodel, fitted on `plan.estimate.studies` or its default study), capped by the run's
`train.max_time_s` (the plan's per-run setting, else the study's train_overrides). The fixed part (interpreter
start, window, evaluation, SVD and the classical baselines, which the first run of a window pays cold) grows with
the window and is the plan's measured `estimate.fixed_s` per window length. A policy iteration is priced as the
block's root; a seed-spread run as the most expensive root of its (field, inr_type) among the windows it may come
from. A block runs in rounds of `batch` jobs at once and a round lasts as long as its longest job, so wall time is
the sum over rounds: the root and probes fill the first rounds, the policy's iterations the next ones (a block of
3 runs at batch 2 costs 2 rounds, as one of 4 does), and the seed runs go `batch` at a time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.reporting.timemodel import (
    DEFAULT_STUDY,
    TimeModel,
    config_workload,
    fit_studies,
)
from agent.runs.overrides import Validator, as_dict, merge_train
from agent.study.plan import PlanBlock, StudyPlan, parse_plan
from mpm_inr.errors import ConfigError


@dataclass(frozen=True)
class RunCost:
    train_s: float           # predicted training time, capped
    fixed_s: float           # the window's fixed part
    cap_s: float | None
    predicted_s: float       # the time model's prediction, uncapped

    @property
    def total_s(self) -> float:
        return self.train_s + self.fixed_s


@dataclass
class BlockCost:
    index: int               # 1-based plan block; 0 for the seed-spread phase
    label: str
    field: str
    inr_type: str
    frames: int | str
    runs: int
    cap_s: float | None
    job_s: float             # the runs' seconds, summed
    wall_s: float            # the block's rounds' seconds (each as long as its longest run)

    @property
    def minutes(self) -> float:
        return self.wall_s / 60.0


@dataclass
class PlanEstimate:
    blocks: list[BlockCost]
    jobs: int
    budget_min: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def total_min(self) -> float:
        return sum(b.minutes for b in self.blocks)

    def parts(self) -> list[tuple[str, int, int, float]]:
        """(inr_type, window, runs, minutes) per part, in plan order."""
        out: dict[tuple[str, str], list[float]] = {}
        for b in self.blocks:
            key = (b.inr_type + (" (seed spread)" if b.index == 0 else ""), str(b.frames))
            acc = out.setdefault(key, [0, 0.0])
            acc[0] += b.runs
            acc[1] += b.minutes
        return [(k[0], k[1], int(v[0]), v[1]) for k, v in out.items()]  # type: ignore[misc]

    def table(self) -> str:
        rows = ["| block | field | inr_type | frames | runs | cap per run | est. per run | minutes (wall) |",
                "|---|---|---|---|---:|---:|---:|---:|"]
        for b in self.blocks:
            cap = f"{b.cap_s:.0f} s" if b.cap_s is not None else "-"
            rows.append(f"| {b.label} | {b.field} | {b.inr_type} | {b.frames} | {b.runs} | {cap} | "
                        f"{b.job_s / max(b.runs, 1):.0f} s | {b.minutes:.1f} |")
        rows += ["", "| inr_type | window | runs | minutes |", "|---|---|---:|---:|"]
        rows += [f"| {i} | {w} | {n} | {m:.1f} |" for i, w, n, m in self.parts()]
        total = sum(b.runs for b in self.blocks)
        rows += ["", f"total: {total} runs, {self.total_min:.1f} min wall with {self.jobs} job(s) at once"
                 + (f" (budget {self.budget_min:.0f} min: "
                    + ("within" if self.total_min <= self.budget_min else
                       f"OVER by {self.total_min - self.budget_min:.0f} min: cut policy iterations or probes")
                    + ")" if self.budget_min else "")]
        return "\n".join(rows + [f"note: {n}" for n in self.notes])


def _cap(overrides: Sequence[str]) -> float | None:
    v = as_dict(overrides).get("train.max_time_s")
    try:
        return float(v) if v not in (None, "null", "None") else None
    except ValueError:
        return None


def _fixed_s(fixed: Mapping[Any, Any], inr_type: str, frames: int) -> float:
    """The measured fixed part of a run: `fixed[inr_type]` (else `fixed["default"]`) maps window lengths to
    seconds; the shortest listed window at least `frames` long counts (else the longest)."""
    per_type = fixed.get(inr_type, fixed.get("default"))
    if not isinstance(per_type, Mapping) or not per_type:
        raise ConfigError(f"plan.estimate.fixed_s has no entry for {inr_type} (nor `default`): give the fixed "
                          "seconds per run by window length, e.g. {default: {100: 17, 400: 50}}")
    table = sorted((int(k), float(v)) for k, v in per_type.items())
    for n, s in table:
        if frames <= n:
            return s
    return table[-1][1]


class PlanCoster:
    """Prices a plan's runs; compositions and predictions are cached (a config is priced once)."""

    def __init__(self, plan: StudyPlan, train_overrides: Sequence[str], code_dir: Path, model: TimeModel,
                 fixed: Mapping[Any, Any], batch: int = 1):
        self.plan, self.train_overrides, self.code_dir = plan, list(train_overrides), code_dir
        self.batch = max(int(batch), 1)
        self.model, self.fixed = model, fixed
        self._cache: dict[tuple[str, ...], RunCost] = {}

    def run_cost(self, pb: PlanBlock, probe: Mapping[str, Any] | None = None) -> RunCost:
        node = merge_train(pb.base, [f"{k}={v}" for k, v in (probe or {}).items()])
        full = merge_train(merge_train(self.train_overrides, node), pb.run_overrides)
        key = tuple(full)
        if key not in self._cache:
            try:
                w, _ = config_workload(full, self.code_dir)
            except ConfigError:
                raise
            except Exception as e:  # noqa: BLE001 - a code_dir whose conf/ the cost model cannot read
                raise ConfigError(f"cannot price plan block {pb.field}/{pb.inr_type}/{pb.n_training_frames} with "
                                  f"{self.code_dir}: {type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
            predicted = max(self.model.device("cpu", 1).predict(w), 0.0)
            cap = _cap(full)
            self._cache[key] = RunCost(min(predicted, cap) if cap is not None else predicted,
                                       _fixed_s(self.fixed, pb.inr_type, pb.n_training_frames), cap, predicted)
        return self._cache[key]

    def block(self, i: int, pb: PlanBlock) -> BlockCost:
        root = self.run_cost(pb)
        first = [root.total_s] + [self.run_cost(pb, p).total_s for p in pb.probes]
        b = self.batch
        wall = sum(max(first[j:j + b]) for j in range(0, len(first), b)) + math.ceil(pb.n_iter / b) * root.total_s
        job_s = sum(first) + pb.n_iter * root.total_s
        return BlockCost(i, str(i), pb.field, pb.inr_type, pb.n_training_frames, pb.n_runs, root.cap_s, job_s, wall)

    def seed_phase(self) -> list[BlockCost]:
        spread = self.plan.seed_spread
        if spread is None:
            return []
        worst: dict[tuple[str, str], tuple[float, float | None]] = {}
        for pb in self.plan.blocks:
            if spread.frames and pb.n_training_frames not in spread.frames:
                continue
            c = self.run_cost(pb)
            key = (pb.field, pb.inr_type)
            if key not in worst or c.total_s > worst[key][0]:
                worst[key] = (c.total_s, c.cap_s)
        frames = "/".join(map(str, spread.frames)) if spread.frames else "any"
        n = len(spread.seeds)  # a config's seed runs, `batch` at a time (rounds may mix configs: an upper bound)
        return [BlockCost(0, "seeds", f, inr, frames, n, cap, s * n, math.ceil(n / self.batch) * s)
                for (f, inr), (s, cap) in worst.items()]


def estimate(cfg: Mapping[str, Any], plan: StudyPlan, code_dir: Path) -> PlanEstimate:
    """The plan's estimate under the explore config `cfg` (its train_overrides, batch and plan.estimate)."""
    est = dict((cfg.get("plan") or {}).get("estimate") or {})
    studies = [Path(s) for s in (est.get("studies") or [DEFAULT_STUDY])]
    for s in studies:
        if not (s / "journal.jsonl").exists():
            raise ConfigError(f"plan.estimate.studies: {s} is not a study directory (no journal.jsonl)")
    coster = PlanCoster(plan, [str(o) for o in cfg.get("train_overrides") or []], code_dir, fit_studies(studies),
                        est.get("fixed_s") or {}, int(cfg.get("batch") or 1))
    blocks = [coster.block(i, pb) for i, pb in enumerate(plan.blocks, start=1)] + coster.seed_phase()
    budget = est.get("budget_min")
    fixed = "; ".join(f"{t}: " + ", ".join(f"{k} frames {v} s" for k, v in w.items())
                      for t, w in (est.get("fixed_s") or {}).items())
    notes = [(f"training time from the time model fitted on {', '.join(str(s) for s in studies)}, capped by "
              "train.max_time_s; fixed part per run (start, window, evaluation, SVD, baselines) from "
              f"plan.estimate.fixed_s: {fixed}"),
             ("a policy iteration is priced as its block's root; seed-spread runs as the dearest root of their "
              "(field, inr_type); a round lasts as long as its longest run")]
    return PlanEstimate(blocks, int(cfg.get("batch") or 1), float(budget) if budget else None, notes)



def describe(cfg: Mapping[str, Any], code_dir: Path) -> str:
    """The dry run's text: the plan, block by block, then the estimate (nothing runs, nothing is written)."""
    validator = Validator(limits=cfg.get("limits") or None, progression=cfg.get("frames_progression"))
    plan = parse_plan(cfg.get("plan"), validator)
    if plan is None:
        raise ConfigError("dry_run=true prints a study plan; pick one, e.g. plan=landscape")
    lines = [f"plan {plan.name}: {len(plan.blocks)} block(s)"
             + (f", then seed spread on dataset seeds {plan.seed_spread.seeds}" if plan.seed_spread else ""),
             f"every run: {' '.join(str(o) for o in cfg.get('train_overrides') or []) or '(no train_overrides)'}"]
    for i, pb in enumerate(plan.blocks, start=1):
        probes = "; ".join(", ".join(f"{k}={v}" for k, v in p.items()) for p in pb.probes)
        extra = [o for o in pb.base if not o.startswith(("field=", "inr_type=", "data.n_training_frames="))]
        lines.append(f"{i:3d}. {pb.field} {pb.inr_type} {pb.n_training_frames} frames: root"
                     + (f" [{', '.join(extra)}]" if extra else "")
                     + (f" + probes ({probes})" if probes else "") + f" + {pb.n_iter} policy iteration(s)"
                     + (f"; per run {', '.join(pb.run_overrides)}" if pb.run_overrides else ""))
    return "\n".join(lines + ["", estimate(cfg, plan, code_dir).table()])
