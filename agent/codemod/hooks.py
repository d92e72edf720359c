"""What the study loop asks of a code-modification handler (agent.codemod.handler.CodeModHandler is the one
implementation): declared here so the loop calls these members directly instead of probing for them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from agent.runs.runner import JobResult
from agent.study.proposal import Proposal
from agent.study.view import StudyView

#: (command, sweep dir) -> the confined command (agent.runs.runner.RoundRunner.wrap)
Wrap = Callable[[list[str], Path | None], list[str]]


class CodeModHooks(Protocol):
    """The Explorer's seam for code modifications (issue 6, sandboxing issue 20)."""

    #: True: called for config-only proposals too, so they run the round's pinned code
    pins_code: bool

    def __call__(self, p: Proposal, view: StudyView) -> tuple[str, str | None]:
        """(code dir to run train.py from, its commit) for an accepted proposal; raises Rejection to refuse it."""
        ...

    def start(self) -> None:
        """Set up (or, on resume, reconcile) the study's code before the first round."""
        ...

    def confine(self, code_dir: str | Path, override_lists: Sequence[Sequence[str]]) -> Wrap | None:
        """The sandbox wrapper for runs of `code_dir` (None: not confined)."""
        ...

    def on_finished(self, res: JobResult) -> JobResult:
        """Keep or revert a node's code change once its run ended; returns the result to journal."""
        ...
