"""A study with a plan (agent.study.plan): each block's regime comes from the plan, its root and probes are
planned by the agent before the policy's iterations, and after the last block the seed-spread phase re-runs each
(field, inr_type)'s best config on other dataset seeds.

Every decision here reads the journal's fold only (which plan block is next, which plan items and seed runs are
not yet planned), so a `kill -9` anywhere resumes with nothing duplicated: the unfinished nodes go through the
usual recovery (agent.loop.recovery), and what was never planned is planned now.
"""

from __future__ import annotations

from dataclasses import replace

from agent.loop.context import StudyContext
from agent.loop.planner import AcceptedProposal, RoundPlan, RoundPlanner
from agent.study.plan import (
    PLAN_KIND,
    PROBE_STRATEGY,
    SEED_KIND,
    SEED_STRATEGY,
    PlanBlock,
    StudyPlan,
    owed_seed_runs,
    seed_runs,
)
from agent.study.proposal import Proposal, Rejection
from agent.study.state import NodeState, StudyState

PLAN_POLICY = "plan"  # the `policy` recorded on the nodes the plan itself plans


class PlanKeeper:
    """Starts the plan's blocks and its seed-spread phase, and plans the nodes the plan owns."""

    def __init__(self, study: StudyContext, planner: RoundPlanner, plan: StudyPlan):
        self.study = study
        self.planner = planner
        self.plan = plan

    # ------------------------------------------------------------------ blocks
    def next_plan_block(self, st: StudyState) -> int | None:
        """1-based index of the plan block to start next, or None when every one has started."""
        started = sum(b.kind == PLAN_KIND for b in st.blocks)
        return started + 1 if started < len(self.plan.blocks) else None

    def start_next(self, st: StudyState) -> None:
        """Start the next plan block, else the seed-spread phase."""
        i = self.next_plan_block(st)
        if i is not None:
            self.start_block(st, i)
        else:
            self.start_seed_phase(st)

    def _ucb_c(self, st: StudyState) -> float:
        prev = st.current_block
        if prev is not None and prev.decision.get("ucb_c") is not None:
            return float(prev.decision["ucb_c"])
        return float(prev.ucb_c if prev is not None else self.study.cfg["ucb_c"])

    def start_block(self, st: StudyState, i: int) -> None:
        pb: PlanBlock = self.plan.blocks[i - 1]
        probes = "; ".join(", ".join(f"{k}={v}" for k, v in p.items()) for p in pb.probes) or "none"
        hyp = (f"Plan {self.plan.name} block {i}/{len(self.plan.blocks)}: {pb.field}, {pb.inr_type}, "
               f"{pb.n_training_frames} frames (regime from the plan, not a block-end decision). "
               f"Probes: {probes}. Then {pb.n_iter} policy iteration(s)."
               + (f" Per-run settings: {', '.join(pb.run_overrides)}." if pb.run_overrides else "")
               + (f" {pb.note}" if pb.note else ""))
        self.study.emit({"event": "block_start", "block": len(st.blocks) + 1, "field": pb.field,
                         "n_training_frames": pb.n_training_frames, "base_overrides": list(pb.base),
                         "ucb_c": self._ucb_c(st), "n_iter_block": pb.n_runs, "first_iteration": st.n_iterations + 1,
                         "hypothesis": hyp, "kind": PLAN_KIND, "regime": "plan", "plan": self.plan.name,
                         "plan_block": i, "run_overrides": list(pb.run_overrides)})
        self.study.render()

    def start_seed_phase(self, st: StudyState) -> None:
        spread = self.plan.seed_spread
        assert spread is not None
        runs = seed_runs(st, spread)
        configs = sorted({r.source.node_id for r in runs})
        hyp = ("Seed spread: the best config of each (field, inr_type) (by R², then compression"
               + (f", windows {spread.frames}" if spread.frames else "")
               + f"), nodes {', '.join(map(str, configs)) or 'none'}, re-run on dataset seeds "
               f"{', '.join(map(str, spread.seeds))} (data.seed, set by the agent).")
        self.study.emit({"event": "block_start", "block": len(st.blocks) + 1, "field": "all",
                         "n_training_frames": 0, "base_overrides": [], "ucb_c": self._ucb_c(st),
                         "n_iter_block": len(runs), "first_iteration": st.n_iterations + 1, "hypothesis": hyp,
                         "kind": SEED_KIND, "regime": "plan", "plan": self.plan.name})
        self.study.render()

    def end_seed_phase(self, st: StudyState) -> None:
        blk = st.current_block
        assert blk is not None and blk.kind == SEED_KIND
        nodes = st.block_nodes(blk.block)
        ok = sum(n.is_ok for n in nodes)
        summary = (f"Seed spread: {len(nodes)} re-run(s) of {len({n.source_id for n in nodes})} best config(s) on "
                   f"other dataset seeds, {ok} ok.")
        self.study.emit({"event": "block_end", "block": blk.block,
                         "decision": {"summary": summary, "principles": [], "open_questions": [],
                                      "instruction_edits": "", "by": PLAN_POLICY}, "stats": {}})
        self.study.out(f"block {blk.block} ended: {summary}")
        self.study.render()

    # ------------------------------------------------------------------ nodes
    def plan_round(self, st: StudyState, k: int) -> list[NodeState]:
        """Up to k of the current plan block's own nodes (root first, then probes in order) that are not yet
        planned, journaled as `planned` (or `rejected`, with the reason, if the loop's gate refuses one). Empty
        when the plan has nothing left in this block: the policy's turn."""
        blk = st.current_block
        assert blk is not None
        if blk.kind != PLAN_KIND or blk.plan_block is None:
            return []
        pb = self.plan.blocks[blk.plan_block - 1]
        items: list[tuple[int, dict]] = [(0, {})] + [(j, p) for j, p in enumerate(pb.probes, start=1)]
        planned: list[NodeState] = []
        taken: set[str] = set()
        slot = 0
        for item, overrides in items:
            if slot >= k:
                break
            st = self.study.state()
            mine = {n.plan_item: n for n in st.nodes.values() if n.block == blk.block and n.plan_item is not None}
            if item in mine:
                continue
            root = mine.get(0)
            # a probe is checked as a change of the block's base (= the root's config), so it can share the
            # root's round, and is journaled as the root's child
            p = Proposal(parent_id=None, strategy="baseline" if item == 0 else PROBE_STRATEGY,
                         overrides=dict(overrides),
                         mutation="none (block base config)" if item == 0 else
                         "probe: " + ", ".join(f"{k2}={v}" for k2, v in overrides.items()),
                         rationale="the plan's block root" if item == 0 else
                         f"the plan's probe {item} of {len(pb.probes)}: one-factor evidence against the root")
            view = self.study.view(st)
            try:
                valid = self.planner.validate(p, view, taken)
            except Rejection as r:
                self.planner.reject(st, p, str(r), PLAN_POLICY, slot, plan_item=item)
                continue
            taken.add(valid.config_hash)
            if item and root is not None and root.launched:
                p = replace(p, parent_id=root.node_id)
            planned += self.planner.journal(RoundPlan([p.strategy] * (slot + 1), {
                slot: AcceptedProposal(p, valid, PLAN_POLICY, None, plan_item=item)}))
            slot += 1
        return planned

    def seed_round(self, st: StudyState, k: int) -> list[NodeState]:
        """Journal up to k owed seed-spread runs as `planned`: roots of the seed-spread block (a tree lives in one
        block), `source_id` the node whose config they re-run, with its overrides, and the agent's data.seed and the
        source block's per-run settings as agent_overrides."""
        spread = self.plan.seed_spread
        assert spread is not None
        blk = st.current_block
        assert blk is not None and blk.kind == SEED_KIND
        owed = owed_seed_runs(st, spread)[:k]
        round_no, next_id = st.rounds + 1, st.next_node_id
        for i, r in enumerate(owed):
            src = r.source
            self.study.emit({"event": "planned", "node_id": next_id + i, "parent_id": None, "source_id": src.node_id,
                             "block": blk.block, "iteration": st.n_iterations + 1 + i, "round": round_no, "slot": i,
                             "role": SEED_STRATEGY, "strategy": SEED_STRATEGY, "overrides": list(src.overrides),
                             "changes": {"data.seed": [None, r.seed]},
                             "mutation": f"data.seed -> {r.seed} (re-run of node {src.node_id} on dataset seed "
                                         f"{r.seed})",
                             "rationale": f"seed spread of the best {src.metrics.get('field')} "
                                          f"{src.metrics.get('inr_type')} config (node {src.node_id})",
                             "log_entry": "", "observation": "", "memory_updates": [], "code_diff": None,
                             "code_dir": src.code_dir, "code_commit": src.code_commit,
                             "config_hash": src.config_hash, "policy": PLAN_POLICY, "fallback": None, "llm": None,
                             "agent_overrides": r.agent_overrides})
        st = self.study.state()
        self.study.render()
        return [st.nodes[next_id + i] for i in range(len(owed))]
