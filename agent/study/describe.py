"""One-line descriptions of a node's result, shared by the heuristic policy's observations and the rendered
memory (agent.reporting.render), so both say the same words."""

from __future__ import annotations

import math
from typing import Any

from agent.study.state import NodeState
from agent.study.stats import beaten_by, grade, nines
from agent.study.tree import format_r2


def as_number(x: Any) -> float | None:
    """`x` as a finite float, or None (missing, non-numeric, NaN or infinite)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def describe_result(n: NodeState, parent: NodeState | None) -> str:
    """One sentence on a finished node's result, compared with its parent (None: a root, or a parent not in the
    study): what the heuristic's observation and the memory's evidence lines say."""
    what = f"Node {n.node_id} ({n.strategy}; {n.mutation})"
    if not n.is_ok:
        return f"{what} {n.status}: {n.error or 'no reason recorded'}."
    m = n.metrics
    s = f"{what}: R² {format_r2(n.r2)} ({grade(n)})"
    if parent is not None and parent.r2 is not None:
        s += f", parent {parent.node_id} {format_r2(parent.r2)} (Δ {nines(n.r2) - nines(parent.r2):+.2f} nines)"
    if isinstance(m.get("slope"), (int, float)):
        s += f", slope {m['slope']:.4f}"
    t, pt = as_number(m.get("training_time")), as_number(parent.metrics.get("training_time")) if parent else None
    if t is not None:
        s += f", training {t:.1f} s" + (f" ({t / pt:.2f}x parent)" if pt else "")
    if isinstance(m.get("compression_ratio"), (int, float)):
        s += f", compression {m['compression_ratio']:.3g}"
    beaten = beaten_by(m)
    return s + (f", {beaten}." if beaten else ".")
