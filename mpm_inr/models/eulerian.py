"""Networks over (t, x, y) or (t, id): one query point in, the field's components out."""

from __future__ import annotations

from torch import Tensor, nn

from mpm_inr.models.context import NetworkContext
from mpm_inr.models.hashgrid import HashGridEncoding
from mpm_inr.models.siren import Siren


class PointSiren(nn.Module):
    """A plain SIREN on the coordinate vector (siren_txy, siren_id); particle index unused."""

    def __init__(self, ctx: NetworkContext, in_dim: int, hidden_dim: int, n_layers: int, omega: float,
                 learn_omega: bool = False) -> None:
        super().__init__()
        self.net = Siren(in_dim, ctx.n_components, hidden_dim, n_layers, omega, learn_omega)

    def forward(self, coords: Tensor, particle_idx: Tensor) -> Tensor:
        return self.net(coords)


class HashGridField(nn.Module):
    """Hash-grid encoding of (t, x, y) in [-1, 1] followed by a small ReLU MLP (ngp)."""

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
