"""What a network needs to know about the data it will fit: sizes and per-particle groups, never files."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class NetworkContext:
    n_particles: int
    n_components: int
    material: Tensor  # (N,) long, 0 liquid 1 jelly 2 snow
    object_id: Tensor  # (N,) long
