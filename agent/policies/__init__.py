"""Policy registry: `policy=<name>` -> a factory `build(cfg, ctx) -> Policy`.

Each policy module exposes `build(cfg: Mapping[str, Any], ctx: PolicyContext) -> Policy`, where `cfg` is the
policy's config group (conf/agent/policy/<name>.yaml, resolved to a plain dict) and `ctx` carries what every
policy may need. Modules are imported lazily, so the offline heuristic never imports the LLM client.
A factory raises a `mpm_inr.errors.UserError` subclass (one line) for unusable settings, e.g. a missing API key;
the loop calls it before anything runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.policies.base import Policy
from mpm_inr.errors import ConfigError

FACTORIES: dict[str, str] = {
    "heuristic": "agent.policies.heuristic",
    "claude": "agent.policies.claude.policy",
    "replay": "agent.policies.replay",
}


@dataclass
class PolicyContext:
    """Shared inputs of policy factories."""

    study_dir: Path
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)   # the whole explore config (plain dict)

    @property
    def transcripts_dir(self) -> Path:
        return self.study_dir / "transcripts"


def names() -> list[str]:
    return sorted(FACTORIES)


def build_policy(name: str, cfg: Mapping[str, Any], ctx: PolicyContext) -> Policy:
    """Instantiate policy `name`; unknown names are a one-line ConfigError listing the choices."""
    module_name = FACTORIES.get(name)
    if module_name is None:
        raise ConfigError(f"unknown policy '{name}'; choose one of {', '.join(names())}")
    module = importlib.import_module(module_name)
    return module.build(dict(cfg), ctx)
