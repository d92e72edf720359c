"""UCB1 over the current block's tree of runs, exactly as the design document (`landscape_study.md`)
describes it.

    UCB(k) = R_k + c * sqrt(ln N / n_k)

- n_k: visits of node k = 1 (itself) + the number of its descendants in the block's tree;
- N: total visits of the block's tree = the number of nodes in it (each node is one visit);
- R_k, the node's reward: its final R² clipped to [0, 1]. Failed nodes (diverged, failed, timeout, crashed) are
  scored explicitly with R = 0, and so are runs whose compression ratio is below `min_compression` (a model with
  more parameters than data values stores the data rather than represents it). The printed R2 stays the measured
  value, so the file shows both.
- c: `ucb_c` from the config (per block; the block-end decision may change it).

Scores reset at block boundaries: only the current block's nodes form the tree, its first node has parent=root
and an empty `ucb_scores.txt` means "no node yet: parent=root". A parent must be an earlier node of the same
tree, so cycles cannot exist; `scores()` checks that and raises ValueError otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class NodeLike(Protocol):
    node_id: int
    parent_id: int | None
    status: str
    metrics: dict[str, Any]


@dataclass(frozen=True)
class UCBScore:
    node_id: int
    parent_id: int | None
    visits: int
    reward: float
    ucb: float
    r2: float | None
    slope: float | None
    time_s: float | None
    status: str
    compression: float | None


def reward(node: NodeLike, min_compression: float = 1.0) -> float:
    """The R of the UCB formula (see module docstring)."""
    if node.status != "ok":
        return 0.0
    r2 = node.metrics.get("final_r2")
    if not isinstance(r2, (int, float)) or not math.isfinite(r2):
        return 0.0
    comp = node.metrics.get("compression_ratio")
    if isinstance(comp, (int, float)) and comp < min_compression:
        return 0.0
    return min(1.0, max(0.0, float(r2)))


def visits(nodes: Sequence[NodeLike]) -> dict[int, int]:
    """n_k for every node: itself plus all descendants. Validates the tree (parents earlier, in the set)."""
    ids = {n.node_id for n in nodes}
    parent = {}
    for n in nodes:
        p = n.parent_id
        if p is not None:
            if p not in ids:
                raise ValueError(f"node {n.node_id}: parent {p} is not in this block's tree")
            if p >= n.node_id:
                raise ValueError(f"node {n.node_id}: parent {p} is not an earlier node")
        parent[n.node_id] = p
    v = {i: 1 for i in ids}
    for i in ids:  # walk up; terminates because parent ids strictly decrease
        p = parent[i]
        while p is not None:
            v[p] += 1
            p = parent[p]
    return v


def scores(nodes: Sequence[NodeLike], c: float, min_compression: float = 1.0) -> list[UCBScore]:
    """UCB1 scores of all nodes, sorted by UCB (highest first; ties: lower node id first)."""
    if not nodes:
        return []
    v = visits(nodes)
    big_n = len(nodes)
    log_n = math.log(big_n)
    out = []
    for n in nodes:
        r = reward(n, min_compression)
        u = r + c * math.sqrt(log_n / v[n.node_id])
        m = n.metrics if n.status == "ok" else {}
        out.append(UCBScore(
            node_id=n.node_id, parent_id=n.parent_id, visits=v[n.node_id], reward=r, ucb=u,
            r2=_num(m.get("final_r2")), slope=_num(m.get("slope")),
            time_s=_num(n.metrics.get("training_time")), status=n.status,
            compression=_num(m.get("compression_ratio"))))
    out.sort(key=lambda s: (-s.ucb, s.node_id))
    return out


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def format_r2(r2: float | None) -> str:
    """Six decimals: tells 0.9995 from 0.99995 (the reference printed 1.000 for both)."""
    return "nan" if r2 is None else f"{r2:.6f}"


def format_scores(items: Sequence[UCBScore], *, block: int, first_iteration: int, last_iteration: int,
                  c: float) -> str:
    """`ucb_scores.txt` in the design document's line format (empty string when the block has no node yet)."""
    if not items:
        return ""
    lines = [(f"=== UCB scores (block {block}, iterations {first_iteration}-{last_iteration}, "
              f"N={len(items)}, c={c:g}) ==="), ""]
    for s in items:
        parent = "root" if s.parent_id is None else str(s.parent_id)
        slope = "nan" if s.slope is None else f"{s.slope:.4f}"
        tmin = "nan" if s.time_s is None else f"{s.time_s / 60:.2f}min"
        line = (f"Node {s.node_id}: UCB={s.ucb:.4f}, parent={parent}, visits={s.visits}, "
                f"R2={format_r2(s.r2)}, slope={slope}, time={tmin}")
        if s.status != "ok":
            line += f", status={s.status}"
        elif s.reward == 0.0 and s.compression is not None and s.r2 is not None and s.r2 > 0:
            line += f", compression={s.compression:.3g} (below min: scored 0)"
        lines.append(line)
    return "\n".join(lines) + "\n"
