"""The truncated SVD stored the way our codec stores a model: the baseline at the same quantisation and lzma.

A float32 SVD (`mpm_inr.baselines`) pays 32 bits per number; our codec pays a few. To compare file sizes fairly
the SVD gets the same tools: per component centred (the best rank-k fit for the reported R², Eckart–Young), its
temporal factor U_k (T x k) stored as per-direction integers like our network weights (`quantise_tensor`, the
codec's candidate bits), its coefficients W (k x N·C) re-solved for the stored U_k, then rounded to multiples of
one step found by bisection on the decoded R² (as our codes are), and every array lzma-coded by byte planes
(`pack_array`). The smallest file over the rank and the bits that reaches the target wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from mpm_inr.codec.encode import DECODE_MARGIN, largest_passing
from mpm_inr.codec.quantise import (
    dequantise_tensor,
    pack_array,
    quantise_tensor,
    quantise_uniform,
)
from mpm_inr.metrics.svd import temporal_basis

#: bytes a decoder needs besides the arrays: rank, bits, step, shapes (a generous fixed header)
HEADER_BYTES = 32
DEFAULT_BITS = (16, 8, 6, 5, 4, 3)


@dataclass(frozen=True)
class QuantisedSVD:
    """One encoded point: the file's bytes and what it decodes to."""

    rank: int
    bits: int
    step: float
    n_bytes: int
    r2: float
    temporal: np.ndarray  # (T, k) float32, the decoded U_k
    coefficients: np.ndarray  # (k, N·C) float64, the decoded W (integers x step)
    mean: np.ndarray  # (C,) float32

    def decode(self, n_particles: int) -> np.ndarray:
        """(T, N, C) float64 values in original units."""
        flat = self.temporal.astype(np.float64) @ self.coefficients
        return flat.reshape(flat.shape[0], n_particles, -1) + self.mean.astype(np.float64)


def quantised_svd(values: np.ndarray, target_r2: float, bits: tuple[int, ...] = DEFAULT_BITS,
                  max_rank: int | None = None) -> QuantisedSVD | None:
    """The smallest quantised, lzma-coded truncated SVD of (T, N, C) `values` whose decoded R² reaches target_r2
    (R² = 1 - Σ_c SS_res,c / Σ_c SS_tot,c, as every run reports it); None if no rank up to max_rank does."""
    values = np.asarray(values)
    n_frames, n_particles, n_comp = values.shape
    mean = values.reshape(-1, n_comp).mean(axis=0, dtype=np.float64).astype(np.float32)
    centred = torch.from_numpy(values.reshape(n_frames, -1).astype(np.float64)) - torch.from_numpy(
        np.tile(mean.astype(np.float64), n_particles))
    ss_tot = float((centred ** 2).sum())
    basis, coefficients = temporal_basis(centred)
    goal = 1.0 - (1.0 - target_r2) * (1.0 - DECODE_MARGIN)  # the codec's margin, so the decoded file meets it
    limit = min(max_rank or basis.shape[1], basis.shape[1])
    # no rank-k file beats the float rank-k SVD (Eckart–Young), so the search starts where that reaches the goal
    float_r2 = 1.0 - (ss_tot - torch.cumsum((coefficients ** 2).sum(dim=1), 0)) / ss_tot
    first = int(torch.searchsorted(float_r2, torch.tensor([goal], dtype=float_r2.dtype))[0]) + 1
    best: QuantisedSVD | None = None
    misses = 0
    for rank in range(first, limit + 1):
        found = [p for b in bits if (p := _encode_rank(centred, basis[:, :rank], b, ss_tot, goal, mean)) is not None]
        point = min(found, key=lambda p: p.n_bytes, default=None)
        if point is None:
            continue
        if best is None or point.n_bytes < best.n_bytes:
            best, misses = point, 0
        elif (misses := misses + 1) >= 3:  # past the best size: more rank costs more than its coarser step saves
            break
    return best


def _encode_rank(centred: torch.Tensor, basis: torch.Tensor, bits: int, ss_tot: float, goal: float,
                 mean: np.ndarray) -> QuantisedSVD | None:
    """Rank k at these bits: the stored U_k, W re-solved for it, the largest step reaching goal, the file's bytes."""
    stored_u = quantise_tensor(basis.T.numpy(), bits)  # one scale per direction (a row of U_kᵀ)
    temporal = dequantise_tensor(stored_u).T  # (T, k) float32, what the decoder multiplies by
    u = torch.from_numpy(temporal.astype(np.float64))
    gram = u.T @ u
    projected = u.T @ centred  # (k, N·C)
    coefs = torch.linalg.solve(gram, projected)  # least squares for the stored U_k
    coefs_np, projected_np, gram_np = coefs.numpy(), projected.numpy(), gram.numpy()

    def r2_at(step: float) -> float:
        decoded = quantise_uniform(coefs_np, step) * step
        ss_res = ss_tot - 2 * float(np.einsum("ij,ij->", decoded, projected_np)) + float(
            np.einsum("ij,ij->", decoded @ decoded.T, gram_np))
        return 1.0 - ss_res / ss_tot

    if r2_at(1e-12 * max(float(np.abs(coefs_np).max()), 1e-30)) < goal:
        return None  # this rank at these bits cannot reach the goal at any step
    step = largest_passing(lambda s: r2_at(s) >= goal, float(np.abs(coefs_np).max()) / 64)
    if step is None:
        return None
    ints = quantise_uniform(coefs_np, step)
    arrays = [ints.T, *(stored_u if isinstance(stored_u, tuple) else (stored_u,)), mean]
    n_bytes = HEADER_BYTES + sum(len(pack_array(np.asarray(a))[0]) for a in arrays)
    return QuantisedSVD(int(basis.shape[1]), bits, step, n_bytes, r2_at(step), temporal, ints * step, mean)


def compression(values: np.ndarray, point: QuantisedSVD) -> float:
    """The window's float32 bytes / the file's bytes (the codec's ratio)."""
    return 4 * math.prod(values.shape) / point.n_bytes
