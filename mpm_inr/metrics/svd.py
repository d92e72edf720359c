"""Truncated-SVD baseline of a field window: the linear speed-of-light every INR is compared with.

The window (T, N, C) becomes the matrix frames × (particles·components). With `normalize=True` each component
is first z-scored over frames × particles (population std, as the training targets are), so that large-magnitude
components do not own the basis; the rank-k approximation is scored in original units with the same R² as
`regression.r2_score`.

Parameter count of rank k: U_k (T×k) + S_k (k) + V_k (N·C × k) = k·(T + N·C + 1). No per-column means are
stored (the first singular pair absorbs a static field); the 2·C z-score constants are not counted, just as
the INRs' normalisation statistics are not part of their parameter counts.

One decomposition gives every rank at once: U has orthonormal columns, so the residual of component block c
after rank k is Σ_{i>k} ‖W_{i,c}‖² with W = Uᵀ·M = S Vᵀ, a sum of non-negative terms (no cancellation).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mpm_inr.errors import ConfigError
from mpm_inr.metrics._arrays import as_field
from mpm_inr.metrics.interpolate import METHODS, interpolate
from mpm_inr.metrics.regression import r2_from_sums

DEFAULT_RANKS = (1, 2, 4, 8, 16, 32, 64)


def svd_param_count(rank: int, n_frames: int, n_columns: int) -> int:
    """Stored numbers of a rank-k truncated SVD: U_k (T×k), S_k (k), V_k (columns×k)."""
    return rank * (n_frames + n_columns + 1)


def temporal_basis(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal U (T×r) and W = Uᵀ·matrix (r×M), r = min(T, M), ordered by decreasing energy ‖W_i‖².

    U_k W_k is the rank-k truncated SVD (W_k = S_k V_kᵀ). For the usual wide window (T ≪ M) U comes from the
    eigenvectors of the T×T Gram matrix: ~20× faster than a thin SVD on CPU. Squaring the matrix only perturbs
    the *choice* of subspace for singular values below ~1e-8·s_1 (irrelevant at R² ≤ 1 − 1e-12); the scores
    stay exact for the basis actually used, because they are computed from W = Uᵀ·matrix and U is orthonormal.
    Tall matrices (few columns) go through QR and a small SVD instead.
    """
    rows, cols = matrix.shape
    if cols >= rows:
        _, eigenvectors = torch.linalg.eigh(matrix @ matrix.T)
        basis = eigenvectors.flip(-1)  # eigh sorts ascending
        return basis, basis.T @ matrix
    q, r = torch.linalg.qr(matrix)
    u, s, vh = torch.linalg.svd(r)
    return q @ u, s[:, None] * vh


