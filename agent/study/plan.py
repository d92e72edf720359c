"""A study plan (conf/agent/plan/<name>.yaml): the ordered regimes (blocks) a study covers, the one-factor probes each
block runs before the policy's iterations, and the seed-spread phase after the last block.

Without a plan the policy's block-end decision picks each next regime (the design document's loop). A reference
study has to cover every (field, inr_type, window) within a stated budget, so there the plan fixes the regimes and
their budgets, and the policy still proposes the mutations inside each block and writes its block-end summary.

Everything here is data: parsing the plan (one-line ConfigError for a bad one) and deciding, from the journal's
fold alone, which seed-spread runs the study owes. So a resumed study plans exactly what the uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.runs.overrides import (
    ALLOWED,
    BLOCK_KEYS,
    FIELDS,
    OverrideError,
    Validator,
    as_dict,
)
from agent.study.state import NodeState, StudyState
from mpm_inr.errors import ConfigError

#: the strategy of the agent's seed-spread re-runs (never a policy proposal)
SEED_STRATEGY = "seed-spread"
#: the strategy of a plan's one-factor probes (children of the block's root)
PROBE_STRATEGY = "probe"
#: BlockState.kind of a block whose regime came from the plan, and of the seed-spread phase
PLAN_KIND = "plan"
SEED_KIND = "seed-spread"
#: the key the agent sets on a seed-spread run (the dataset's simulation seed)
DATA_SEED = "data.seed"


@dataclass(frozen=True)
class PlanBlock:
    """One regime: its base config (allow-listed `overrides`, which the policy may mutate), the per-run settings
    the agent adds to every job of the block (`run_overrides`: budget caps such as train.max_time_s, never
    mutated, outside the config's identity), the probes and the policy's iterations after them."""

    field: str
    inr_type: str
    n_training_frames: int
    n_iter: int
    base: list[str]                       # normalised: field, inr_type, frames and the block's overrides
    run_overrides: list[str] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    @property
    def n_runs(self) -> int:
        """Root + probes + the policy's iterations: the block's n_iter_block."""
        return 1 + len(self.probes) + self.n_iter

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "inr_type": self.inr_type, "n_training_frames": self.n_training_frames,
                "n_iter": self.n_iter, "base": list(self.base), "run_overrides": list(self.run_overrides),
                "probes": [dict(p) for p in self.probes], "note": self.note}


@dataclass(frozen=True)
class SeedSpread:
    """After the last block: the best config of each (field, inr_type) re-run on these dataset seeds."""

    seeds: list[int]
    frames: list[int] | None = None       # windows a best config may come from (None: any)


@dataclass(frozen=True)
class StudyPlan:
    name: str
    blocks: list[PlanBlock]
    seed_spread: SeedSpread | None

    @property
    def n_blocks(self) -> int:
        """Blocks the loop runs: the plan's, plus one for the seed-spread phase."""
        return len(self.blocks) + (1 if self.seed_spread is not None else 0)


def _plain_overrides(raw: Any, where: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        raise ConfigError(f"plan {where}: run_overrides must be a mapping of key to value, got {type(raw).__name__}")
    out = []
    for k, v in raw.items():
        if not isinstance(k, str) or not k or "=" in k or k.startswith(("+", "~")):
            raise ConfigError(f"plan {where}: bad run_overrides key {k!r}")
        if k in ALLOWED:
            raise ConfigError(f"plan {where}: {k} is a key the policy may change; put it in the block's overrides, "
                              "not run_overrides")
        out.append(f"{k}={'null' if v is None else str(v).lower() if isinstance(v, bool) else v}")
    return out


def parse_plan(raw: Any, validator: Validator) -> StudyPlan | None:
    """The explore config's `plan` as a StudyPlan (None: no plan). Every block's base and probes go through the
    allow-list now, so a bad plan fails before anything runs."""
    if raw is None or (isinstance(raw, Mapping) and not raw.get("blocks")):
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"plan must be a mapping with `blocks`, got {type(raw).__name__}")
    blocks: list[PlanBlock] = []
    for i, b in enumerate(raw.get("blocks") or [], start=1):
        where = f"block {i}"
        if not isinstance(b, Mapping):
            raise ConfigError(f"plan {where} must be a mapping, got {type(b).__name__}")
        fld, inr, frames = b.get("field"), b.get("inr_type"), b.get("n_training_frames")
        if fld not in FIELDS:
            raise ConfigError(f"plan {where}: field {fld!r} is not one of {', '.join(FIELDS)}")
        n_iter = b.get("n_iter", 0)
        if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 0:
            raise ConfigError(f"plan {where}: n_iter must be an integer >= 0, got {n_iter!r}")
        overrides = dict(b.get("overrides") or {})
        for k in ("field", "inr_type", "data.n_training_frames"):
            if k in overrides:
                raise ConfigError(f"plan {where}: set {k} as the block's own key, not in overrides")
        try:
            base = validator.normalise({**overrides, "field": fld, "inr_type": inr,
                                        "data.n_training_frames": frames})
        except OverrideError as e:
            raise ConfigError(f"plan {where}: {e}") from None
        probes = []
        for j, p in enumerate(b.get("probes") or [], start=1):
            if not isinstance(p, Mapping) or not p:
                raise ConfigError(f"plan {where} probe {j}: a probe is a non-empty mapping of overrides")
            try:
                validator.normalise(dict(p))
            except OverrideError as e:
                raise ConfigError(f"plan {where} probe {j}: {e}") from None
            if any(k in p for k in BLOCK_KEYS):
                raise ConfigError(f"plan {where} probe {j}: field and n_training_frames are the block's")
            probes.append(dict(p))
        blocks.append(PlanBlock(field=str(fld), inr_type=str(inr), n_training_frames=int(frames), n_iter=n_iter,
                                base=base, run_overrides=_plain_overrides(b.get("run_overrides"), where),
                                probes=probes, note=str(b.get("note") or "")))
    spread = None
    ss = raw.get("seed_spread")
    if ss:
        seeds = ss.get("seeds") if isinstance(ss, Mapping) else None
        if not isinstance(seeds, Sequence) or not seeds or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
            raise ConfigError(f"plan seed_spread.seeds must be a non-empty list of dataset seeds, got {seeds!r}")
        frames = ss.get("frames")
        spread = SeedSpread(seeds=[int(s) for s in seeds], frames=[int(f) for f in frames] if frames else None)
    return StudyPlan(name=str(raw.get("name") or "plan"), blocks=blocks, seed_spread=spread)


@dataclass(frozen=True)
class SeedRun:
    """One seed-spread run the study owes: `source`'s config on dataset seed `seed`."""

    source: NodeState
    seed: int
    run_overrides: list[str]              # the source block's per-run settings

    @property
    def agent_overrides(self) -> list[str]:
        return [o for o in self.run_overrides if not o.startswith(f"{DATA_SEED}=")] + [f"{DATA_SEED}={self.seed}"]


def node_seed(n: NodeState) -> int | None:
    """The dataset seed the agent set on a node (seed-spread runs), else None."""
    v = as_dict(n.agent_overrides).get(DATA_SEED)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def selection_score(r2: float, metrics: Mapping[str, Any]) -> tuple[float, float, float]:
    """How the seed spread ranks runs: held-out R² where the run recorded one, then training R², then compression.
    Training R² alone picked configs that fit the training frames and not the frames between them (the landscape:
    F with ω = 30, R² 0.99995 and held-out R² 0.76, over the preset's 0.99987 / 0.99984)."""
    held = metrics.get("holdout_r2")
    held = float(held) if isinstance(held, (int, float)) and math.isfinite(held) else r2
    return held, r2, float(metrics.get("compression_ratio") or 0.0)


def best_per_regime(st: StudyState, frames: Sequence[int] | None = None) -> list[NodeState]:
    """The best finished run of each (field, inr_type) over the plan's blocks (`selection_score`), in the order
    of FIELDS then inr_type name; only windows in `frames` when given."""
    best: dict[tuple[str, str], NodeState] = {}
    for blk in st.blocks:
        if blk.kind != PLAN_KIND or (frames and blk.n_training_frames not in frames):
            continue
        for n in st.block_nodes(blk.block):
            if n.r2 is None:
                continue
            key = (blk.field, str(n.metrics.get("inr_type") or "?"))
            cur = best.get(key)
            if cur is None or selection_score(n.r2, n.metrics) > selection_score(cur.r2, cur.metrics):
                best[key] = n
    order = {f: i for i, f in enumerate(FIELDS)}
    return [best[k] for k in sorted(best, key=lambda k: (order.get(k[0], 9), k[1]))]


def seed_runs(st: StudyState, spread: SeedSpread) -> list[SeedRun]:
    """Every seed-spread run the study owes, in a fixed order (config, then seed), from the journal alone."""
    out = []
    for src in best_per_regime(st, spread.frames):
        blk = st.block(src.block)
        run_ov = list(blk.run_overrides) if blk is not None else []
        out += [SeedRun(src, s, run_ov) for s in spread.seeds]
    return out


def owed_seed_runs(st: StudyState, spread: SeedSpread) -> list[SeedRun]:
    """The seed-spread runs not yet planned (a planned, running or finished one is never planned again)."""
    done = {(n.source_id, node_seed(n)) for n in st.nodes.values() if n.strategy == SEED_STRATEGY}
    return [r for r in seed_runs(st, spread) if (r.source.node_id, r.seed) not in done]


def plan_budget_text(st: StudyState) -> str | None:
    """One paragraph for the report's header: the plan's regimes and each inr_type's per-run settings by window
    (the caps that bound what a run could reach), or None for a study without a plan."""
    plan_blocks = [b for b in st.blocks if b.kind == PLAN_KIND]
    if not plan_blocks:
        return None
    caps: dict[str, dict[str, list[int]]] = {}
    for b in plan_blocks:
        inr = as_dict(b.base_overrides).get("inr_type", "?")
        caps.setdefault(inr, {}).setdefault(", ".join(b.run_overrides) or "no cap", []).append(b.n_training_frames)
    parts = [f"{inr}: " + "; ".join(f"{'/'.join(str(f) for f in sorted(set(fr)))} frames {ov}"
                                     for ov, fr in by_ov.items()) for inr, by_ov in caps.items()]
    seeds = [b for b in st.blocks if b.kind == SEED_KIND]
    name = (st.config.get("plan") or {}).get("name", "plan")
    return (f"Study plan {name}: {len(plan_blocks)} block(s) whose regimes came from the plan"
            + (", then a seed-spread block" if seeds else "") + ". Per-run settings (a run's R² is what its "
            "training cap buys, the final evaluation and baselines come on top): " + " | ".join(parts) + ".")
