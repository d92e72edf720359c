"""What every part of the study loop shares: the study's settings, its journal and its policy, with the helpers
they all use (the current state, appending an event, the policy's view, re-rendering, the heuristic stand-in)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.codemod.hooks import CodeModHooks
from agent.loop.view import build_view
from agent.policies import PolicyContext, build_policy
from agent.policies.base import Policy
from agent.reporting import render
from agent.runs.overrides import Validator, merge_train
from agent.runs.trainconf import ComposeError, compose_train, value
from agent.study.identity import ConfigIdentity
from agent.study.journal import Journal
from agent.study.state import NodeState, StudyState, fold
from agent.study.view import StudyView


@dataclass
class StudyContext:
    """One study's shared state. `policy` / `policy_name` may be swapped (tests script the policy this way)."""

    cfg: dict[str, Any]
    name: str
    study_dir: Path
    code_dir: Path
    train_overrides: list[str]
    identity: ConfigIdentity
    validator: Validator
    journal: Journal
    policy: Policy
    policy_name: str
    policy_ctx: PolicyContext
    out: Callable[[str], None]
    # issue-6 seam: without a handler, proposals carrying a code_diff are rejected (recorded, never run)
    code_mod_handler: CodeModHooks | None = None
    _fallback: Policy | None = field(default=None, repr=False)

    @property
    def needs_plot(self) -> bool:
        """Whether the study's policy reads each run's field.png (Policy.needs_plot); if not, jobs skip the plot."""
        return bool(getattr(self.policy, "needs_plot", False))

    def state(self) -> StudyState:
        return fold(self.journal.read())

    def emit(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.journal.append(event)

    def compose(self, overrides: Sequence[str]) -> Any:
        """The trainer's config for a node's overrides over the study's train_overrides (raises ComposeError)."""
        return compose_train(self.code_dir, merge_train(self.train_overrides, overrides))

    def resolve(self, overrides: Sequence[str], key: str) -> Any:
        try:
            return value(self.compose(overrides), key)
        except ComposeError:
            return None

    def view(self, st: StudyState, rejections: Sequence[NodeState] = ()) -> StudyView:
        return build_view(st, self.cfg, self.validator, self.study_dir, resolver=self.resolve,
                          rejections=rejections, identity=self.identity)

    def render(self) -> None:
        render.render_all(self.study_dir)

    def heuristic(self) -> Policy:
        """The heuristic policy: the study's own, or a stand-in for a policy that failed."""
        if self.policy_name == "heuristic":
            return self.policy
        if self._fallback is None:
            self._fallback = build_policy("heuristic", {"name": "heuristic", "seed": self.cfg.get("seed", 0)},
                                          self.policy_ctx)
        return self._fallback
