"""Coordinate builders: one function per input layout, shared by training, evaluation and plots.

Every builder maps (frame indices, particle indices) to network inputs through the same normalised
coordinates, so t and x/y periods can never be applied in training but forgotten in evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class CoordinateSource:
    """Device-resident normalised coordinates of a field window."""

    t: Tensor  # (T,) time in [-1, 1] / t_period
    particle: Tensor  # (N,) particle id in [-1, 1]
    xy: Tensor | None  # (T, N, 2) positions in [-1, 1] / xy_period, only for Eulerian types


def time_only(src: CoordinateSource, frame_idx: Tensor, particle_idx: Tensor) -> Tensor:
    return src.t[frame_idx].unsqueeze(-1)


def time_and_id(src: CoordinateSource, frame_idx: Tensor, particle_idx: Tensor) -> Tensor:
    return torch.stack((src.t[frame_idx], src.particle[particle_idx]), dim=-1)


def time_and_position(src: CoordinateSource, frame_idx: Tensor, particle_idx: Tensor) -> Tensor:
    if src.xy is None:
        raise RuntimeError("this inr_type needs particle positions; the window was built without them")
    return torch.cat((src.t[frame_idx].unsqueeze(-1), src.xy[frame_idx, particle_idx]), dim=-1)


def query_points(network, builder, src: CoordinateSource, frame_idx: Tensor, particle_idx: Tensor) -> Tensor:
    """Generic query: build per-point coordinates, run the network on each point."""
    return network(builder(src, frame_idx, particle_idx), particle_idx)


def query_time_grid(network, builder, src: CoordinateSource, frame_idx: Tensor, particle_idx: Tensor) -> Tensor:
    """For networks whose shared part sees only t: run it on the window's T frames, then gather per point.

    Equivalent to query_points (tested), but costs O(T) network evaluations instead of O(batch).
    """
    return network.forward_grid(src.t.unsqueeze(-1), frame_idx, particle_idx)
