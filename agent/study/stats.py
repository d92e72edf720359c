"""Block statistics and evidence, computed by code from the journal (the design document, `landscape_study.md`,
asked the LLM to eyeball these).

- branching rate: share of a block's iterations (after its first) whose parent is not the previous iteration;
- improvement rate: share of child nodes whose reward beats their parent's;
- plateau: the last `window` successful runs' R² lie within ±tol on the nines scale, −log10(1 − R²) (the design
  document's "same R² plateau (±0.05) for 3+" was in R²: it called 0.95 and 0.9995 the same, and near 1 every run
  equal);
- same-parameter streak: consecutive latest iterations that mutated the same single parameter;
- success streak: consecutive latest iterations with R² ≥ 0.95 (the failure-probe trigger);
- re-run spread: the largest R² range among runs of the same config with different seeds (stochastic field > 0.1).

`effects()` turns single-parameter parent→child pairs into evidence: a direction of change of one parameter and
the change in nines it produced (0.999 → 0.9999 is +1, as is 0.9 → 0.99). Only effects that ≥ 3 runs support, all in the same direction, are *established*
principles; 1-2 runs are *tentative*; mixed signs are *contradicted* (the design document's evidence hierarchy).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.runs.overrides import as_dict
from agent.study.state import NodeState
from agent.study.tree import reward

#: a change in nines smaller than this (about 2 % of the residual 1 − R²) is "no effect" for an effect's direction
EFFECT_EPS = 0.01
#: nines of a perfect fit: 1 − R² below 1e-12 is float64 rounding, not accuracy
MAX_NINES = 12.0


def nines(r2: float) -> float:
    """−log10(1 − R²): the scale R² is judged on. Equal steps are equal factors of the residual, so 0.9995 and
    0.99999 stay apart (1.7 nines) where their R² differ by 5e-4; a negative R² gives a negative value."""
    return min(MAX_NINES, -math.log10(max(1.0 - r2, 10.0 ** -MAX_NINES)))


def beaten_by(metrics: dict[str, Any]) -> str | None:
    """Which baselines of the same size fit the run's window better, as a phrase (None when none does or none was
    recorded): a model that a linear factorisation or a classical compressor of its own size beats has not earned
    its bytes. The SVD is read in bytes (`svd_r2_same_bytes`, per-component centred, means included) when the run
    has the classical baselines, else at the same parameter count (`svd_r2_same_params`)."""
    r2 = metrics.get("final_r2")
    if not _finite(r2):
        return None
    svd = metrics.get("svd_r2_same_bytes")
    rivals = [("the same-size SVD", svd if _finite(svd) else metrics.get("svd_r2_same_params")),
              ("SZ3 at the same size", metrics.get("sz3_r2_same_bytes")),
              ("ZFP at the same size", metrics.get("zfp_r2_same_bytes"))]
    better = [f"{name} (R² {v:.6f}, {nines(v) - nines(r2):.2f} nines better)" for name, v in rivals
              if _finite(v) and v > r2]
    return "beaten by " + " and ".join(better) if better else None


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def grade(node: NodeState) -> str:
    """The design document's classes: excellent > 0.995 ≥ good ≥ 0.990 > moderate ≥ 0.90 > poor; failures by
    status."""
    if not node.is_ok:
        return node.status
    r2 = node.r2
    if r2 is None:
        return "poor"
    if r2 > 0.995:
        return "excellent"
    if r2 >= 0.990:
        return "good"
    if r2 >= 0.90:
        return "moderate"
    return "poor"


def mutated(node: NodeState) -> list[str]:
    """Parameters the node changed relative to its parent (or the block base), excluding the training seed."""
    return sorted(k for k in node.changes if k != "seed")


@dataclass
class BlockStats:
    n_nodes: int = 0
    n_ok: int = 0
    n_failed: int = 0
    branching_rate: float | None = None
    improvement_rate: float | None = None
    plateau: bool = False
    plateau_window: int = 3
    plateau_nines: float = 0.05
    same_param: str | None = None
    same_param_streak: int = 0
    max_same_param_run: int = 0
    success_streak: int = 0
    best_node: int | None = None
    best_r2: float | None = None
    rerun_spread: float | None = None
    stochastic: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def block_stats(nodes: Sequence[NodeState], *, min_compression: float = 1.0, plateau_window: int = 3,
                plateau_nines: float = 0.05, success_r2: float = 0.95, stochastic_spread: float = 0.1) -> BlockStats:
    """Statistics of one block's finished nodes (in iteration order)."""
    nodes = sorted((n for n in nodes if n.finished and n.launched), key=lambda n: n.iteration or 0)
    st = BlockStats(plateau_window=plateau_window, plateau_nines=plateau_nines)
    st.n_nodes = len(nodes)
    st.n_ok = sum(n.is_ok for n in nodes)
    st.n_failed = sum(n.is_failed for n in nodes)
    if not nodes:
        return st
    by_id = {n.node_id: n for n in nodes}

    later = nodes[1:]
    if later:
        prev_ids = [n.node_id for n in nodes[:-1]]
        st.branching_rate = sum(n.parent_id != p for n, p in zip(later, prev_ids, strict=True)) / len(later)

    children = [n for n in nodes if n.parent_id in by_id]
    if children:
        better = sum(reward(n, min_compression) > reward(by_id[n.parent_id], min_compression) for n in children)
        st.improvement_rate = better / len(children)

    ok = [n for n in nodes if n.is_ok and n.r2 is not None]
    if len(ok) >= plateau_window:
        last = [nines(n.r2) for n in ok[-plateau_window:]]
        st.plateau = (max(last) - min(last)) <= 2 * plateau_nines  # all within ±tol of their centre

    runs: list[tuple[str, int]] = []
    for n in nodes:
        m = mutated(n)
        key = m[0] if len(m) == 1 else None
        if runs and key is not None and runs[-1][0] == key:
            runs[-1] = (key, runs[-1][1] + 1)
        else:
            runs.append((key, 1) if key is not None else ("", 0))
    st.max_same_param_run = max((c for _, c in runs), default=0)
    if runs and runs[-1][0]:
        st.same_param, st.same_param_streak = runs[-1]

    streak = 0
    for n in reversed(nodes):
        if n.is_ok and n.r2 is not None and n.r2 >= success_r2:
            streak += 1
        else:
            break
    st.success_streak = streak

    best = best_node(nodes, min_compression)
    if best is not None:
        st.best_node, st.best_r2 = best.node_id, best.r2

    st.rerun_spread = rerun_spread(nodes)
    st.stochastic = st.rerun_spread is not None and st.rerun_spread > stochastic_spread
    return st


