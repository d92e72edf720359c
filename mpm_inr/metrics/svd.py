"""Truncated-SVD baseline of a field window: the linear speed-of-light every INR is compared with.

The window (T, N, C) becomes the matrix frames × (particles·components). With `normalize=True` ("zscore") each
component is first z-scored over frames × particles (population std, as the training targets are), so that
large-magnitude components do not own the basis; with "centred" each component only loses its mean, which makes
the rank-k fit the best one for the reported R² (Eckart–Young: R² = 1 − ‖residual‖² / Σ SS_tot in original
units); False ("none") decomposes the raw matrix. The rank-k approximation is scored in original units with the
same R² as `regression.r2_score`.

`svd_baseline_streamed` does the same decomposition for windows that do not fit in memory (the whole
simulation): the T×T Gram matrix and the per-component energies are accumulated over chunks of particles read
from a memory-mapped array, so memory is O(T²) and never a float64 copy of the window; with held-out frames the
same pass gathers `HeldOutProducts` (C·r² + C·n_test·r), from which `svd_holdout_every_rank` scores every rank
and interpolation method in O(r²) (the explicit prediction, `svd_holdout_streamed`, costs a pass per rank).

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
SCALINGS = ("zscore", "centred", "none")
STREAM_CHUNK_BYTES = 64 * 2**20  # float64 bytes of one chunk of the streamed decomposition


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
        basis = _basis_from_gram(matrix @ matrix.T)
        return basis, basis.T @ matrix
    q, r = torch.linalg.qr(matrix)
    u, s, vh = torch.linalg.svd(r)
    return q @ u, s[:, None] * vh


def leading_temporal_basis(matrix: torch.Tensor, rank: int, passes: int = 8, oversample: int = 64,
                           seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`temporal_basis`'s leading `rank` directions (U_k, W_k = U_kᵀ·matrix) without the whole decomposition, for
    matrices where that costs minutes and gigabytes (the whole simulation: 10 000 frames of a 4-component field,
    a T×T Gram of 0.8 GB that takes 3.6e12 flops to form, or the QR and SVD of a tall 10 000 × 9 000 matrix).

    Randomised subspace iteration (Halko, Martinsson & Tropp 2011, algorithm 4.4): a Gaussian test matrix of
    rank + oversample columns, `passes` power passes re-orthonormalised each way, then the exact SVD of the matrix
    projected on the subspace found. Its directions span at most the optimal subspace, so a rank-k fit from them
    is at most the Eckart–Young optimum; with the passes and oversampling here its energy at every kept rank
    is the optimum's to 1e-13 of the total, on a spectrum that decays as slowly as 1e-6 over 1 000 directions
    (tested; 4 passes and 32 extra directions left 1e-5 there). W is exact for the basis returned, so every score
    computed from it is exact for that basis."""
    rows, cols = matrix.shape
    width = min(rank + oversample, rows, cols)
    generator = torch.Generator().manual_seed(seed)
    test = torch.randn(cols, width, dtype=matrix.dtype, generator=generator).to(matrix.device)
    subspace = torch.linalg.qr(matrix @ test)[0]
    for _ in range(passes):
        subspace = torch.linalg.qr(matrix @ torch.linalg.qr(matrix.T @ subspace)[0])[0]
    u, s, vh = torch.linalg.svd(subspace.T @ matrix, full_matrices=False)
    keep = min(rank, width)
    return subspace @ u[:, :keep], s[:keep, None] * vh[:keep]


def _basis_from_gram(gram: torch.Tensor) -> torch.Tensor:
    """Eigenvectors of a T×T Gram matrix as columns, by decreasing eigenvalue (eigh sorts ascending)."""
    return _eigen_from_gram(gram)[1]


