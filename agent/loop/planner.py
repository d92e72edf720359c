"""One round's plan: ask the policy for `k` children (slot roles from the design document's parallel variant),
validate each (agent.runs.overrides + tree rules; a rejected one is journaled with its reason and the policy is
asked again, then the heuristic fills the slot), let the code-modification hooks apply a diff, and journal each
accepted child as `planned`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from agent.loop.context import StudyContext
from agent.policies.base import Policy
from agent.runs.overrides import OverrideError, block_key_error, diff, merge
from agent.runs.trainconf import ComposeError
from agent.study.proposal import Proposal, Rejection
from agent.study.state import NodeState, StudyState
from agent.study.view import STRATEGIES, StudyView, slot_roles
from mpm_inr.errors import StudyError, UserError


class PolicyStopped(Exception):
    """The policy asked the study to stop (a budget or a user error inside it); the message is the reason."""


@dataclass(frozen=True)
class ValidProposal:
    """A proposal that passed the loop's gate."""

    overrides: list[str]                 # the child's full overrides (the parent's merged with the changes)
    changes: dict[str, list[Any]]        # {key: [parent's value, child's value]}
    config_hash: str                     # the resolved config's identity (agent.study.identity)


@dataclass(frozen=True)
class AcceptedProposal:
    """One slot's child, ready to journal as `planned`."""

    proposal: Proposal
    valid: ValidProposal
    policy: str                          # the policy that proposed it
    fallback: str | None                 # why the heuristic stands in for the study's policy, if it does
    code_dir: str | None = None          # the code it runs (None: the study's code_dir)
    code_commit: str | None = None
    plan_item: int | None = None         # a study plan's own node (agent.loop.plan_phase): 0 root, k probe k


@dataclass(frozen=True)
class RoundPlan:
    """The accepted children of a round, by slot, with every slot's role."""

    roles: list[str]
    accepted: dict[int, AcceptedProposal]


