"""The read-only view of a study that a policy decides from.

Policies are pure deciders: they get a `StudyView` (nodes, the current block's tree, UCB scores, block statistics
computed by agent.study.stats, the latest metrics, paths of the instruction / memory files and of the latest field
plot) and return proposals. They never touch the journal or the files themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.runs.overrides import Spec, as_dict
from agent.study.identity import identity_of
from agent.study.state import BlockState, NodeState
from agent.study.stats import BlockStats, Effect
from agent.study.tree import UCBScore

#: slot roles of the design document's parallel variant, in order; batch=1 uses "auto" (the strategy table decides)
SLOT_ROLES = ("exploit", "exploit", "explore", "principle-test")

#: strategies a proposal may name (the design document's table + baseline, principle-test, code-modification and
#: probe, a study plan's one-factor run against its block's root, agent.study.plan)
STRATEGIES = ("baseline", "exploit", "failure-probe", "explore", "robustness-test", "recombine", "forced-branch",
              "switch-param", "random-branch", "stochastic-field", "principle-test", "boundary",
              "code-modification", "probe")


def slot_roles(k: int) -> list[str]:
    """Roles for a round of k children: "auto" for k=1, else exploit, exploit, explore, principle-test, explore..."""
    if k <= 1:
        return ["auto"]
    return [SLOT_ROLES[i] if i < len(SLOT_ROLES) else "explore" for i in range(k)]


@dataclass(frozen=True)
class StudyView:
    name: str
    study_dir: Path
    block: BlockState
    iteration: int                        # the iteration number the next proposal will get
    iter_in_block: int                    # 1-based position of that iteration in its block
    n_iter_block: int
    nodes: tuple[NodeState, ...]          # every node of the study, rejected proposals included
    block_nodes: tuple[NodeState, ...]    # finished nodes of the current block (the UCB tree; all of them
                                          # when a policy is asked, since rounds finish before the next)
    ucb: tuple[UCBScore, ...]             # sorted by UCB, highest first
    stats: BlockStats
    established: tuple[Effect, ...]       # principles supported by >= 3 consistent runs
    open_questions: tuple[Effect, ...]    # tentative or contradicted effects
    specs: dict[str, Spec]                # the override allow-list with this study's ranges
    mutable: tuple[str, ...]              # keys the heuristic may mutate (config `policy.params`)
    config: dict[str, Any]                # the explore config (thresholds, seed, ucb_c, min_compression...)
    instructions_path: Path
    memory_path: Path
    analysis_path: Path
    ucb_path: Path
    blocks: tuple[BlockState, ...] = ()   # every block so far, the current one last
    recent_rejections: tuple[NodeState, ...] = ()
    field_png: Path | None = None
    resolver: Callable[[Sequence[str], str], Any] | None = field(default=None, compare=False, repr=False)
    # the study's config identity (agent.study.identity): configs are compared by resolved values, never by strings
    identity: Callable[[Sequence[str]], str] | None = field(default=None, compare=False, repr=False)

    # --- convenience for policies ---
    @property
    def field(self) -> str:
        return self.block.field

    @property
    def n_training_frames(self) -> int:
        return self.block.n_training_frames

    @property
    def last_node(self) -> NodeState | None:
        finished = [n for n in self.nodes if n.launched and n.finished]
        return max(finished, key=lambda n: n.iteration or 0) if finished else None

    @property
    def last_metrics(self) -> dict[str, Any] | None:
        n = self.last_node
        return dict(n.metrics) if n is not None else None

    def node(self, node_id: int) -> NodeState:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(node_id)

    def overrides_of(self, node_id: int | None) -> list[str]:
        """The full override list of a node (None: the block's base config)."""
        return list(self.block.base_overrides) if node_id is None else list(self.node(node_id).overrides)

    def value(self, node_id: int | None, key: str) -> Any:
        """A key's effective value in a node's config: its override, else what the trainer resolved, else the
        trainer config's default (composed), else None."""
        ov = as_dict(self.overrides_of(node_id))
        if key in ov:
            return ov[key]
        if node_id is not None:
            cfg = self.node(node_id).metrics.get("config") or {}
            if key in cfg:
                return cfg[key]
        if self.resolver is not None:
            return self.resolver(self.overrides_of(node_id), key)
        return None

    def config_id(self, overrides: Sequence[str]) -> str:
        """The identity of a full override list (agent.study.identity). Nodes are always re-identified from their
        overrides, never by the journal's stored `config_hash` (older journals stored an override-list hash)."""
        return identity_of(self.identity, overrides)

    def failed_hashes(self) -> set[str]:
        """Identities of every config that failed anywhere in the study."""
        return {self.config_id(n.overrides) for n in self.nodes if n.launched and n.is_failed}

    def all_hashes(self) -> set[str]:
        return {self.config_id(n.overrides) for n in self.nodes if n.launched}

    def block_hashes(self) -> set[str]:
        """Identities of the configs run in the current block's tree."""
        return {self.config_id(n.overrides) for n in self.block_nodes}
