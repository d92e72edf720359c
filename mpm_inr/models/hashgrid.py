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
        base = pos.floor().long()
        frac = pos - base  # (B, L, d)
        grid = base.unsqueeze(2) + self.corners.view(1, 1, -1, self.in_dim)  # (B, L, 2^d, d)
        res1 = (self.resolutions.long() + 1).view(1, -1, 1)
        # Dense index: mixed radix with stride (res+1); hashed index: xor of coordinate * prime.
        strides = res1.unsqueeze(-1) ** torch.arange(self.in_dim, device=x.device).view(1, 1, 1, -1)
        dense_idx = (grid * strides).sum(-1)
        hashed = grid * self.primes.view(1, 1, 1, -1)
        hash_idx = hashed[..., 0]
        for dim in range(1, self.in_dim):
            hash_idx = torch.bitwise_xor(hash_idx, hashed[..., dim])
        idx = torch.where(self.dense.view(1, -1, 1), dense_idx, hash_idx) % self.sizes.view(1, -1, 1)
        idx = idx + self.offsets[:-1].view(1, -1, 1)
        feats = self.embeddings[idx]  # (B, L, 2^d, F)
        w = torch.where(self.corners.view(1, 1, -1, self.in_dim).bool(), frac.unsqueeze(2), 1.0 - frac.unsqueeze(2))
        w = w.prod(-1, keepdim=True)  # (B, L, 2^d, 1)
        return (feats * w).sum(2).reshape(b, self.out_dim)
