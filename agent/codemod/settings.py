"""The `codemod:` block of the explore config, checked once before a study starts.

Everything a user may tune is here; what a user may *not* loosen (the protected paths, the forbidden imports, the
first 4 iterations of a block) lives in `agent.codemod.guard` and is enforced whatever the config says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.codemod.modifications import LIBRARY
from agent.codemod.paths import PROTECTED, glob_regex, protected_reason
from mpm_inr.errors import ConfigError

#: the design document's rule: never modify code in the first 4 iterations of a block (config may only raise it)
MIN_PROTECT_FIRST = 4

# the training step first: with a character limit, the prompt shows files in this order (agent.policies.code_context)
DEFAULT_ALLOW = ("mpm_inr/training/optim.py", "mpm_inr/training/module.py", "mpm_inr/models/*.py")
DEFAULT_IMPORTS = ("__future__", "math", "typing", "dataclasses", "functools", "itertools", "collections",
                   "collections.abc", "enum", "torch", "mpm_inr.errors", "mpm_inr.models",
                   "mpm_inr.training.optim", "mpm_inr.training.sampler")
DEFAULT_SMOKE = ("scenario=discs_small", "trainer=cpu", "logger=none", "data.n_training_frames=48",
                 "train.total_steps=20", "train.steps_per_call=10", "train.eval_every=10", "outputs.plot=false",
                 "outputs.checkpoint=false")
DEFAULT_LIBRARY = ("lr_warmup", "grad_clip_default", "huber_loss", "adamw_decoupled", "residual_siren")

_PATTERN = re.compile(r"^[A-Za-z0-9_./*-]+$")


@dataclass(frozen=True)
class SmokeSettings:
    train: bool = True
    timeout_s: float = 600.0
    overrides: tuple[str, ...] = DEFAULT_SMOKE


@dataclass(frozen=True)
class HeuristicSettings:
    """When the heuristic proposes a library modification (design document: R² stuck below a threshold for 4+
    iterations)."""

    stuck_r2: float = 0.99
    stuck_iterations: int = 4
    min_gain: float = 1e-3
    library: tuple[str, ...] = DEFAULT_LIBRARY


@dataclass(frozen=True)
class CodeModSettings:
    enabled: bool = False
    allow: tuple[str, ...] = DEFAULT_ALLOW
    allowed_imports: tuple[str, ...] = DEFAULT_IMPORTS
    protect_first: int = MIN_PROTECT_FIRST
    max_changed_lines: int = 300
    revert_if_worse: bool = True
    sandbox: bool = True   # run modified code in a bubblewrap sandbox (agent.codemod.sandbox); false is unsafe
    smoke: SmokeSettings = field(default_factory=SmokeSettings)
    heuristic: HeuristicSettings = field(default_factory=HeuristicSettings)

    def allowed(self, path: str) -> bool:
        return any(glob_regex(p).match(path) for p in self.allow)

    @classmethod
    def from_config(cls, explore_cfg: Mapping[str, Any] | None) -> CodeModSettings:
        """Settings from the explore config's `codemod` block (absent: code modifications disabled)."""
        raw = dict((explore_cfg or {}).get("codemod") or {})
        if not raw:
            return cls()
        smoke = dict(raw.get("smoke") or {})
        heur = dict(raw.get("heuristic") or {})
        try:
            s = cls(
                enabled=_bool(raw.get("enabled", False), "codemod.enabled"),
                allow=_strs(raw.get("allow", DEFAULT_ALLOW), "codemod.allow"),
                allowed_imports=_strs(raw.get("allowed_imports", DEFAULT_IMPORTS), "codemod.allowed_imports"),
                protect_first=int(raw.get("protect_first", MIN_PROTECT_FIRST)),
                max_changed_lines=int(raw.get("max_changed_lines", 300)),
                revert_if_worse=_bool(raw.get("revert_if_worse", True), "codemod.revert_if_worse"),
                sandbox=_bool(raw.get("sandbox", True), "codemod.sandbox"),
                smoke=SmokeSettings(train=_bool(smoke.get("train", True), "codemod.smoke.train"),
                                    timeout_s=float(smoke.get("timeout_s", 600.0)),
                                    overrides=_strs(smoke.get("overrides", DEFAULT_SMOKE),
                                                    "codemod.smoke.overrides")),
                heuristic=HeuristicSettings(stuck_r2=float(heur.get("stuck_r2", 0.99)),
                                            stuck_iterations=int(heur.get("stuck_iterations", 4)),
                                            min_gain=float(heur.get("min_gain", 1e-3)),
                                            library=_strs(heur.get("library", DEFAULT_LIBRARY),
                                                          "codemod.heuristic.library")),
            )
        except (TypeError, ValueError) as e:
            raise ConfigError(f"codemod: {e}") from None
        s.check()
        return s

    def check(self) -> None:
        if self.protect_first < MIN_PROTECT_FIRST:
            raise ConfigError(f"codemod.protect_first={self.protect_first}: code changes are never allowed in the "
                              f"first {MIN_PROTECT_FIRST} iterations of a block; use >= {MIN_PROTECT_FIRST}")
        if not self.allow:
            raise ConfigError("codemod.allow is empty; list the files a policy may change, e.g. "
                              "mpm_inr/models/*.py")
        for p in self.allow:
            if not _PATTERN.match(p) or p.startswith("/") or ".." in p.split("/"):
                raise ConfigError(f"codemod.allow entry {p!r} must be a repository-relative glob (letters, digits, "
                                  f"_ . - / *)")
            probe = p.replace("**", "x").replace("*", "x").rstrip("/")
            rx = glob_regex(p)
            samples = [(q.replace("**", "x/x.py").replace("*", "x"), w) for q, w in PROTECTED]
            why = protected_reason(probe) or protected_reason(probe + "/x.py") or next(
                (w for q, w in samples if rx.match(q)), None)
            if why:
                raise ConfigError(f"codemod.allow entry {p!r} covers {why}, which code modifications may never "
                                  f"change")
        if self.max_changed_lines < 1:
            raise ConfigError("codemod.max_changed_lines must be >= 1")
        if not self.smoke.timeout_s > 0:
            raise ConfigError("codemod.smoke.timeout_s must be > 0")
        for o in self.smoke.overrides:
            if "=" not in o or o.startswith(("hydra.", "+", "~")):
                raise ConfigError(f"codemod.smoke.overrides entry {o!r} must be a plain key=value trainer override")
        h = self.heuristic
        if not 0 < h.stuck_r2 <= 1:
            raise ConfigError(f"codemod.heuristic.stuck_r2={h.stuck_r2}: must be in (0, 1]")
        if h.stuck_iterations < 4:
            raise ConfigError(f"codemod.heuristic.stuck_iterations={h.stuck_iterations}: "
                              "the design document asks for 4+")
        unknown = [x for x in h.library if x not in LIBRARY]
        if unknown:
            raise ConfigError(f"codemod.heuristic.library: unknown modification(s) {', '.join(unknown)}; choose "
                              f"from {', '.join(LIBRARY)}")


def _bool(v: Any, key: str) -> bool:
    if isinstance(v, bool):
        return v
    raise ConfigError(f"{key}={v!r}: must be true or false")


def _strs(v: Any, key: str) -> tuple[str, ...]:
    if isinstance(v, str) or not isinstance(v, Sequence):
        raise ConfigError(f"{key} must be a list of strings")
    out = tuple(str(x) for x in v)
    if any(not x for x in out):
        raise ConfigError(f"{key} has an empty entry")
    return out
