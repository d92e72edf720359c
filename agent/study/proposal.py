"""What a policy hands back to the loop.

A `Proposal` is one child run: which parent it branches from, which strategy row of the study table it follows,
and the training overrides it wants. `overrides` holds only the keys to *change* relative to the parent node's
overrides (or to the block's base config when `parent_id` is None, i.e. parent=root); the child's full override
set is the parent's merged with these. Values may be Python scalars or strings ("3e-05", "true").

The loop validates every proposal (agent.runs.overrides: allow-list, types, ranges; parent must be an earlier node of
the current block; no re-run of a failed config) before anything runs, so a policy may return anything here; a
rejected proposal is journaled with its reason, shown to the policy in the next view, and never launched.

`code_diff` is the seam for agent code modifications (issue 6): a unified diff to apply in the study's worktree
before the node's training runs. The core loop records it but does not apply it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


class Rejection(Exception):
    """A proposal that must not run; the message is the recorded reason."""


@dataclass
class Proposal:
    """One child configuration proposed by a policy."""

    parent_id: int | None
    strategy: str
    overrides: dict[str, Any]
    mutation: str
    rationale: str
    log_entry: str = ""
    observation: str = ""
    memory_updates: list[str] = field(default_factory=list)
    code_diff: str | None = None
    llm: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BlockEndDecision:
    """What to study in the next block, and what the policy learned in this one.

    `next_field` is one of Jp, F, S, C; `next_n_training_frames` is a value of the design document's progression.
    `instruction_edits` is free text appended to the versioned per-study instruction file (empty: no edit).
    `summary` replaces the memory's Previous Block Summary (2-3 lines); `principles` / `open_questions` are added
    to the Knowledge Base; `hypothesis` is the next block's stated prediction. `ucb_c` (0.5-3.0) changes the
    exploration constant for the next block (None: keep). `next_overrides` are extra changes for the next block's
    base config (validated like proposal overrides); the base otherwise is this block's best config with the new
    field / frame count.
    """

    next_field: str
    next_n_training_frames: int
    instruction_edits: str
    summary: str
    principles: list[str] = field(default_factory=list)
    open_questions: list[str] = field(default_factory=list)
    hypothesis: str = ""
    ucb_c: float | None = None
    next_overrides: dict[str, Any] = field(default_factory=dict)
    llm: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