def best_node(nodes: Sequence[NodeState], min_compression: float = 1.0) -> NodeState | None:
    """Highest reward (R² with the compression rule); ties go to the earlier node."""
    ok = [n for n in nodes if n.is_ok and n.r2 is not None]
    if not ok:
        return None
    return max(ok, key=lambda n: (reward(n, min_compression), n.r2, -n.node_id))


def rerun_spread(nodes: Sequence[NodeState]) -> float | None:
    """Largest R² range among ok runs that share every override except the training seed."""
    groups: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for n in nodes:
        if n.is_ok and n.r2 is not None:
            key = tuple(sorted(o for o in n.overrides if not o.startswith("seed=")))
            groups[key].append(n.r2)
    spreads = [max(v) - min(v) for v in groups.values() if len(v) >= 2]
    return max(spreads) if spreads else None


# ----------------------------------------------------------------------------------------------- evidence


@dataclass
class Effect:
    """Evidence about changing one parameter in one direction, in one regime (inr_type, field)."""

    inr_type: str
    field: str
    param: str
    direction: str                 # "up", "down" or "a->b" for categorical values
    deltas: list[float] = field(default_factory=list)   # Δnines child - parent (a failed child: -parent nines)
    nodes: list[int] = field(default_factory=list)
    failures: int = 0

    @property
    def n(self) -> int:
        return len(self.deltas)

    @property
    def signs(self) -> set[int]:
        return {0 if abs(d) < EFFECT_EPS else (1 if d > 0 else -1) for d in self.deltas}

    @property
    def level(self) -> str:
        """established (≥3 runs, one sign) | tentative (1-2 runs) | contradicted (both signs) | neutral."""
        s = self.signs - {0}
        if len(s) > 1:
            return "contradicted"
        if not s:
            return "neutral" if self.n >= 3 else "tentative"
        return "established" if self.n >= 3 and self.signs == s else "tentative"

    @property
    def mean(self) -> float:
        return sum(self.deltas) / len(self.deltas) if self.deltas else 0.0

    def verb(self) -> str:
        if self.direction == "up":
            return f"raising {self.param}"
        if self.direction == "down":
            return f"lowering {self.param}"
        return f"changing {self.param} {self.direction}"

    def statement(self) -> str:
        s = self.signs - {0}
        outcome = ("improved R²" if s == {1} else "lowered R²" if s == {-1}
                   else "had mixed effects on R²" if len(s) > 1 else "did not change R²")
        fail = f", {self.failures} failed" if self.failures else ""
        ids = ", ".join(str(i) for i in self.nodes)
        return (f"{self.field}/{self.inr_type}: {self.verb()} {outcome} in {self.n} run(s){fail} "
                f"(nodes {ids}; mean {self.mean:+.2f} nines)")


