"""Folding journal events into the state of a study (nodes, blocks, rounds).

The journal holds events; this module is the one place that knows how they combine:

- `study_start` / `resume`: the explore config of the run that (re)started the study;
- `block_start` / `block_end`: block boundaries, the block's regime (field, frames, base overrides, ucb_c) and
  the policy's block-end decision;
- `planned` creates a node (status `planned`), `launched` marks nodes `running` and gives their run dirs,
  `finished` sets the final status and metrics; `rejected` creates a node that never runs;
- `recovered`: what a restarted agent did with a node left in flight (finished from its metrics.json,
  relaunch, or lost);
- `study_end`: the loop stopped on purpose (done, budget).

A node's status moves planned -> running -> ok | diverged | failed | timeout | crashed; `rejected` is final from
the start. A `finished` event for an already-finished node is ignored (the first one wins), so replays of the
same recovery cannot change history.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FINAL_STATUSES = ("ok", "diverged", "failed", "timeout", "crashed", "rejected")
FAILED_STATUSES = ("diverged", "failed", "timeout", "crashed")


@dataclass
class NodeState:
    """One training run of the study (or a rejected proposal)."""

    node_id: int
    parent_id: int | None
    block: int
    iteration: int | None          # None for rejected proposals: they are not iterations
    round: int | None
    slot: int | None = None
    role: str = ""
    strategy: str = ""
    overrides: list[str] = field(default_factory=list)
    changes: dict[str, list[Any]] = field(default_factory=dict)
    mutation: str = ""
    rationale: str = ""
    log_entry: str = ""
    observation: str = ""
    memory_updates: list[str] = field(default_factory=list)
    code_diff: str | None = None
    code_dir: str | None = None
    code_commit: str | None = None
    agent_overrides: list[str] = field(default_factory=list)  # what the agent adds to the job, not the policy:
    # the block's per-run settings (a plan's budget caps) and a seed-spread run's data.seed; outside its identity
    plan_item: int | None = None   # a plan's node: 0 = the block's root, k = its k-th probe (None: the policy's)
    source_id: int | None = None   # a seed-spread run: the node whose config it re-runs on another dataset seed
    config_hash: str = ""          # as recorded; compare configs with agent.study.identity (StudyView.config_id)
    policy: str = ""
    fallback: str | None = None
    status: str = "planned"
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    run_dir: str | None = None
    run_dirs: list[str] = field(default_factory=list)   # one per launch (a relaunch gets a new one)
    field_png: str | None = None
    wandb_run_id: str | None = None
    launches: int = 0
    recoveries: int = 0            # relaunch decisions after agent restarts (audit; rule in agent.loop.explorer)
    t_planned: float | None = None
    t_launched: float | None = None
    t_finished: float | None = None
    llm: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def launched(self) -> bool:
        """Part of the tree: planned to run (not a rejected proposal)."""
        return self.status != "rejected"

    @property
    def is_ok(self) -> bool:
        return self.status == "ok"

    @property
    def data_identity(self) -> tuple[str | None, str | None]:
        return data_identity(self.metrics)

    @property
    def is_failed(self) -> bool:
        return self.status in FAILED_STATUSES

    @property
    def r2(self) -> float | None:
        v = self.metrics.get("final_r2") if self.is_ok else None
        return float(v) if isinstance(v, (int, float)) else None

    def metric(self, key: str) -> Any:
        return self.metrics.get(key)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def data_identity(metrics: dict[str, Any]) -> tuple[str | None, str | None]:
    """(dataset name, fingerprint) of the data a run trained on, from its metrics.json (Contract 2): the
    fingerprint is None for runs recorded before it or on datasets made before it."""
    path = metrics.get("dataset")
    prov = metrics.get("dataset_provenance")
    fp = prov.get("fingerprint") if isinstance(prov, dict) else None
    name = Path(str(path)).name if path else None
    return name, fp if isinstance(fp, str) and fp else None


def data_changes(st: StudyState) -> dict[int, str]:
    """node id -> one line, for the first run on each new trajectory: other bytes than the runs under the same dataset
    name that finished before it (the dataset was made again mid-study, e.g. on another node's GPU: the discs collide
    chaotically, so it is another trajectory). Later runs never change a node's line, so rendered entries stay
    as they were when the journal grows. One pass over the runs in the order they finished."""
    done = sorted((n for n in st.nodes.values() if n.t_finished is not None), key=lambda n: n.t_finished)
    seen: dict[str | None, set[str]] = {}
    out: dict[int, str] = {}
    for _, group in itertools.groupby(done, key=lambda n: n.t_finished):
        same_time = list(group)  # runs finished at the same instant do not count as earlier for each other
        for n in same_time:
            name, fp = n.data_identity
            known = seen.get(name, set())
            before = sorted(known) if fp and fp not in known else []  # the first run on each new trajectory
            if before:
                out[n.node_id] = (f"node {n.node_id} trained on {name} with fingerprint {fp[:16]}, earlier runs on "
                                  f"{', '.join(f[:16] for f in before)}: the dataset was made again (another "
                                  f"simulator version, torch build or device), so R² across them are not comparable")
        for n in same_time:
            name, fp = n.data_identity
            if fp:
                seen.setdefault(name, set()).add(fp)
    return out


@dataclass
class BlockState:
    """One block: a regime (field, frames, base config) explored for n_iter_block iterations."""

    block: int
    field: str
    n_training_frames: int
    base_overrides: list[str]
    ucb_c: float
    n_iter_block: int
    hypothesis: str = ""
    first_iteration: int = 1
    kind: str = "policy"           # policy: the regime came from a block-end decision; plan: from the study plan
    #                                (agent.study.plan); seed-spread: the plan's last phase
    run_overrides: list[str] = field(default_factory=list)  # added by the agent to every job of the block
    plan_block: int | None = None  # the plan's block index (1-based) for kind=plan
    ended: bool = False
    decision: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    t_start: float | None = None
    t_end: float | None = None


@dataclass
class StudyState:
    """Everything known about a study, folded from its journal."""

    name: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    instructions: str = ""
    t_start: float | None = None
    starts: int = 0
    blocks: list[BlockState] = field(default_factory=list)
    nodes: dict[int, NodeState] = field(default_factory=dict)
    rounds: int = 0
    launches: list[dict[str, Any]] = field(default_factory=list)
    ended: dict[str, Any] | None = None

    # --- derived views ---
    @property
    def current_block(self) -> BlockState | None:
        return self.blocks[-1] if self.blocks else None

    def block(self, b: int) -> BlockState | None:
        for blk in self.blocks:
            if blk.block == b:
                return blk
        return None

    def launched_nodes(self) -> list[NodeState]:
        return sorted((n for n in self.nodes.values() if n.launched), key=lambda n: n.iteration or 0)

    def block_nodes(self, b: int) -> list[NodeState]:
        return [n for n in self.launched_nodes() if n.block == b]

    def unfinished(self) -> list[NodeState]:
        return [n for n in self.launched_nodes() if not n.finished]

    @property
    def next_node_id(self) -> int:
        return max(self.nodes, default=0) + 1

    @property
    def n_iterations(self) -> int:
        return len(self.launched_nodes())

    def llm_totals(self) -> dict[str, float]:
        tot = {"tokens_in": 0.0, "tokens_out": 0.0, "usd": 0.0, "calls": 0.0}
        records = [n.llm for n in self.nodes.values()] + [b.decision.get("llm") for b in self.blocks]
        seen: set[int] = set()
        for rec in records:
            if not rec or id(rec) in seen:
                continue
            seen.add(id(rec))
            for k in ("tokens_in", "tokens_out", "usd", "calls"):
                v = rec.get(k)
                if isinstance(v, (int, float)):
                    tot[k] += v
        return tot


_NODE_FIELDS = {f for f in NodeState.__dataclass_fields__}


def fold(events: list[dict[str, Any]]) -> StudyState:
    """Replay journal events into a StudyState (pure; unknown event types are kept out)."""
    st = StudyState()
    for ev in events:
        kind = ev.get("event")
        t = ev.get("t")
        if kind in ("study_start", "resume"):
            st.starts += 1
            st.config = dict(ev.get("config") or {})
            if kind == "study_start":
                st.name = ev.get("name", "")
                st.instructions = ev.get("instructions", "")
                st.t_start = t
            st.ended = None  # a resume reopens an ended study (e.g. with more blocks)
        elif kind == "block_start":
            st.blocks.append(BlockState(
                block=int(ev["block"]), field=ev["field"], n_training_frames=int(ev["n_training_frames"]),
                base_overrides=list(ev.get("base_overrides", [])), ucb_c=float(ev["ucb_c"]),
                n_iter_block=int(ev["n_iter_block"]), hypothesis=ev.get("hypothesis", ""),
                first_iteration=int(ev.get("first_iteration", 1)), kind=str(ev.get("kind") or "policy"),
                run_overrides=list(ev.get("run_overrides") or []), plan_block=ev.get("plan_block"), t_start=t))
        elif kind == "block_end":
            blk = st.block(int(ev["block"]))
            if blk is not None:
                blk.ended = True
                blk.decision = dict(ev.get("decision") or {})
                blk.stats = dict(ev.get("stats") or {})
                blk.t_end = t
        elif kind in ("planned", "rejected"):
            nid = int(ev["node_id"])
            if nid in st.nodes:
                continue  # ids are unique; a duplicate line cannot rewrite history
            data = {k: v for k, v in ev.items()
                    if k in _NODE_FIELDS and k not in ("status", "launches", "recoveries", "run_dirs")}
            for k in ("parent_id", "iteration", "round"):
                data.setdefault(k, None)
            node = NodeState(**data)
            node.t_planned = t
            if kind == "rejected":
                node.status = "rejected"
                node.error = ev.get("reason")
                node.iteration = None
                node.t_finished = t
            st.nodes[nid] = node
        elif kind == "launched":
            st.rounds = max(st.rounds, int(ev.get("round", 0)))
            st.launches.append(ev)
            run_dirs = ev.get("run_dirs", {})
            for nid in ev.get("node_ids", []):
                node = st.nodes.get(int(nid))
                if node is None or node.finished:
                    continue
                node.status = "running"
                node.round = int(ev.get("round", node.round or 0))
                node.launches += 1
                node.run_dir = run_dirs.get(str(nid), node.run_dir)
                if node.run_dir and node.run_dir not in node.run_dirs:
                    node.run_dirs.append(node.run_dir)
                node.code_commit = ev.get("code_commit", node.code_commit)
                node.t_launched = t
        elif kind == "finished":
            node = st.nodes.get(int(ev["node_id"]))
            if node is None or node.finished:
                continue
            node.status = ev["status"]
            node.error = ev.get("error")
            node.metrics = dict(ev.get("metrics") or {})
            node.run_dir = ev.get("run_dir", node.run_dir)
            node.wandb_run_id = ev.get("wandb_run_id")
            node.field_png = ev.get("field_png")
            node.t_finished = t
        elif kind == "recovered":
            node = st.nodes.get(int(ev["node_id"]))
            if node is not None and ev.get("action") == "relaunch":
                node.recoveries += 1
        elif kind == "study_end":
            st.ended = dict(ev)
    return st
