"""Sufficient statistics of solved latent codes over a whole window, refreshed a few frames at a time.

With a fixed basis B (K x values) the least-squares codes of a group are Z = (Y Bᵀ)(B Bᵀ)⁻¹, and both factors are
sums over frames: Y Bᵀ = Σ_f Y_f B_fᵀ, B Bᵀ = Σ_f B_f B_fᵀ. A step that visits only a few frames replaces their
terms with the current basis and keeps every other frame's term from the basis it had when last visited (the
stochastic-average-gradient idea applied to the normal equations). So a step costs what its frames cost, whatever
the window's length, and after a full pass with the basis held fixed the codes are exactly the dense solve.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: the ridge, relative to the mean diagonal of B Bᵀ: it only keeps a rank-deficient basis (early on) solvable
RIDGE = 1e-6


def ridge_solve(gram: Tensor, rhs: Tensor) -> Tensor:
    """(G, K, K) Gram matrices and (G, K, rows) right-hand sides, both in a wide dtype -> codes (G, rows, K).

    Cholesky, not LU: the ridged Gram is symmetric positive definite, and torch 2.13's batched LU solve on a CPU
    (oneMKL) fails from K ≈ 300 on with "Pivots given to lu_solve must all be greater or equal to 1" (C at 10 000
    frames, K = 570, crashed so in the landscape study). cholesky_ex does no error check, so no device-to-host sync
    on a GPU (a failed factor gives NaN codes, which the divergence check catches)."""
    ridge = RIDGE * gram.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-30)
    gram = gram + ridge[:, None, None] * torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    lower = torch.linalg.cholesky_ex(gram)[0]
    return torch.cholesky_solve(rhs, lower).transpose(1, 2)


class CodeStatistics:
    """Σ_f Y_f B_fᵀ (G, rows, K) and Σ_f B_f B_fᵀ (G, K, K) over a window's frames, each frame's term taken with
    the basis it had when last visited, plus that basis per frame (frames, G, K, C) to take the term out again.

    Memory: frames·G·K·C float32 for the basis seen, G·rows·K + G·K² in the wide dtype; no copy of the targets.
    `frames_touched` counts the frames the statistics have read (what a step costs, by count rather than time).
    """

    def __init__(self, n_frames: int, n_groups: int, n_rows: int, latent_dim: int, n_components: int,
                 device: torch.device | str = "cpu", wide: torch.dtype = torch.float64) -> None:
        self.shape = (n_groups, latent_dim, n_components)
        self.cross = torch.zeros(n_groups, n_rows, latent_dim, dtype=wide, device=device)
        self.gram = torch.zeros(n_groups, latent_dim, latent_dim, dtype=wide, device=device)
        self.basis_seen = torch.zeros(n_frames, n_groups, latent_dim, n_components, device=device)
        self.frames_touched = 0

    @property
    def n_frames(self) -> int:
        return self.basis_seen.shape[0]

    def reset(self) -> None:
        """Forget every term: the next pass over all frames rebuilds the statistics exactly."""
        self.cross.zero_()
        self.gram.zero_()
        self.basis_seen.zero_()

    @torch.no_grad()
    def replace(self, frames: Tensor, basis: Tensor, targets: Tensor) -> None:
        """Swap the terms of `frames` (positions in the window, without repeats) for the current basis.

        basis: (G, K, len(frames)·C) in the packed layout of `LatentCodeField._packed_basis`; targets: those frames'
        targets packed alike, (G, rows, len(frames)·C)."""
        n_groups, k, n_comp = self.shape
        wide = self.cross.dtype
        new = basis.detach().to(self.basis_seen.dtype)
        old = self.basis_seen[frames].permute(1, 2, 0, 3).reshape(n_groups, k, -1)
        # the rows x values product in the targets' precision, as the dense solve forms its right-hand side; the
        # K x K Grams, whose condition number the solve squares, in the wide dtype
        self.cross += torch.bmm(targets, (new - old).transpose(1, 2)).to(wide)
        new, old = new.to(wide), old.to(wide)
        self.gram += torch.bmm(new, new.transpose(1, 2)) - torch.bmm(old, old.transpose(1, 2))
        self.basis_seen[frames] = basis.detach().view(n_groups, k, -1, n_comp).permute(2, 0, 1, 3).to(
            self.basis_seen.dtype)
        self.frames_touched += int(frames.numel())

    @torch.no_grad()
    def codes(self) -> Tensor:
        """The ridge least-squares codes for the statistics as they stand, (G, rows, K) in the wide dtype."""
        return ridge_solve(self.gram, self.cross.transpose(1, 2))