def node_regime(node: NodeState, default_inr: str = "?") -> tuple[str, str]:
    """(inr_type, field) of a node: from its metrics when it ran, else from its overrides."""
    ov = as_dict(node.overrides)
    inr = node.metrics.get("inr_type") or ov.get("inr_type") or default_inr
    fld = node.metrics.get("field") or ov.get("field") or "?"
    return str(inr), str(fld)


def direction(old: str | None, new: str | None) -> str:
    try:
        a, b = float(old), float(new)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return f"{old}->{new}"
    return "up" if b > a else "down"


def effects(nodes: Sequence[NodeState], default_inr: str = "?") -> list[Effect]:
    """Evidence from every single-parameter parent→child pair (parents must have run ok)."""
    by_id = {n.node_id: n for n in nodes}
    table: dict[tuple[str, str, str, str], Effect] = {}
    for n in sorted(nodes, key=lambda x: x.node_id):
        if not n.finished or not n.launched or n.parent_id is None:
            continue
        parent = by_id.get(n.parent_id)
        if parent is None or not parent.is_ok or parent.r2 is None:
            continue
        m = mutated(n)
        if len(m) != 1 or n.status == "timeout":  # a timeout says nothing about the parameter's effect on R²
            continue
        param = m[0]
        old, new = n.changes[param]
        inr, fld = node_regime(n, default_inr)
        key = (inr, fld, param, direction(old, new))
        eff = table.setdefault(key, Effect(inr, fld, param, key[3]))
        if n.is_ok and n.r2 is not None:
            eff.deltas.append(nines(n.r2) - nines(parent.r2))
        elif n.is_failed:
            eff.deltas.append(-nines(parent.r2))
            eff.failures += 1
        else:
            continue
        eff.nodes.append(n.node_id)
    return sorted(table.values(), key=lambda e: (e.field, e.inr_type, e.param, e.direction))


def principles(nodes: Sequence[NodeState], default_inr: str = "?") -> tuple[list[Effect], list[Effect]]:
    """(established, open) effects: established need ≥ 3 consistent runs; open are tentative or contradicted."""
    est, open_ = [], []
    for e in effects(nodes, default_inr):
        lvl = e.level
        if lvl == "established":
            est.append(e)
        elif lvl in ("tentative", "contradicted"):
            open_.append(e)
    return est, open_


def fmt_num(x: Any, digits: int = 4) -> str:
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            return "nan"
        return f"{x:.{digits}g}"
    return str(x)
