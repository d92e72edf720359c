"""Networks over (t, x, y) or (t, id): one query point in, the field's components out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from mpm_inr.models import flops
from mpm_inr.models.context import NetworkContext
from mpm_inr.models.field_network import FieldNetwork
from mpm_inr.models.hashgrid import HashGridEncoding
from mpm_inr.models.siren import Siren


class PointSiren(FieldNetwork):
    """A plain SIREN on the coordinate vector (siren_txy, siren_id); particle index unused. n_layers counts every
    sine layer (the reference's n_layers_nnr_f + 1); head_init and bias_init: see `mpm_inr.models.siren`."""

    particle_labels = frozenset()

    def __init__(self, ctx: NetworkContext, in_dim: int, hidden_dim: int, n_layers: int, omega: float,
                 learn_omega: bool = False, head_init: str = "hidden", bias_init: str = "weight_bound") -> None:
        super().__init__()
        self.net = Siren(in_dim, ctx.n_components, hidden_dim, n_layers, omega, learn_omega, head_init, bias_init)

    def forward(self, coords: Tensor, particle_idx: Tensor) -> Tensor:
        return self.net(coords)

    @staticmethod
    def flop_costs(model: Mapping[str, Any], in_dim: int, n_components: int) -> tuple[float, float]:
        """(FLOPs per t alone, per point) of a forward pass (mpm_inr.training.cost): all of it per point."""
        h, n = flops.size(model, "hidden_dim"), flops.size(model, "n_layers")
        return 0.0, flops.siren_trunk(in_dim, h, n) + flops.dense(h, n_components, act=False)


class HashGridField(FieldNetwork):
    """Hash-grid encoding of (t, x, y) in [-1, 1] followed by a small ReLU MLP (ngp)."""

    particle_labels = frozenset()

    def __init__(self, ctx: NetworkContext, in_dim: int, n_levels: int, features_per_level: int,
                 log2_table_size: int, base_resolution: int, per_level_scale: float, hidden_dim: int,
                 n_layers: int) -> None:
        super().__init__()
        self.encoding = HashGridEncoding(in_dim, n_levels, features_per_level, log2_table_size,
                                         base_resolution, per_level_scale)
        layers: list[nn.Module] = []
        width = self.encoding.out_dim
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden_dim), nn.ReLU()]
            width = hidden_dim
        layers.append(nn.Linear(width, ctx.n_components))
        self.mlp = nn.Sequential(*layers)

    def forward(self, coords: Tensor, particle_idx: Tensor) -> Tensor:
        return self.mlp(self.encoding((coords + 1.0) * 0.5))

    @staticmethod
    def flop_costs(model: Mapping[str, Any], in_dim: int, n_components: int) -> tuple[float, float]:
        """(FLOPs per t alone, per point) of a forward pass: per level 2^d corner indices (d mults + d xors),
        weights (d mults) and the feature blend (2 F per corner), then the MLP; all of it per point."""
        levels, feats = flops.size(model, "n_levels"), flops.size(model, "features_per_level")
        h, n = flops.size(model, "hidden_dim"), flops.size(model, "n_layers")
        encoding = levels * 2 ** in_dim * (3.0 * in_dim + 2.0 * feats)
        width, mlp = levels * feats, 0.0
        for _ in range(n):
            mlp += flops.dense(width, h)
            width = h
        return 0.0, encoding + mlp + flops.dense(width, n_components, act=False)
