"""FLOP counting helpers for the networks' own cost estimates (`flop_costs` on each network class).

2 FLOPs per multiply-add of a linear layer and a nominal cost per activation: a proxy whose scale a fitted time
model absorbs (mpm_inr.training.cost). Configs arrive as plain mappings (the model config without `model.`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mpm_inr.errors import ConfigError

#: nominal FLOPs of one sine / ReLU / SiLU evaluation (the fit's scale absorbs the exact value)
ACT_FLOPS = 8.0


def dense(n_in: int, n_out: int, act: bool = True) -> float:
    """One linear layer, with or without its activation."""
    return 2.0 * n_in * n_out + n_out + (ACT_FLOPS * n_out if act else 0.0)


def siren_trunk(n_in: int, width: int, depth: int) -> float:
    """A SIREN trunk: `depth` sine layers of `width` (first from n_in)."""
    return dense(n_in, width) + (depth - 1) * dense(width, width)


def size(model: Mapping[str, Any], key: str) -> int:
    """A size knob of the model config, as a non-negative int, or a one-line ConfigError naming it."""
    v = model.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise ConfigError(f"the cost estimate needs a numeric model.{key}, got {v!r}")
    return int(v)
