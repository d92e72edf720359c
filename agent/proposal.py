"""What a policy hands back to the loop.

A `Proposal` is one child run: which parent it branches from, which strategy row of the study table it follows,
and the training overrides it wants. The loop validates `overrides` (agent.overrides) before anything runs, so
a policy may return anything here; a rejected proposal is journaled with its reason and never launched.

`code_diff` is the seam for agent code modifications (issue 6): a unified diff to apply in the study's worktree
before the node's training runs. The core loop records it but does not apply it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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

    `next_field` is one of Jp, F, S, C; `next_n_training_frames` is a value of the seed's progression.
    `instruction_edits` is free text appended to the versioned per-study instruction file (empty: no edit).
    """

    next_field: str
    next_n_training_frames: int
    instruction_edits: str
    summary: str
    principles: list[str] = field(default_factory=list)
    open_questions: list[str] = field(default_factory=list)
    llm: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
