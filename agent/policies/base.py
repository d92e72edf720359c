"""The interface every policy (heuristic, claude, replay) implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from agent.study.proposal import BlockEndDecision, Proposal
from agent.study.view import StudyView


@runtime_checkable
class Policy(Protocol):
    """A pure decider: reads a StudyView, returns proposals. It never runs anything itself.

    `propose(view, slots)` returns one Proposal per slot, in slot order. Slot roles follow the design document's
    parallel variant (agent.study.view.slot_roles): "auto" for batch=1 (the strategy table decides), else exploit,
    exploit, explore, principle-test. Each proposal is validated by the loop; rejected ones are journaled with their
    reason and the policy is asked again for those slots (the next view lists them in `recent_rejections`).

    `end_block(view)` is called once after the last iteration of a block and chooses the next block's regime.
    """

    name: str
    #: whether the policy reads a run's field.png (StudyView.field_png): only then does the agent let jobs plot
    #: (a plot costs a run seconds; a study is hundreds of short runs)
    needs_plot: bool

    def propose(self, view: StudyView, slots: list[str]) -> list[Proposal]: ...

    def end_block(self, view: StudyView) -> BlockEndDecision: ...
