"""The one registry: inr_type -> (coordinate builder, network class, flags).

Adding an inr_type means one network module (a `FieldNetwork`, overriding the capabilities it has), one line here
and one conf/inr_type/<name>.yaml.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mpm_inr.errors import ConfigError
from mpm_inr.models import coordinates as coords
from mpm_inr.models.context import NetworkContext
from mpm_inr.models.eulerian import HashGridField, PointSiren
from mpm_inr.models.field_network import FieldNetwork
from mpm_inr.models.lagrangian import LatentCodeField, PerParticleHead

CoordinateBuilder = Callable[[coords.CoordinateSource, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class InrType:
    coordinates: CoordinateBuilder
    in_dim: int
    network: type[FieldNetwork]
    needs_positions: bool = False
    description: str = ""
    time_grid: bool = False  # the shared network sees only t: evaluate it per frame, not per point
    tf32_safe: bool = False  # train.tf32=auto enables TF32 matmuls (not for sine layers: omega amplifies the error)

    def query(self, network: FieldNetwork, src: coords.CoordinateSource, frame_idx: Tensor, particle_idx: Tensor) -> Tensor:
        """Predictions (B, C) in training units for the given (frame, particle) points."""
        run = coords.query_time_grid if self.time_grid else coords.query_points
        return run(network, self.coordinates, src, frame_idx, particle_idx)

    def query_frames(self, network: FieldNetwork, src: coords.CoordinateSource, frames: Tensor) -> Tensor:
        """Every particle at the given frames, (F, N, C); dense for time-only types (one matrix product)."""
        if not self.time_grid:
            raise ConfigError("dense whole-window queries (train.sampler=full) need a time-only inr_type: "
                              + ", ".join(name for name, t in INR_TYPES.items() if t.time_grid))
        return network.forward_dense(src.t[frames].unsqueeze(-1))

    def pack_dense_targets(self, network: FieldNetwork, targets: Tensor) -> Tensor | None:
        """The training targets (F, N, C) in the layout the network's Gram-form `dense_sse` multiplies by, or
        None where the network has no Gram form (only bilinear latent codes have one)."""
        return network.pack_targets(targets) if self.time_grid else None

    def dense_sse(self, network: FieldNetwork, src: coords.CoordinateSource, frames: Tensor,
                  packed_targets: Tensor, targets_sq: Tensor) -> Tensor:
        """Σ (pred - target)² over the given frames without forming the prediction; packed_targets comes from
        `pack_dense_targets` for the same frames."""
        return network.dense_sse(src.t[frames].unsqueeze(-1), packed_targets, targets_sq)

    def sampled_sse(self, network: FieldNetwork, src: coords.CoordinateSource, frames: Tensor, positions: Tensor,
                    packed_targets: Tensor, targets_sq: Tensor, statistics: Any) -> Tensor:
        """Σ (pred - target)² over a sample of the window's frames (positions: their places in the window, which
        index `statistics`) without forming the prediction; see `LatentCodeField.sampled_sse`."""
        return network.sampled_sse(src.t[frames].unsqueeze(-1), positions, packed_targets, targets_sq, statistics)

    def accumulate_statistics(self, network: FieldNetwork, src: coords.CoordinateSource, frames: Tensor,
                              positions: Tensor, packed_targets: Tensor, statistics: Any) -> None:
        """Renew `statistics`' terms of these frames with the network's current basis."""
        network.accumulate_statistics(statistics, src.t[frames].unsqueeze(-1), positions, packed_targets)

    def loss_targets(self, network: FieldNetwork, packed_targets: Tensor) -> Tensor:
        """What `dense_sse` should multiply by in training steps: the network may replace the packed targets by a
        smaller equivalent (solved codes); otherwise the packed targets themselves."""
        return network.loss_targets(packed_targets)

    @torch.no_grad()
    def predict_frames(self, network: FieldNetwork, src: coords.CoordinateSource, frames: Tensor,
                       chunk: int = 65536) -> Tensor:
        """Every particle at the given frames of `src`, (F, N, C) in training units, `chunk` points at a time;
        one path for evaluation after training and for decoding a codec file."""
        n_particles = src.particle.numel()
        if self.time_grid:
            step = max(1, chunk // n_particles)
            out = None  # filled chunk by chunk: no list of chunks beside the concatenated window
            for i in range(0, frames.numel(), step):
                part = self.query_frames(network, src, frames[i:i + step])
                if out is None:
                    out = part.new_empty(frames.numel(), *part.shape[1:])
                out[i:i + step] = part
            return out
        n_points = frames.numel() * n_particles
        out = None  # the same chunks of points as one list of every index would give, without that list (two int64
        # per point: 1.4 GB at 10 000 frames of 9000 particles) nor a list of predicted chunks beside the window
        for lo in range(0, n_points, chunk):
            point = torch.arange(lo, min(lo + chunk, n_points), device=frames.device)
            part = self.query(network, src, frames[point // n_particles], point % n_particles)
            if out is None:
                out = part.new_empty(n_points, *part.shape[1:])
            out[lo:lo + chunk] = part
        return out.view(frames.numel(), n_particles, -1)

    def refresh_codes(self, network: FieldNetwork, src: coords.CoordinateSource, frames: Tensor,
                      packed_targets: Tensor) -> None:
        """Networks that solve their codes from the basis (instead of learning them) store the solution for the
        current basis; the others have nothing to do."""
        network.refresh_codes(src.t[frames].unsqueeze(-1), packed_targets)


INR_TYPES: dict[str, InrType] = {
    "siren_t": InrType(coords.time_only, 1, PerParticleHead, description="t -> all particles (memorising head)",
                       time_grid=True),
    "siren_id": InrType(coords.time_and_id, 2, PointSiren, description="(t, particle id scalar)"),
    "siren_txy": InrType(coords.time_and_position, 3, PointSiren, True, "(t, x, y) Eulerian SIREN"),
    "ngp": InrType(coords.time_and_position, 3, HashGridField, True, "(t, x, y) hash grid + MLP", tf32_safe=True),
    "lagrangian": InrType(coords.time_only, 1, LatentCodeField, description="per-particle codes x SIREN(t) basis",
                          time_grid=True),
}


def get_inr_type(name: str) -> InrType:
    try:
        return INR_TYPES[name]
    except KeyError:
        raise ConfigError(f"unknown inr_type {name!r}; valid: {', '.join(sorted(INR_TYPES))}") from None


# Keys of the model config that configure the optimiser, not the network (run.py reads them itself).
OPTIMISER_KEYS = ("latent_lr_mult",)


def network_from_config(model: Mapping[str, Any], ctx: NetworkContext) -> FieldNetwork:
    """A fresh network from the model config as composed (`name` and optimiser-only keys included): the one
    construction path for training and for decoding a codec file."""
    params = {k: v for k, v in model.items() if k != "name" and k not in OPTIMISER_KEYS}
    return build_network(str(model["name"]), ctx, params)


def build_network(name: str, ctx: NetworkContext, params: dict[str, Any]) -> FieldNetwork:
    """Instantiate the network of `name` from plain keyword params (the model config minus `name`)."""
    spec = get_inr_type(name)
    try:
        return spec.network(ctx, spec.in_dim, **params)
    except TypeError as err:
        raise ConfigError(f"bad parameters for inr_type={name}: {err}") from None
