"""Multiresolution hash-grid encoding (Mueller et al. 2022, "Instant NGP") in pure PyTorch, any input dim.

Level l has resolution floor(base * scale**l). Coarse levels whose (res+1)**d corners fit in the table are
indexed densely; finer ones are hashed with the usual per-dimension primes. Features are interpolated
(bi/tri-)linearly from the 2**d corners. Inputs must lie in [0, 1]^d.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

_PRIMES = (1, 2654435761, 805459861, 3674653429)


class HashGridEncoding(nn.Module):
    def __init__(
        self,
        in_dim: int,
        n_levels: int = 16,
        features_per_level: int = 2,
        log2_table_size: int = 19,
        base_resolution: int = 16,
        per_level_scale: float = 1.5,
        init_scale: float = 1e-4,
    ) -> None:
        super().__init__()
        if in_dim > len(_PRIMES):
            raise ValueError(f"hash grid supports up to {len(_PRIMES)} input dims, got {in_dim}")
        self.in_dim = in_dim
        self.n_levels = n_levels
        self.features_per_level = features_per_level
        self.table_size = 2**log2_table_size
        resolutions, sizes, dense = [], [], []
        for level in range(n_levels):
            res = math.floor(base_resolution * per_level_scale**level)
            n_dense = (res + 1) ** in_dim
            resolutions.append(res)
            dense.append(n_dense <= self.table_size)
            sizes.append(min(n_dense, self.table_size))
        self.register_buffer("resolutions", torch.tensor(resolutions, dtype=torch.float32), persistent=False)
        self.register_buffer("dense", torch.tensor(dense), persistent=False)
        offsets = torch.tensor([0] + list(itertools.accumulate(sizes)), dtype=torch.long)
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("sizes", torch.tensor(sizes, dtype=torch.long), persistent=False)
        corners = torch.tensor(list(itertools.product((0, 1), repeat=in_dim)), dtype=torch.long)
        self.register_buffer("corners", corners, persistent=False)  # (2^d, d)
        self.register_buffer("primes", torch.tensor(_PRIMES[:in_dim], dtype=torch.long), persistent=False)
        self.embeddings = nn.Parameter(torch.empty(int(offsets[-1]), features_per_level).uniform_(-init_scale, init_scale))
        self.out_dim = n_levels * features_per_level

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, d) in [0, 1] -> (B, n_levels * features_per_level)."""
        b = x.shape[0]
        pos = x.clamp(0.0, 1.0).unsqueeze(1) * self.resolutions.view(1, -1, 1)  # (B, L, d)
        floor = pos.floor()
        frac = pos - floor  # (B, L, d)
        idx = self.corner_indices(floor.long()) + self.offsets[:-1].view(1, -1, 1)  # (B, L, 2^d)
        feats = self.embeddings[idx]  # (B, L, 2^d, F)
        return (feats * self.corner_weights(frac)).sum(2).reshape(b, self.out_dim)

    def corner_weights(self, frac: Tensor) -> Tensor:
        """(B, L, 2^d, 1) multilinear weights of the corners (in `self.corners` order): the product over dimensions
        of 1 − frac_d or frac_d, built as outer products of the per-dimension pairs, in the same order of
        multiplication as the product over a (B, L, 2^d, d) grid, so the same bits."""
        pairs = torch.stack((1.0 - frac, frac), dim=-1)  # (B, L, d, 2)
        weights = pairs[..., 0, :]
        for dim in range(1, self.in_dim):
            weights = (weights.unsqueeze(-1) * pairs[..., dim, :].unsqueeze(-2)).flatten(-2)
        return weights.unsqueeze(-1)

    def corner_indices(self, base: Tensor) -> Tensor:
        """(B, L, 2^d) table rows of the 2^d corners of each point's cell, `base` (B, L, d) its lower corner, the
        corners in `self.corners` order (the last dimension varies fastest). Both indices are built per dimension
        and combined across corners, not computed on a (B, L, 2^d, d) grid: a corner's coordinate is base or
        base + 1, so dense = Σ_d base_d·stride_d + Σ_d c_d·stride_d and hashed = XOR_d (base_d + c_d)·prime_d.
        The same integers as the grid formula, with ~4x fewer int64 temporaries (it dominates ngp's evaluation)."""
        res1 = self.resolutions.long() + 1  # (L,)
        strides = res1.view(-1, 1) ** torch.arange(self.in_dim, device=base.device).view(1, -1)  # (L, d)
        # each corner's offset per level, (L, 2^d): a product and a sum, since CUDA has no integer matmul
        corner_offsets = (self.corners.unsqueeze(0) * strides.unsqueeze(1)).sum(-1)
        dense = (base * strides).sum(-1, keepdim=True) + corner_offsets.unsqueeze(0)  # (B, L, 2^d)
        low = base * self.primes  # (B, L, d): the hashed term of coordinate base_d; base_d + 1 adds prime_d
        hashed = torch.stack((low[..., 0], low[..., 0] + self.primes[0]), dim=-1)  # (B, L, 2)
        for dim in range(1, self.in_dim):
            options = torch.stack((low[..., dim], low[..., dim] + self.primes[dim]), dim=-1)  # (B, L, 2)
            hashed = torch.bitwise_xor(hashed.unsqueeze(-1), options.unsqueeze(-2)).flatten(-2)
        return torch.where(self.dense.view(1, -1, 1), dense, hashed) % self.sizes.view(1, -1, 1)