def _eigen_from_gram(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(eigenvalues, eigenvectors as columns) of a T×T Gram matrix, by decreasing eigenvalue."""
    eigenvalues, eigenvectors = torch.linalg.eigh(gram)
    return eigenvalues.flip(-1), eigenvectors.flip(-1)


def _suffix_sums(values: torch.Tensor) -> torch.Tensor:
    """Σ_{i ≥ k} values_i along the first axis, for every k: the energy a rank-k truncation leaves, shifted by one."""
    return torch.flip(torch.cumsum(torch.flip(values, dims=[0]), dim=0), dims=[0])


def kept_rank(eigenvalues: torch.Tensor, tail_tol: float) -> int:
    """The smallest rank whose discarded energy (the eigenvalues after it) is at most tail_tol of the total: beyond
    it every rank's R² differs from 1 by less than tail_tol. All of them when tail_tol is 0."""
    energy = eigenvalues.clamp(min=0.0)
    if tail_tol <= 0 or energy.numel() == 0:
        return int(energy.numel())
    tail = _suffix_sums(energy)
    beyond = torch.cat([tail[1:], tail.new_zeros(1)])  # discarded by rank k + 1
    return int(torch.nonzero(beyond <= tail_tol * tail[0])[0]) + 1


def scaling_of(normalize: bool | str) -> str:
    """The scaling named by `normalize`: True is "zscore", False is "none", or one of SCALINGS by name."""
    if normalize is True or normalize is False:
        return "zscore" if normalize else "none"
    if normalize not in SCALINGS:
        raise ConfigError(f"unknown SVD scaling {normalize!r}; choose one of {', '.join(SCALINGS)}")
    return str(normalize)


def _zscore_stats(values: torch.Tensor, normalize: bool | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-component mean and population std over frames × particles, as `scaling_of(normalize)` asks (zero mean
    and unit std where it does not)."""
    n_components = values.shape[-1]
    scaling = scaling_of(normalize)
    zeros = torch.zeros(n_components, dtype=values.dtype, device=values.device)
    if scaling == "none":
        return zeros, torch.ones_like(zeros)
    flat = values.reshape(-1, n_components)
    mean = flat.mean(dim=0)
    if scaling == "centred":
        return mean, torch.ones_like(zeros)
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
    normalize: bool | str
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
    normalize: bool | str = True,
    device: str | torch.device = "cpu",
) -> SVDBaseline:
    """Truncated SVD of a (T, N, C) window (numpy or torch, original units), scored at every rank."""
    checked_ranks = _check_ranks(ranks)
    device = torch.device(device)
    start = time.perf_counter()
    data = _as_tensor(values, device)
    n_frames, n_particles, n_components = data.shape
    mean, std = _zscore_stats(data, normalize)
    _, coefficients = temporal_basis(((data - mean) / std).reshape(n_frames, n_particles * n_components))

    # energy[i, c] = ‖W_{i,c}‖² = s_i² ‖V_{i,c}‖²: what singular pair i carries of component c (normalised units).
    block_energy = (coefficients.reshape(-1, n_particles, n_components) ** 2).sum(dim=1)
    return _scored(block_energy, std.cpu().numpy(), _ss_tot(data), data.shape, normalize, checked_ranks, start)


def _scored(block_energy: torch.Tensor, std: np.ndarray, ss_tot: np.ndarray, shape: tuple[int, ...],
            normalize: bool | str, ranks: tuple[int, ...], start: float,
            beyond: torch.Tensor | None = None) -> SVDBaseline:
    """R² of every rank from the per-pair, per-component energies (scaled units) and SS_tot (original units).
    beyond: (C,) the energy of the pairs a truncated basis dropped (StreamedFactors.beyond), in every residual."""
    singular = block_energy.sum(dim=1).sqrt()
    tail = _suffix_sums(block_energy)
    residual = torch.cat([tail[1:], torch.zeros_like(tail[:1])])  # rank k = 1..r
    if beyond is not None:
        residual = residual + beyond
    residual_host = residual.cpu().numpy() * std**2
    r2_all = np.empty(residual_host.shape[0])
    per_component_all = np.empty(residual_host.shape)
    for index, ss_res in enumerate(residual_host):
        r2_all[index], per_component = r2_from_sums(ss_res, ss_tot)
        per_component_all[index] = per_component
    n_frames, n_particles, n_components = shape
    return SVDBaseline(
        n_frames=n_frames,
        n_particles=n_particles,
        n_components=n_components,
        normalize=normalize,
        ranks=tuple(rank for rank in ranks if rank <= r2_all.shape[0]),
        r2_all_ranks=r2_all,
        r2_per_component_all_ranks=per_component_all,
        singular_values=singular.cpu().numpy(),
        time_s=time.perf_counter() - start,
    )


def frame_moments(values: Any, frames: np.ndarray, chunk_bytes: int = STREAM_CHUNK_BYTES
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-component mean, population std and SS_tot (exactly 0 for a constant component, as in regression) over
    the given frames of a (T, N, C) array, read a few frames at a time in float64 (two passes, no cancellation)."""
    step = max(1, chunk_bytes // (8 * int(np.prod(values.shape[1:]))))
    n_components = values.shape[-1]

    def chunks():
        for lo in range(0, frames.size, step):
            yield np.asarray(values[frames[lo:lo + step]], dtype=np.float64).reshape(-1, n_components)

    count = frames.size * values.shape[1]
    mean = sum(chunk.sum(axis=0) for chunk in chunks()) / count
    ss_tot = np.zeros(n_components)
    low, high = np.full(n_components, np.inf), np.full(n_components, -np.inf)
    for chunk in chunks():
        ss_tot += ((chunk - mean) ** 2).sum(axis=0)
        low, high = np.minimum(low, chunk.min(axis=0)), np.maximum(high, chunk.max(axis=0))
    std = np.sqrt(ss_tot / count)
    return mean, std, np.where(high > low, ss_tot, 0.0)


def particle_chunks(n_frames: int, n_particles: int, n_components: int,
                    chunk_bytes: int = STREAM_CHUNK_BYTES) -> list[slice]:
    """Slices of particles whose float64 frames × particles × components block fits in chunk_bytes."""
    step = max(1, chunk_bytes // (8 * n_frames * n_components))
    return [slice(lo, min(lo + step, n_particles)) for lo in range(0, n_particles, step)]


def _add_products(accumulator: torch.Tensor, block: torch.Tensor) -> None:
    """accumulator += block·blockᵀ (float64), a torch matmul: it runs in the run's torch threads
    (mpm_inr.threads), where scipy's BLAS would start one thread per core beside a parallel round. Not float32
    (1.7× faster): its rounding floor (~6e-8·λ_1) reshuffles every eigenvector below it, which moved the tail
    singular values of a 1000-frame Jp window by orders of magnitude (R² by up to 6e-8)."""
    accumulator += block @ block.T


@dataclass(frozen=True)
class HeldOutProducts:
    """What every rank's held-out residual needs, gathered in the pass that scores the training ranks, so that
    held-out R² at all r ranks and for every interpolation method costs O(r²) after it instead of r passes.

    With X_c the held-out frames of component c (scaled by the training mean and std), W_c = Uᵀ·M_c and P the
    basis interpolated to the held-out times, the rank-k residual is
        ‖X_c − P_k W_c,k‖² = ‖X_c‖² − 2 Σ_{i≤k} p_iᵀ (X_c W_cᵀ)_i + Σ_{i,j≤k} (PᵀP)_ij (W_c W_cᵀ)_ij.
    """

    frames: np.ndarray  # the held-out rows
    energy: np.ndarray  # (C,) ‖X_c‖²
    projections: torch.Tensor  # (C, n_test, r): X_c·W_cᵀ
    pair_products: torch.Tensor  # (C, r, r): W_c·W_cᵀ


@dataclass(frozen=True)
class StreamedFactors:
    """The temporal basis of a window and what each singular pair carries of each component, with the scaling
    used: everything later passes need to score ranks or predict held-out frames without the window in memory."""

    values: Any  # (T_all, N, C) array, usually a memory map; rows `frames` are the window
    frames: np.ndarray
    normalize: bool | str
    mean: np.ndarray
    std: np.ndarray
    ss_tot: np.ndarray
    basis: torch.Tensor  # (T, r) orthonormal columns by decreasing energy
    block_energy: torch.Tensor  # (r, C)
    chunks: tuple[slice, ...]
    held_out: HeldOutProducts | None = None  # with `test_frames` given to stream_factors
    beyond: torch.Tensor | None = None  # (C,) energy of the pairs after the r kept (tail_tol), None: none dropped

    def scaled_columns(self, cols: slice, rows: np.ndarray | None = None) -> torch.Tensor:
        """The scaled matrix of `rows` (default the window's frames) restricted to the particles in `cols`:
        (rows, particles·C) float64."""
        rows = self.frames if rows is None else rows
        block = np.asarray(self.values[rows, cols], dtype=np.float64)
        scaled = (block - self.mean) / self.std
        return torch.as_tensor(scaled.reshape(rows.size, -1), device=self.basis.device)


def stream_factors(values: Any, frames: Any, normalize: bool | str = "centred", device: str | torch.device = "cpu",
                   chunk_bytes: int = STREAM_CHUNK_BYTES, test_frames: Any = None,
                   moments: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                   tail_tol: float = 0.0, min_rank: int = 0) -> StreamedFactors:
    """Decompose the rows `frames` of a (T_all, N, C) array through the T×T Gram matrix, a chunk of particles at
    a time: one pass for the Gram, one for W = Uᵀ·M (the energies and, with `test_frames`, `HeldOutProducts`).

    moments: `frame_moments` of `frames` when the caller has them (the compressors need them too; else two more
    passes). Memory beyond one chunk: the Gram and U (T² each) and, with test_frames, HeldOutProducts
    (C·r² + C·n_test·r).

    tail_tol: keep only the pairs up to `kept_rank` (the rest hold at most tail_tol of the energy), and at least
    min_rank of them; the energy of the rest per component is measured in the second pass (`beyond`), so every kept
    rank's R² is the same as with all pairs.
    The second pass costs r/T of the full one, its held-out products (r/T)²: at 10 000 frames, where the tail of a
    field's spectrum is thousands of pairs below 1e-10 of its energy, that is most of the decomposition."""
    frames = _frame_indices(frames, values.shape[0], "frames")
    n_frames, (n_particles, n_components) = frames.size, values.shape[1:]
    device = torch.device(device)
    mean, std, ss_tot = moments if moments is not None else frame_moments(values, frames, chunk_bytes)
    scaling = scaling_of(normalize)
    if scaling != "zscore":
        std = np.ones_like(std)
    if scaling == "none":
        mean = np.zeros_like(mean)
    std = np.where(std > 0, std, 1.0)
    chunks = tuple(particle_chunks(n_frames, n_particles, n_components, chunk_bytes))
    factors = StreamedFactors(values, frames, normalize, mean, std, ss_tot, torch.empty(0, device=device),
                              torch.empty(0), chunks)
    gram = torch.zeros(n_frames, n_frames, dtype=torch.float64, device=device)
    for cols in chunks:
        _add_products(gram, factors.scaled_columns(cols))
    eigenvalues, basis = _eigen_from_gram(gram)
    del gram
    full = min(n_frames, n_particles * n_components)
    rank = min(full, max(kept_rank(eigenvalues[:full], tail_tol), min_rank))
    basis = basis[:, :rank]
    factors = StreamedFactors(values, frames, normalize, mean, std, ss_tot, basis, torch.empty(0), chunks)
    block_energy, held_out, energy = _project(factors, test_frames)
    beyond = (energy - block_energy.sum(dim=0)).clamp(min=0.0) if rank < full else None
    return StreamedFactors(values, frames, normalize, mean, std, ss_tot, basis, block_energy, chunks, held_out, beyond)


def _project(factors: StreamedFactors, test_frames: Any
             ) -> tuple[torch.Tensor, HeldOutProducts | None, torch.Tensor]:
    """One pass of W = Uᵀ·M over the chunks: the energy of each pair in each component, for held-out rows their
    `HeldOutProducts`, and the window's energy per component (scaled units) that the pairs share."""
    basis, n_components = factors.basis, factors.values.shape[-1]
    rank, device = basis.shape[1], basis.device
    block_energy = torch.zeros(rank, n_components, dtype=torch.float64, device=device)
    total = torch.zeros(n_components, dtype=torch.float64, device=device)
    test = None if test_frames is None else _frame_indices(test_frames, factors.values.shape[0], "test_frames_idx")
    if test is not None:
        energy = np.zeros(n_components)
        projections = torch.zeros(n_components, test.size, rank, dtype=torch.float64, device=device)
        pair_products = torch.zeros(n_components, rank, rank, dtype=torch.float64, device=device)
    for cols in factors.chunks:
        scaled = factors.scaled_columns(cols)
        total += (scaled.reshape(scaled.shape[0], -1, n_components) ** 2).sum(dim=(0, 1))
        coefficients = (basis.T @ scaled).reshape(rank, -1, n_components)
        block_energy += (coefficients**2).sum(dim=1)
        if test is None:
            continue
        held = factors.scaled_columns(cols, test).reshape(test.size, -1, n_components)
        energy += (held**2).sum(dim=(0, 1)).cpu().numpy()
        for c in range(n_components):
            component = coefficients[:, :, c].contiguous()
            projections[c] += held[:, :, c] @ component.T
            _add_products(pair_products[c], component)
    if test is None:
        return block_energy, None, total
    return block_energy, HeldOutProducts(test, energy, projections, pair_products), total


def svd_baseline_streamed(values: Any, frames: Any, ranks: Sequence[int] = DEFAULT_RANKS,
                          normalize: bool | str = "centred", device: str | torch.device = "cpu",
                          chunk_bytes: int = STREAM_CHUNK_BYTES, test_frames: Any = None,
                          moments: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                          tail_tol: float = 0.0, min_rank: int = 0) -> tuple[SVDBaseline, StreamedFactors]:
    """`svd_baseline` of the rows `frames` of a (T_all, N, C) array that need not fit in memory (a memory map of
    the whole simulation); returns the factors too, for `svd_holdout_streamed` and (with `test_frames`, at no
    further pass) `svd_holdout_every_rank`. See `stream_factors` for `moments`."""
    checked_ranks = _check_ranks(ranks)
    start = time.perf_counter()
    factors = stream_factors(values, frames, normalize, device, chunk_bytes, test_frames, moments, tail_tol,
                             min_rank)
    shape = (factors.frames.size, *values.shape[1:])
    return _scored(factors.block_energy, factors.std, factors.ss_tot, shape, normalize, checked_ranks, start,
                   factors.beyond), factors


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
    normalize: bool | str = True,
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


def _held_out_basis(factors: StreamedFactors, basis: torch.Tensor, test_frames_idx: Any, method: str,
                    t: Any) -> tuple[np.ndarray, torch.Tensor]:
    """The checked held-out rows and the temporal basis (columns of `basis`) interpolated to their times `t`
    (default the row indices)."""
    if method not in METHODS:
        raise ConfigError(f"unknown interpolation method {method!r}; choose one of {', '.join(METHODS)}")
    values, train = factors.values, factors.frames
    test = _frame_indices(test_frames_idx, values.shape[0], "test_frames_idx")
    if np.intersect1d(train, test).size:
        raise ConfigError("train and test frames overlap: held-out frames must never be seen in training")
    times = np.arange(values.shape[0], dtype=np.float64) if t is None else np.asarray(t, dtype=np.float64)
    order = np.argsort(times[train], kind="stable")
    interpolated = interpolate(times[train][order], basis.cpu().numpy()[order], times[test], method)
    return test, torch.as_tensor(interpolated, device=basis.device)


def svd_holdout_streamed(factors: StreamedFactors, test_frames_idx: Any, ranks: Sequence[int] = DEFAULT_RANKS,
                         method: str = "linear", t: Any = None) -> SVDHoldout:
    """`svd_holdout` from streamed factors of the training frames: the basis is interpolated to the held-out rows
    `test_frames_idx` of the same array (times `t`, default the row indices) and the prediction scored a chunk of
    particles at a time."""
    start = time.perf_counter()
    values = factors.values
    usable = tuple(rank for rank in _check_ranks(ranks) if rank <= factors.basis.shape[1])
    basis = factors.basis[:, :max(usable, default=0)]
    test, test_basis = _held_out_basis(factors, basis, test_frames_idx, method, t)
    n_components = values.shape[-1]
    _, _, ss_tot = frame_moments(values, test)
    ss_res = {rank: np.zeros(n_components) for rank in usable}
    for cols in factors.chunks:
        coefficients = basis.T @ factors.scaled_columns(cols)
        truth = np.asarray(values[test, cols], dtype=np.float64)
        for rank in usable:
            prediction = (test_basis[:, :rank] @ coefficients[:rank]).cpu().numpy().reshape(truth.shape)
            residual = (prediction * factors.std + factors.mean - truth).reshape(-1, n_components)
            ss_res[rank] += (residual * residual).sum(axis=0)
    scored = {rank: r2_from_sums(ss_res[rank], ss_tot) for rank in usable}
    n_values = test.size * int(np.prod(values.shape[1:]))
    return SVDHoldout(
        method=method,
        n_train_frames=int(factors.frames.size),
        n_test_frames=int(test.size),
        ranks=usable,
        r2={rank: scored[rank][0] for rank in usable},
        r2_per_component={rank: scored[rank][1] for rank in usable},
        mse={rank: float(ss_res[rank].sum()) / n_values for rank in usable},
        time_s=time.perf_counter() - start,
    )


def svd_holdout_every_rank(factors: StreamedFactors, test_frames_idx: Any, method: str = "linear",
                           t: Any = None, test_ss_tot: np.ndarray | None = None) -> SVDHoldout:
    """`svd_holdout_streamed` at every rank 1..r at once, from `HeldOutProducts` (the factors' own when they were
    streamed with these held-out rows, else one more pass): O(r²) per method after the pass, where the explicit
    prediction costs r passes over the held-out frames. test_ss_tot: `frame_moments(values, test)[2]` when the
    caller has it. Equals the explicit residual up to float64 rounding of the expansion (HeldOutProducts), whose
    terms are at most ~‖X_c‖² ≈ SS_tot: an absolute error in R² of order 1e-16 per rank summed, whatever the
    residual (1.2e-13 at most against the explicit prediction on 1000 frames of discs_3types Jp and F)."""
    start = time.perf_counter()
    values, train, basis = factors.values, factors.frames, factors.basis
    rank = basis.shape[1]
    test, test_basis = _held_out_basis(factors, basis, test_frames_idx, method, t)
    held_out = factors.held_out
    if held_out is None or not np.array_equal(held_out.frames, test):
        held_out = _project(factors, test)[1]
    n_components = values.shape[-1]
    ss_tot = frame_moments(values, test)[2] if test_ss_tot is None else test_ss_tot
    basis_products = torch.zeros(rank, rank, dtype=torch.float64, device=basis.device)
    _add_products(basis_products, test_basis.T.contiguous())  # PᵀP
    ss_res = np.zeros((rank, n_components))
    for c in range(n_components):
        cross = torch.cumsum((test_basis * held_out.projections[c]).sum(dim=0), dim=0)  # Σ_{i≤k} p_iᵀ X_c w_i
        both = torch.triu(basis_products * held_out.pair_products[c])  # symmetric: Σ_{i,j≤k} from i ≤ j
        fitted = torch.cumsum(2.0 * both.sum(dim=0) - torch.diagonal(both), dim=0)
        residual = (held_out.energy[c] - 2.0 * cross + fitted).clamp(min=0.0) * float(factors.std[c]) ** 2
        ss_res[:, c] = residual.cpu().numpy()
    scored = [r2_from_sums(ss_res[k], ss_tot) for k in range(rank)]
    n_values = test.size * int(np.prod(values.shape[1:]))
    ranks = tuple(range(1, rank + 1))
    return SVDHoldout(
        method=method,
        n_train_frames=int(train.size),
        n_test_frames=int(test.size),
        ranks=ranks,
        r2={k: scored[k - 1][0] for k in ranks},
        r2_per_component={k: scored[k - 1][1] for k in ranks},
        mse={k: float(ss_res[k - 1].sum()) / n_values for k in ranks},
        time_s=time.perf_counter() - start,
    )
