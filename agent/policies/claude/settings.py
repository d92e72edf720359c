"""`policy=claude` settings: the policy group's keys (conf/agent/policy/claude.yaml) with their checks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from agent.policies.claude.llm_cost import ModelPrice
from mpm_inr.errors import ConfigError

#: Not in the installed SDK's DEPRECATED_MODELS (tests/test_policy_claude.py checks it) and priced in
#: agent.policies.claude.llm_cost: the "speed and intelligence" tier is enough for one-parameter decisions.
DEFAULT_MODEL = "claude-sonnet-4-6"
API_KEY_ENV = "ANTHROPIC_API_KEY"


@dataclass
class ClaudeSettings:
    """Defaults of `policy=claude`; every field is a config key of the policy group (see `from_config`)."""

    model: str = DEFAULT_MODEL
    max_tokens: int = 4096
    timeout_s: float = 180.0
    max_retries: int = 4
    backoff_base_s: float = 2.0
    backoff_max_s: float = 60.0
    send_image: bool = True
    max_section_chars: int = 24000
    max_usd: float = 5.0
    max_iterations: int = 200
    price_input_per_mtok: float | None = None
    price_output_per_mtok: float | None = None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], budget: Mapping[str, Any] | None = None) -> ClaudeSettings:
        """Build from the policy group; `budget` (max_usd, max_iterations) may live in `cfg["budget"]` or apart.

        Unknown keys are ignored only if they belong to other layers (name, fallback, transcripts); anything else
        is a one-line ConfigError, so a typo cannot silently leave a default (e.g. an uncapped budget) in place.
        """
        known = {f.name for f in fields(cls)}
        other = {"name", "_target_", "budget", "fallback", "transcripts"}
        if any(w in str(k).lower() for k in cfg if k not in known for w in ("key", "token", "secret")):
            raise ConfigError(f"policy: the API key is read from the {API_KEY_ENV} environment variable only; "
                              "remove it from the config")
        bad = sorted(k for k in cfg if k not in known and k not in other)
        if bad:
            raise ConfigError(f"policy: unknown key(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
        values = {k: v for k, v in cfg.items() if k in known}
        for k, v in dict(budget or cfg.get("budget") or {}).items():
            if k not in ("max_usd", "max_iterations"):
                raise ConfigError(f"budget: unknown key '{k}'; known: max_usd, max_iterations")
            values[k] = v
        s = cls(**values)
        s._check()
        return s

    def _check(self) -> None:
        def positive(name: str, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) \
                    or v < 0 or (v == 0 and not allow_zero):
                raise ConfigError(f"policy.{name} must be a {'non-negative' if allow_zero else 'positive'} number, "
                                  f"got {v!r}")

        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("policy.model must be a model name such as claude-sonnet-4-6")
        for name in ("max_tokens", "timeout_s", "max_section_chars"):
            positive(name)
        for name in ("max_retries", "backoff_base_s", "backoff_max_s", "max_usd", "max_iterations"):
            positive(name, allow_zero=True)
        if (self.price_input_per_mtok is None) != (self.price_output_per_mtok is None):
            raise ConfigError("policy.price_input_per_mtok and price_output_per_mtok must be given together")

    @property
    def price_override(self) -> ModelPrice | None:
        if self.price_input_per_mtok is None:
            return None
        return ModelPrice.from_io(float(self.price_input_per_mtok), float(self.price_output_per_mtok))