class RoundPlanner:
    def __init__(self, study: StudyContext):
        self.study = study
        self.max_attempts = int((study.cfg.get("agent") or {}).get("max_proposal_attempts", 3))

    def plan(self, st: StudyState, k: int) -> list[NodeState]:
        """Plan and journal a round of `k` children; raises PolicyStopped if the policy stopped the study."""
        return self.journal(self.choose(st, k))

    def choose(self, st: StudyState, k: int) -> RoundPlan:
        study = self.study
        roles = slot_roles(k) if int(study.cfg["batch"]) > 1 else ["auto"] * k
        slots = list(range(k))
        accepted: dict[int, AcceptedProposal] = {}
        rejections: list[NodeState] = []
        taken: set[str] = set()
        policy: Policy = study.policy
        policy_name, fallback = study.policy_name, None
        attempt = 0
        while slots:
            attempt += 1
            if attempt > self.max_attempts:
                if policy_name == "heuristic":
                    raise StudyError(f"the heuristic policy produced no valid proposal in {self.max_attempts} "
                                     f"attempts: {rejections[-1].error if rejections else '?'}")
                policy, policy_name = study.heuristic(), "heuristic"
                fallback = f"{study.policy_name}: {len(rejections)} rejected proposal(s), last: " \
                           f"{rejections[-1].error if rejections else '?'}"[:300]
                attempt = 1
            st = study.state()
            view = study.view(st, rejections)
            try:
                props = policy.propose(view, [roles[i] for i in slots])
            except UserError as e:
                raise PolicyStopped(f"policy {policy_name} stopped: {e}") from None
            except Exception as e:  # a broken policy: the heuristic takes this round
                if policy_name == "heuristic":
                    raise
                fallback = f"{policy_name}: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
                policy, policy_name, attempt = study.heuristic(), "heuristic", 0
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
                    valid = self.validate(p, view, taken)
                    handler = study.code_mod_handler
                    if handler is not None and (p.code_diff or handler.pins_code):
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
                    rejections.append(self.reject(st, p, str(r), policy_name, slot))
                    still.append(slot)
                    continue
                taken.add(valid.config_hash)
                accepted[slot] = AcceptedProposal(p, valid, policy_name,
                                                  fallback if policy_name == "heuristic" else None, *code)
            slots = still
        return RoundPlan(roles, accepted)

    def journal(self, plan: RoundPlan) -> list[NodeState]:
        """One `planned` event per accepted child, in slot order; returns their nodes."""
        study = self.study
        st = study.state()
        blk = st.current_block
        assert blk is not None
        round_no = st.rounds + 1
        next_id = st.next_node_id
        for i, slot in enumerate(sorted(plan.accepted)):
            a = plan.accepted[slot]
            p, delta, pname, fb = a.proposal, a.valid.changes, a.policy, a.fallback
            nid = next_id + i
            mutation = "; ".join(f"{k}: {x} -> {y}" for k, (x, y) in delta.items()) or (
                "none (block base config)" if p.parent_id is None else "none (re-run of the parent's config)")
            note = p.mutation if p.mutation and not all(k in p.mutation for k in delta) else ""
            if p.code_diff:  # the code change is the mutation; config changes (if any) follow it
                mutation = (p.mutation or "[code] code modification") + (f"; {mutation}" if delta else "")
                note = ""
            if isinstance(p.llm, Mapping) and p.llm.get("policy"):  # a policy that fell back internally says so
                pname, fb = str(p.llm["policy"]), p.llm.get("fallback") or fb
            ev = {"event": "planned", "node_id": nid, "parent_id": p.parent_id, "block": blk.block,
                  "iteration": st.n_iterations + 1 + i, "round": round_no, "slot": slot, "role": plan.roles[slot],
                  "strategy": p.strategy, "overrides": a.valid.overrides, "changes": delta, "mutation": mutation,
                  "rationale": f"{p.rationale} [policy's mutation note: {note}]" if note else p.rationale,
                  "log_entry": p.log_entry, "observation": p.observation, "memory_updates": list(p.memory_updates),
                  "code_diff": p.code_diff, "code_dir": a.code_dir, "code_commit": a.code_commit,
                  "config_hash": a.valid.config_hash, "policy": pname, "fallback": fb, "llm": p.llm,
                  "agent_overrides": list(blk.run_overrides)}
            if a.plan_item is not None:
                ev["plan_item"] = a.plan_item
            study.emit(ev)
        st = study.state()
        planned = [st.nodes[next_id + i] for i in range(len(plan.accepted))]
        study.render()
        return planned

    def reject(self, st: StudyState, p: Any, reason: str, policy_name: str, slot: int,
               plan_item: int | None = None) -> NodeState:
        """Journal a `rejected` node with its reason; returns it (the policy sees it in its next view)."""
        study = self.study
        nid = study.state().next_node_id  # not `st`'s: an earlier rejection of this attempt may have taken it
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
        if plan_item is not None:
            ev["plan_item"] = plan_item
        study.emit(ev)
        study.out(f"rejected a {policy_name} proposal: {reason[:200]}")
        return study.state().nodes[nid]

    def validate(self, p: Any, view: StudyView, taken: set[str]) -> ValidProposal:
        """The loop's gate, which every policy's proposal goes through: a ValidProposal, else Rejection with the
        reason. `taken`: config hashes already accepted this round."""
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
            changes = self.study.validator.normalise(p.overrides)
        except OverrideError as e:
            raise Rejection(str(e)) from None
        if (why := block_key_error(changes, view.block.block)) is not None:
            raise Rejection(why)
        if p.code_diff and self.study.code_mod_handler is None:
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
            self.study.compose(full)
        except ComposeError as e:
            raise Rejection(f"does not compose with the trainer's config: {e}") from None
        delta = {k: [self.study.validator.canon(k, view.value(p.parent_id, k) if old is None else old), new]
                 for k, (old, new) in diff(parent_ov, full).items()}
        return ValidProposal(full, delta, h)