def _zscore_stats(values: torch.Tensor, normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-component mean and population std over frames × particles (identity transform if not normalizing)."""
    n_components = values.shape[-1]
    if not normalize:
        zeros = torch.zeros(n_components, dtype=values.dtype, device=values.device)
        return zeros, torch.ones_like(zeros)
    flat = values.reshape(-1, n_components)
    mean = flat.mean(dim=0)
    std = flat.std(dim=0, correction=0)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def _ss_tot(values: torch.Tensor) -> np.ndarray:
    """Per-component SS_tot about the component mean, exactly 0 for constant components (as in regression)."""
    flat = values.reshape(-1, values.shape[-1])
    centred = flat - flat.mean(dim=0)
    ss_tot = (centred * centred).sum(dim=0)
    low, high = torch.aminmax(flat, dim=0)
    ss_tot = torch.where(high > low, ss_tot, torch.zeros_like(ss_tot))
    return ss_tot.cpu().numpy()


def _check_ranks(ranks: Sequence[int]) -> tuple[int, ...]:
    checked = tuple(int(rank) for rank in ranks)
    if not checked or any(rank < 1 for rank in checked):
        raise ConfigError(f"SVD ranks must be positive integers, got {list(ranks)}")
    return tuple(sorted(set(checked)))


def _as_tensor(values: Any, device: torch.device) -> torch.Tensor:
    """(T, N, C) float64 tensor on `device`; torch input moves directly, without a trip through the host."""
    if isinstance(values, torch.Tensor):
        tensor = values.detach().to(device=device, dtype=torch.float64)
        tensor = tensor[:, :, None] if tensor.ndim == 2 else tensor
        if tensor.ndim != 3 or tensor.numel() == 0:
            raise ValueError(f"values must have shape (frames, particles, components), got {tuple(values.shape)}")
        return tensor
    return torch.as_tensor(as_field(values, "values"), device=device)


@dataclass(frozen=True)
class SVDBaseline:
    """R² of every truncated rank of one window; `ranks` are those requested (and ≤ the matrix rank)."""

    n_frames: int
    n_particles: int
    n_components: int
    normalize: bool
    ranks: tuple[int, ...]
    r2_all_ranks: np.ndarray  # (max_rank,): R² of rank k at index k - 1
    r2_per_component_all_ranks: np.ndarray  # (max_rank, C), NaN for constant components
    singular_values: np.ndarray
    time_s: float  # wall time of the whole baseline (normalisation, SVD, scoring); one SVD serves all ranks

    @property
    def n_values(self) -> int:
        return self.n_frames * self.n_particles * self.n_components

    @property
    def max_rank(self) -> int:
        return int(self.r2_all_ranks.shape[0])

    def _check_rank(self, rank: int) -> int:
        if not 1 <= rank <= self.max_rank:
            raise ValueError(f"rank must be in 1..{self.max_rank}, got {rank}")
        return rank

    def r2(self, rank: int) -> float:
        return float(self.r2_all_ranks[self._check_rank(rank) - 1])

    def n_params(self, rank: int) -> int:
        return svd_param_count(self._check_rank(rank), self.n_frames, self.n_particles * self.n_components)

    def compression(self, rank: int) -> float:
        return self.n_values / self.n_params(rank)

    def rank_for(self, target: float = 0.995) -> int | None:
        """Smallest rank (searched over every rank, not only `ranks`) whose R² reaches `target`; None if none."""
        reached = np.flatnonzero(self.r2_all_ranks >= target)
        return int(reached[0]) + 1 if reached.size else None

    def rank_within(self, n_params: int) -> int | None:
        """Largest rank that stores at most n_params numbers (an INR's budget); None if even rank 1 needs more."""
        largest = n_params // (self.n_frames + self.n_particles * self.n_components + 1)
        return min(int(largest), self.max_rank) if largest >= 1 else None

    def same_params(self, n_params: int) -> dict[str, Any] | None:
        """The SVD an INR of n_params parameters has to beat: the best rank within the same budget, its R² and
        compression (at least the INR's). None when rank 1 alone is larger than the INR."""
        rank = self.rank_within(n_params)
        if rank is None:
            return None
        return {"rank": rank, "r2": self.r2(rank), "compression": self.compression(rank)}

    @property
    def per_rank(self) -> dict[int, dict[str, Any]]:
        """For each requested rank: r2, r2_per_component, n_params, compression."""
        return {
            rank: {
                "r2": self.r2(rank),
                "r2_per_component": [float(v) for v in self.r2_per_component_all_ranks[rank - 1]],
                "n_params": self.n_params(rank),
                "compression": self.compression(rank),
            }
            for rank in self.ranks
        }

    def as_metrics(self, target: float = 0.995, model_params: int | None = None) -> dict[str, Any]:
        """The `svd` entry of metrics.json: {"rank_for_0.995": int|None, "r2_rank": {"1": r2, ...}}, and with
        model_params also "same_params": `same_params(model_params)`."""
        out: dict[str, Any] = {
            f"rank_for_{target:g}": self.rank_for(target),
            "r2_rank": {str(rank): self.r2(rank) for rank in self.ranks},
        }
        if model_params is not None:
            out["same_params"] = self.same_params(model_params)
        return out


def svd_baseline(
    values: Any,
    ranks: Sequence[int] = DEFAULT_RANKS,
    normalize: bool = True,
    device: str | torch.device = "cpu",
) -> SVDBaseline:
    """Truncated SVD of a (T, N, C) window (numpy or torch, original units), scored at every rank."""
    checked_ranks = _check_ranks(ranks)
    device = torch.device(device)
    start = time.perf_counter()
    data = _as_tensor(values, device)
    n_frames, n_particles, n_components = data.shape
    mean, std = _zscore_stats(data, normalize)
    matrix = ((data - mean) / std).reshape(n_frames, n_particles * n_components)
    _, coefficients = temporal_basis(matrix)

    # energy[i, c] = ‖W_{i,c}‖² = s_i² ‖V_{i,c}‖²: what singular pair i carries of component c (normalised units).
    block_energy = (coefficients.reshape(-1, n_particles, n_components) ** 2).sum(dim=1)
    singular = block_energy.sum(dim=1).sqrt()
    tail = torch.flip(torch.cumsum(torch.flip(block_energy, dims=[0]), dim=0), dims=[0])  # Σ_{i ≥ k}
    residual = torch.cat([tail[1:], torch.zeros_like(tail[:1])]) * std**2  # rank k = 1..r, original units
    residual_host = residual.cpu().numpy()
    ss_tot = _ss_tot(data)
    singular_host = singular.cpu().numpy()

    r2_all = np.empty(residual_host.shape[0])
    per_component_all = np.empty(residual_host.shape)
    for index, ss_res in enumerate(residual_host):
        r2_all[index], per_component = r2_from_sums(ss_res, ss_tot)
        per_component_all[index] = per_component
    return SVDBaseline(
        n_frames=n_frames,
        n_particles=n_particles,
        n_components=n_components,
        normalize=normalize,
        ranks=tuple(rank for rank in checked_ranks if rank <= r2_all.shape[0]),
        r2_all_ranks=r2_all,
        r2_per_component_all_ranks=per_component_all,
        singular_values=singular_host,
        time_s=time.perf_counter() - start,
    )


@dataclass(frozen=True)
class SVDHoldout:
    """Held-out-frame scores of an SVD fitted on training frames with interpolated temporal coefficients."""

    method: str
    n_train_frames: int
    n_test_frames: int
    ranks: tuple[int, ...]
    r2: dict[int, float]
    r2_per_component: dict[int, list[float]]
    mse: dict[int, float]
    time_s: float

    def as_metrics(self) -> dict[str, Any]:
        return {"method": self.method, "r2_rank": {str(rank): self.r2[rank] for rank in self.ranks}}


def _frame_indices(indices: Any, n_frames: int, name: str) -> np.ndarray:
    array = np.asarray(indices, dtype=np.int64).reshape(-1)
    if array.size == 0:
        raise ConfigError(f"{name} is empty")
    if array.min() < 0 or array.max() >= n_frames:
        raise ConfigError(f"{name} must lie in 0..{n_frames - 1}, got {array.min()}..{array.max()}")
    if np.unique(array).size != array.size:
        raise ConfigError(f"{name} has repeated frames")
    return array


def svd_holdout(
    values: Any,
    train_frames_idx: Any,
    test_frames_idx: Any,
    t: Any = None,
    ranks: Sequence[int] = DEFAULT_RANKS,
    method: str = "linear",
    normalize: bool = True,
    device: str | torch.device = "cpu",
) -> SVDHoldout:
    """Fit the SVD on training frames only and predict held-out frames by interpolating U_k·S_k in t.

    values: the whole (T, N, C) window in original units; t: (T,) frame times (default 0..T-1). Normalisation
    statistics come from the training frames only. Held-out R² uses the test frames' own component means, i.e.
    it equals `r2_score(values[test], prediction)`. Ranks above the training matrix's rank are skipped.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown interpolation method {method!r}; choose one of {', '.join(METHODS)}")
    checked_ranks = _check_ranks(ranks)
    device = torch.device(device)
    start = time.perf_counter()
    data = _as_tensor(values, device)
    n_frames, n_particles, n_components = data.shape
    train = _frame_indices(train_frames_idx, n_frames, "train_frames_idx")
    test = _frame_indices(test_frames_idx, n_frames, "test_frames_idx")
    if np.intersect1d(train, test).size:
        raise ConfigError("train and test frames overlap: held-out frames must never be seen in training")
    times = np.arange(n_frames, dtype=np.float64) if t is None else np.asarray(t, dtype=np.float64).reshape(-1)
    if times.shape[0] != n_frames:
        raise ValueError(f"t has {times.shape[0]} entries, values have {n_frames} frames")
    train = train[np.argsort(times[train], kind="stable")]

    train_values = data[torch.as_tensor(train, device=device)]
    test_values = data[torch.as_tensor(test, device=device)]
    mean, std = _zscore_stats(train_values, normalize)
    basis, spatial = temporal_basis(((train_values - mean) / std).reshape(train.size, -1))
    # Interpolating U·S and multiplying by Vᵀ equals interpolating U and multiplying by W = S·Vᵀ (linearity).
    test_basis = torch.as_tensor(interpolate(times[train], basis.cpu().numpy(), times[test], method), device=device)

    ss_tot = _ss_tot(test_values)
    usable = tuple(rank for rank in checked_ranks if rank <= spatial.shape[0])
    r2: dict[int, float] = {}
    per_component: dict[int, list[float]] = {}
    mse: dict[int, float] = {}
    for rank in usable:
        prediction = (test_basis[:, :rank] @ spatial[:rank]).reshape(test.size, n_particles, n_components)
        residual = (prediction * std + mean - test_values).reshape(-1, n_components)
        ss_res = (residual * residual).sum(dim=0).cpu().numpy()
        r2[rank], per_component[rank] = r2_from_sums(ss_res, ss_tot)
        mse[rank] = float(ss_res.sum()) / residual.numel()
    return SVDHoldout(
        method=method,
        n_train_frames=int(train.size),
        n_test_frames=int(test.size),
        ranks=usable,
        r2=r2,
        r2_per_component=per_component,
        mse=mse,
        time_s=time.perf_counter() - start,
    )
