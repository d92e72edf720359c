"""The truncated SVD stored the way our codec stores a model: the baseline at the same quantisation and lzma.

A float32 SVD (`mpm_inr.baselines`) pays 32 bits per number; our codec pays a few. To compare file sizes fairly
the SVD gets the same tools: per component centred (the best rank-k fit for the reported R², Eckart–Young), its
temporal factor U_k (T x k) stored as per-direction integers like our network weights (`quantise_tensor`, the
codec's candidate bits), its coefficients W (k x N·C) re-solved for the stored U_k, then rounded to multiples of
one step found by the same search on the decoded R² (as our codes are), and the whole written as a real file in
our container (svd_file: header, checksum, metadata against the format's dictionary, one LZMA payload of byte
planes), the coefficients in whichever layout packs smaller (svd_file.SVDParts.layout_bytes). The smallest file
over the rank and the bits that reaches the target wins (past DENSE_RANKS the ranks are tried on a grid refined
around its best: `rank_stride`).

Candidates are ranked by a fast LZMA size (`format.screen_size`, as our encoder ranks its own), and only those
within `encode.SCREEN_MARGIN` of the smallest are compressed for real: at 1 000 frames of C the search had spent
13 minutes per seed and target on 246 exact sizes of up to 3.3 MB each.

A rank's candidate bits are encoded in as many threads as the process's torch CPU threads (`process_workers`): lzma
releases the GIL, and it is most of the search's time at long windows (C, 1 000 frames, seed 0, R² 0.995: 613 s on
one thread, 358 s of it lzma on 710 arrays of rank 96; C, 400 frames: 138.6 s on one thread, 103.7 s on two, same
file, on the 2-core VM). The candidates and the winner are the serial ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mpm_inr.codec import format
from mpm_inr.codec.encode import (
    DECODE_MARGIN,
    SCREEN_MARGIN,
    constant_particles,
    other_centres,
    resting_value,
)
from mpm_inr.codec.quantise import (
    dequantise_tensor,
    quantise_tensor,
    quantise_uniform,
)
from mpm_inr.codec.step_search import largest_beyond, largest_reaching, scan_points
from mpm_inr.codec.svd_file import SVDParts, interpolated
from mpm_inr.codec.window_meta import window_section
from mpm_inr.metrics.interpolate import METHODS as INTERPOLATIONS
from mpm_inr.metrics.interpolate import interpolate
from mpm_inr.metrics.regression import r2_score
from mpm_inr.metrics.svd import leading_temporal_basis, temporal_basis
from mpm_inr.threads import process_workers

DEFAULT_BITS = (16, 8, 6, 5, 4, 3)
#: beyond this many frames (or columns), the search reads the leading directions alone (`leading_temporal_basis`),
#: LEADING_START of them first, doubled while the search needs more: the whole decomposition of the whole simulation
#: (10 000 frames) took minutes and, two fields at once, more than the VM's 23 GB
FULL_BASIS_MAX = 2048
LEADING_START = 64
#: a budget search stops once the finest fitting code step is known to this many octaves (0.4 %)
STEP_TOLERANCE_OCTAVES = 24 / 4096


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
    mean: np.ndarray  # (C,) float32: the centre the window was factored about
    parts: SVDParts  # what its file stores
    window: dict[str, Any]  # the window section its file carries (window_meta.window_section)
    centred_on: str = "mean"  # or "rest", the value many particles rest at, or "zero" (Centred)

    def write(self, path: Any) -> int:
        """The file on disk (its bytes are n_bytes)."""
        return self.parts.write(path, self.window)

    def decode(self, n_particles: int) -> np.ndarray:
        """(T, N, C) float64 values in original units."""
        flat = self.temporal.astype(np.float64) @ self.coefficients
        return flat.reshape(flat.shape[0], n_particles, -1) + self.mean.astype(np.float64)


@dataclass
class Centred:
    """The (T, N·C) float64 window less a centre per component, factored by the rival. The centre is the
    per-component mean (the best rank-k fit for the reported R², Eckart–Young), where many particles rest at
    one value that value, or zero (`centres`): the codec tries them too, and the rival's rest-centred file is
    the smaller one wherever the resting particles' error dominates (Jp at 100 frames: ~15 % smaller), its
    uncentred one on S and C at 1 000 frames, where many particles stay near zero without resting there
    (encode.other_centres)."""

    name: str  # "mean", "rest" or "zero"
    centre: np.ndarray  # (C,) float32, stored in the file
    matrix: torch.Tensor  # (T, N·C) float64
    sumsq: float  # ‖matrix‖², what the residual sums start from
    ss_tot: float  # the window's Σ_c SS_tot,c about the component means, what R² divides by
    window: dict[str, Any]  # the window section a file of it carries (window_meta.window_section)


def bare_window(n_frames: int, n_particles: int, n_components: int, held_out: np.ndarray | None = None
                ) -> dict[str, Any]:
    """The window section of a window known only by its shape (no field name, frames from 0), for files sized
    without a dataset: a named window's differs by a few bytes of metadata."""
    mask = np.zeros(n_frames, dtype=bool) if held_out is None else held_out
    return window_section("", 0, n_frames, n_particles, n_components, mask, 1.0)


def centres(values: np.ndarray, window: dict[str, Any] | None = None) -> Iterator[Centred]:
    """The window of (T, N, C) `values` centred on its mean, where many particles rest at one value
    (encode.resting_value) on that one, and on zero (encode.other_centres): each a float64 copy of the window,
    made when iterated. `window`: the window section its files carry (bare_window of `values` by default)."""
    n_frames, n_particles, n_comp = values.shape
    window = bare_window(n_frames, n_particles, n_comp) if window is None else window
    mean = values.reshape(-1, n_comp).mean(axis=0, dtype=np.float64).astype(np.float32)
    rest = resting_value(values[0], constant_particles(values))
    named = other_centres([("mean", mean)] + ([] if rest is None else [("rest", rest.astype(np.float32))]))
    ss_tot = None
    for i, (name, centre) in enumerate(named):
        matrix, sumsq = _centred(values.reshape(n_frames, -1), centre, n_particles)
        if i == len(named) - 1:
            del values  # a caller's slice (the held-out rival's training frames: 1.1 GB of F over the whole
            # simulation) is not held through the last search
        ss_tot = sumsq if ss_tot is None else ss_tot  # the mean comes first
        yield Centred(name, centre, matrix, sumsq, ss_tot, window)
        del matrix


def quantised_svd(values: np.ndarray, target_r2: float, bits: tuple[int, ...] = DEFAULT_BITS,
                  max_rank: int | None = None, window: dict[str, Any] | None = None) -> QuantisedSVD | None:
    """The smallest quantised, lzma-coded truncated SVD of (T, N, C) `values` whose decoded R² reaches target_r2
    (R² = 1 - Σ_c SS_res,c / Σ_c SS_tot,c, as every run reports it), over its centres (`centres`); None if no
    rank up to max_rank does. `window`: the window section its file carries (bare_window by default)."""
    best = None
    for centred in centres(np.asarray(values), window):
        point = _smallest_about(centred, target_r2, bits, max_rank)
        del centred  # before the next centre's copy of the window is made
        if point is not None and (best is None or point.n_bytes < best.n_bytes):
            best = point
    return best


def _smallest_about(centred: Centred, target_r2: float, bits: tuple[int, ...],
                    max_rank: int | None) -> QuantisedSVD | None:
    """quantised_svd about one centre."""
    goal = 1.0 - (1.0 - target_r2) * (1.0 - DECODE_MARGIN)  # the codec's margin, so the decoded file meets it
    shape = centred.matrix.shape
    full = min(shape) <= FULL_BASIS_MAX
    directions = min(shape) if full else LEADING_START
    best, start = None, 1
    while True:
        basis, coefficients = (temporal_basis(centred.matrix) if full
                               else leading_temporal_basis(centred.matrix, directions))
        # no rank-k file beats the float rank-k SVD (Eckart–Young), so the search starts where that reaches the goal
        float_r2 = 1.0 - (centred.sumsq - torch.cumsum((coefficients ** 2).sum(dim=1), 0)) / centred.ss_tot
        first = int(torch.searchsorted(float_r2, torch.tensor([goal], dtype=float_r2.dtype))[0]) + 1
        limit = min(max_rank or basis.shape[1], basis.shape[1])
        found, stopped = _smallest_file(centred, basis, max(first, start), limit, bits, goal)
        best = min((p for p in (best, found) if p is not None), key=lambda p: p.n_bytes, default=None)
        whole = full or directions >= min(shape) or (max_rank is not None and directions >= max_rank)
        if whole or stopped:  # every rank it may need was there, or it stopped past its best
            return best
        if best is not None:  # on more directions the search goes on from its best, not from the first rank again
            start = best.rank - rank_stride(best.rank)
        directions = min(2 * max(directions, first), min(shape))


@dataclass(frozen=True)
class _Candidate:
    """One rank and bits at its coarsest passing step, sized by the fast screen until it is a finalist. It keeps
    the integers, not the decoded float64 coefficients: a C search at 1 000 frames screens hundreds of them."""

    layouts: tuple[int, int]  # screened bytes, direction-major and particle-major
    rank: int
    bits: int
    step: float
    r2: float
    temporal: np.ndarray  # (T, k) float32, the decoded U_k
    parts: SVDParts
    window: dict[str, Any]
    centred_on: str

    @property
    def screened(self) -> int:
        return min(self.layouts)

    def exact(self) -> QuantisedSVD:
        parts = self.parts
        return QuantisedSVD(self.rank, self.bits, self.step, min(parts.layout_bytes(self.window)), self.r2,
                            self.temporal, parts.ints * self.step, parts.centre, parts, self.window, self.centred_on)


def _smallest_file(centred: Centred, basis: torch.Tensor, first: int, limit: int, bits: tuple[int, ...],
                   goal: float) -> tuple[QuantisedSVD | None, bool]:
    """The smallest file over ranks first..limit and `bits` (None if none reaches the goal), and whether the search
    stopped before limit: 3 ranks tried past its best screened size, where more rank costs more than its coarser
    step saves. It tries every `rank_stride(rank)`-th rank, refines the best at halving strides, then walks from it
    one rank at a time each way until 3 in a row are no smaller (below DENSE_RANKS the walk reads only sizes it has).
    The candidates within SCREEN_MARGIN of the smallest screened size are compressed for real, each also at the
    largest passing step past its own where one is (_looked_past)."""
    found: list[_Candidate] = []
    sizes: dict[int, float] = {}  # rank -> its smallest screened size (inf where no bits reach the goal)
    steps: dict[int, float] = {}  # the last rank's step at each bits: the next rank's search starts there
    projections = {b: ProjectedDirections(centred.matrix) for b in bits}  # one per precision (and thread)
    with ThreadPoolExecutor(max_workers=max(1, min(process_workers(), len(bits)))) as pool:

        def size(rank: int) -> float:
            """Rank `rank` at every bits, encoded once: its smallest screened size; the finalists kept."""
            nonlocal found
            if rank not in sizes:
                tried = [c for c in pool.map(lambda b: _encode_rank(centred, basis[:, :rank], b, goal, steps.get(b),
                                                                    projections[b]), bits) if c is not None]
                steps.update((c.bits, c.step) for c in tried)
                sizes[rank] = min((c.screened for c in tried), default=math.inf)
                smallest = min(sizes.values())
                found = [c for c in found + tried if c.screened <= smallest * (1 + SCREEN_MARGIN)]
            return sizes[rank]

        def walked(start: int, direction: int, best: int, patience: int) -> tuple[int, bool]:
            """From `start` one rank at a time `direction` (direction 0: rank_stride(rank) up) until `patience`
            ranks in a row reaching the goal are no smaller than the best: (the best rank, whether that stopped it
            before the end of the range)."""
            rank, misses = start, 0
            while first <= rank <= limit:
                if rank == best or size(rank) < size(best):
                    best, misses = rank, 0
                elif size(rank) < math.inf and (misses := misses + 1) >= patience:
                    return best, True
                rank += direction or rank_stride(rank)
            return best, False

        if first > limit:
            return None, False
        best, stopped = walked(first, 0, first, 3)
        width = rank_stride(best)
        while width > 1:  # the grid's best refined: the ranks halfway to its neighbours, and so on down to 1
            width //= 2
            best = min((best, best - width, best + width), key=lambda r: size(r) if first <= r <= limit else math.inf)
        if math.isfinite(size(best)):  # where more rank stops paying is the last walk's to say
            best = walked(best - 1, -1, best, 3)[0]
            best, stopped = walked(best + 1, 1, best, 3)
        again = [_looked_past(centred, basis, candidate, goal, projections[candidate.bits]) for candidate in found]
        found += [candidate for candidate, first in zip(again, found, strict=True) if candidate is not first]
        exact = list(pool.map(_Candidate.exact, found))
    return min(exact, key=lambda p: p.n_bytes, default=None), stopped  # ties: the first found


def _looked_past(centred: Centred, basis: torch.Tensor, candidate: _Candidate, goal: float,
                 projections: ProjectedDirections) -> _Candidate:
    """A finalist at the largest passing step past its own (step_search.largest_beyond), as the codec's
    finalists are (encode.looked_past), where its codes are few enough to scan (step_search.scan_points)."""
    if not scan_points(candidate.parts.ints.size):
        return candidate
    again = _encode_rank(centred, basis[:, :candidate.rank], candidate.bits, goal, projections=projections,
                         past=candidate.step)
    return candidate if again is None or again.step <= candidate.step else again


class ProjectedDirections:
    """The window projected on the stored temporal directions of one precision, kept across ranks: each
    direction is quantised with its own scale, so rank k + 1's stored U is rank k's and one more column, and
    only that column is projected (over the whole simulation one rank's projection of S on ~170 directions is
    10^11 multiply-adds, ~1 minute on one thread, and the search tries ~10 ranks at each of 6 precisions). A
    column that differs from the one kept (the scales' fp16 or float32 storage is chosen for all directions
    together) is projected afresh, and every one after it."""

    def __init__(self, matrix: torch.Tensor) -> None:
        self.matrix = matrix
        self.columns: torch.Tensor | None = None  # (T, j) float64, the last stored directions
        self.rows: torch.Tensor | None = None  # (j, N·C) float64, the window projected on them

    def projected(self, temporal: torch.Tensor) -> torch.Tensor:
        """(k, N·C) temporalᵀ @ matrix for (T, k) float64 `temporal`."""
        kept = 0
        if self.columns is not None:
            shared = min(temporal.shape[1], self.columns.shape[1])
            same = (self.columns[:, :shared] == temporal[:, :shared]).all(dim=0)
            kept = shared if bool(same.all()) else int(torch.argmin(same.to(torch.int8)))
        assert self.rows is not None or kept == 0
        new = self.project(temporal[:, kept:])
        rows = torch.cat([self.rows[:kept], new]) if kept else new
        self.columns, self.rows = temporal, rows
        return rows

    def project(self, columns: torch.Tensor) -> torch.Tensor:
        """(j, N·C) columnsᵀ @ matrix: the one product, the search's cost over long windows."""
        return columns.T @ self.matrix


def _encode_rank(centred: Centred, basis: torch.Tensor, bits: int, goal: float, guess: float | None = None,
                 projections: ProjectedDirections | None = None, past: float | None = None) -> _Candidate | None:
    """Rank k at these bits: the stored U_k, W re-solved for it, the largest step reaching goal (searched from
    `guess`, the step of a neighbouring rank, where given; with `past`, a passing step found before, the largest
    passing one past it: largest_beyond), its screened size. `projections` keeps the window's projections on
    this precision's directions from rank to rank."""
    stored_u = quantise_tensor(basis.T.numpy(), bits)  # one scale per direction (a row of U_kᵀ)
    temporal = dequantise_tensor(stored_u).T  # (T, k) float32, what the decoder multiplies by
    u = torch.from_numpy(temporal.astype(np.float64))
    gram = u.T @ u
    projected = u.T @ centred.matrix if projections is None else projections.projected(u)  # (k, N·C)
    coefs = torch.linalg.solve(gram, projected)  # least squares for the stored U_k
    coefs_np, projected_np, gram_np = coefs.numpy(), projected.numpy(), gram.numpy()
    mean = centred.centre

    def r2_at(step: float) -> float:
        step = stored_step(step)
        decoded = quantise_uniform(coefs_np, step) * step
        return 1.0 - _ss_res(decoded, projected_np, gram_np, centred.sumsq) / centred.ss_tot

    if past is not None:
        step = largest_beyond(r2_at, goal, past, points=scan_points(coefs_np.size))
    elif r2_at(1e-12 * max(float(np.abs(coefs_np).max()), 1e-30)) < goal:
        return None  # this rank at these bits cannot reach the goal at any step
    else:
        step = largest_reaching(r2_at, goal, guess or float(np.abs(coefs_np).max()) / 64)
    if step is None:
        return None
    step = stored_step(step)
    parts = SVDParts(stored_u, quantise_uniform(coefs_np, step), step, mean)
    return _Candidate(parts.layout_bytes(centred.window, screen=True), int(basis.shape[1]), bits, step, r2_at(step),
                      temporal, parts, centred.window, centred.name)


def stored_step(step: float) -> float:
    """The code step as a file stores it (float32): the search scores what the decoder will multiply by."""
    return float(np.float32(step))


@dataclass(frozen=True)
class HeldOutSVD:
    """The quantised SVD file within a byte budget that predicts the held-out frames best."""

    rank: int
    bits: int
    step: float
    n_bytes: int
    r2: float  # decoded at the training frames
    holdout_r2: float  # decoded at the held-out frames: the temporal factors interpolated there
    interpolation: str  # which interpolation of the temporal factors gave it (interpolate.METHODS)
    centred_on: str = "mean"  # or "rest" or "zero" (Centred)


def quantised_svd_holdout(values: np.ndarray, train: np.ndarray, test: np.ndarray, budget_bytes: int,
                          bits: tuple[int, ...] = (16, 8), max_rank: int | None = None,
                          window: dict[str, Any] | None = None) -> HeldOutSVD | None:
    """The held-out rival of a codec file of `budget_bytes`: the truncated SVD of the training frames of (T, N, C)
    `values`, stored as quantised_svd stores it, its temporal factors interpolated (linear or natural cubic) to
    the `test` frames. Over ranks (up to max_rank, None: every rank the window has), temporal-factor bits and
    code steps whose file fits the budget, the best held-out R² (pooled over components, original units). None
    if not even a rank-1 file fits. `window`: the window section its file carries (bare_window, the `test`
    frames held out, by default).

    The finest step that fits is the best one for the training frames. Ranks are tried one by one up to
    DENSE_RANKS, then on a grid of 1/RANK_GRID of the rank (a C file at 1 000 frames wants rank 100-150, and each
    rank costs a few whole-file compressions), stopping three grid points past the best; the grid is then refined
    around the best by halving its stride: the held-out R² rises with the rank until the budget coarsens the code
    step, then falls, so the refined grid lands on the rank-by-rank search's best or its neighbour. The ranks are
    searched at the fewest of `bits`; more bits are searched in full only where they beat it at its best rank:
    at small budgets they cost bytes the codes then lack (C, 1 000 frames, seed 1, 255 kB: 16 bits reach 0.99628
    at rank 36, 8 bits 0.99668 there and 0.99676 at rank 48: the search took 136 s instead of 293), near R² 1
    the fewest bits set the floor. Each rank's step search starts where the last two ranks' steps point
    (step_guess). Beyond FULL_BASIS_MAX frames only the leading directions are
    decomposed, widened as the search reaches them (until 2026-12-05 the search stopped at rank 64, where the C
    rival at 1 000 frames was still improving)."""
    values = np.asarray(values)
    test_values = values[test].astype(np.float64)
    t_train, t_test = np.asarray(train, dtype=np.float64), np.asarray(test, dtype=np.float64)
    if window is None:
        held_out = np.zeros(values.shape[0], dtype=bool)
        held_out[test] = True
        window = bare_window(*values.shape, held_out)
    best = None
    for centred in centres(values[train], window):
        point = _best_holdout_about(centred, t_train, t_test, test_values, budget_bytes, bits, max_rank)
        del centred  # before the next centre's copy of the training frames is made
        if _better(point, best):
            best = point
    return best


def _best_holdout_about(centred: Centred, t_train: np.ndarray, t_test: np.ndarray, test_values: np.ndarray,
                        budget_bytes: int, bits: tuple[int, ...], max_rank: int | None) -> HeldOutSVD | None:
    """quantised_svd_holdout about one centre."""
    shape = centred.matrix.shape
    limit = min(max_rank or min(shape), min(shape))
    full = min(shape) <= FULL_BASIS_MAX
    basis = (temporal_basis(centred.matrix)[0] if full
             else leading_temporal_basis(centred.matrix, min(LEADING_START, limit))[0])
    points: dict[tuple[int, int], HeldOutSVD | None] = {}
    found: dict[int, dict[int, float]] = {b: {} for b in bits}  # bits -> rank -> log2 of the step found

    def fit(rank: int, b: int) -> HeldOutSVD | None:
        """The point of `rank` at `b` bits (None: no file of it fits), each computed once."""
        nonlocal basis
        if (rank, b) not in points:
            if rank > basis.shape[1]:  # the leading directions so far are too few: widen them
                basis = leading_temporal_basis(centred.matrix, min(max(2 * basis.shape[1], rank), limit))[0]
            point = _fit_budget(centred, basis[:, :rank], b, budget_bytes, t_train, t_test, test_values,
                                step_guess(found[b], rank))
            if point is not None:
                found[b][rank] = math.log2(point.step)
            points[rank, b] = point
        return points[rank, b]

    def search(b: int) -> HeldOutSVD | None:
        """The best rank at `b` bits: the grid, then its refinement around the best."""
        best, rank, misses = None, 1, 0
        while rank <= limit:
            point = fit(rank, b)
            if point is None:
                break  # a higher rank costs more bytes at every step: none fits either
            if _better(point, best):
                best, misses = point, 0
            elif (misses := misses + 1) >= 3:
                break
            rank += rank_stride(rank)
        stride = rank_stride(best.rank) if best is not None else 1
        while best is not None and stride > 1:
            stride //= 2
            for neighbour in (best.rank - stride, best.rank + stride):
                if 1 <= neighbour <= limit and _better(point := fit(neighbour, b), best):
                    best = point
        return best

    best = search(min(bits))
    for b in sorted(set(bits) - {min(bits)}):  # more bits searched in full only where they win at the best rank
        if best is not None and _better(at_best := fit(best.rank, b), best):
            best = max((at_best, search(b)), key=lambda p: -math.inf if p is None else p.holdout_r2)
    if best is not None and best.n_bytes <= JITTER_SCAN_MAX_BYTES:
        scanned = _fit_budget(centred, basis[:, :best.rank], best.bits, budget_bytes, t_train, t_test, test_values,
                              best.step, scan=JITTER_SCAN_POINTS)
        best = scanned if _better(scanned, best) else best
    return best


#: a small file's LZMA size jitters with its step, by up to 5 % (Jp, 100 frames, held out, seed 1, rank 1 at 8
#: bits: 1 030 B at step 9.3, 1 117 B at 9.8, 1 028 B at 9.9), and its metadata with the step's digits (36-41 B),
#: so the budget search's finest fitting step need not be the finest that fits, nor the best (uncentred, every
#: code non-zero, R² 0.99395 at step 8.35 and 0.99405 at 8.5): at the best rank and bits the search then tries
#: JITTER_SCAN_POINTS finer steps over JITTER_SCAN_OCTAVES and keeps the best that fits (where the file is small:
#: each try is a compression)
JITTER_SCAN_MAX_BYTES = 1 << 16
JITTER_SCAN_POINTS = 64
JITTER_SCAN_OCTAVES = 0.5


#: the held-out rival's search tries every rank up to DENSE_RANKS, then every (rank // RANK_GRID)-th: at 1 000
#: frames of C a rank costs 10-25 s (two bits, 10-13 whole-file LZMA sizes of 1.45 MB each), and until 2026-12-05
#: ranks 1-64 were all tried (DENSE_RANKS 64, RANK_GRID 16: over 30 min for one budget). So does the search at a
#: target (_smallest_file), refined around the grid's best and walked from there rank by rank: rank by rank from
#: the float SVD's first rank reaching the goal, 3 ranks past its best, it stopped where the LZMA sizes jitter (C,
#: 1 000 frames, seed 0, R² 0.995: rank 104, 304 552 B, where rank 112 makes 302 576 B), and over the whole
#: simulation, C's first rank ~290 at 12 fast-LZMA sizes of ~15 MB each, it ran over 2 h unfinished (2026-12-07)
DENSE_RANKS = 16
RANK_GRID = 8


def _better(point: HeldOutSVD | None, than: HeldOutSVD | None) -> bool:
    return point is not None and (than is None or point.holdout_r2 > than.holdout_r2)


def step_guess(found: dict[int, float], rank: int) -> float | None:
    """Where the step of `rank` should be, from log2 of the steps found at other ranks: extrapolated from the two
    nearest below it (a file's step coarsens about linearly with its rank at a fixed budget, C at 1 000 frames
    by ~0.13 octave a rank), the nearest one's alone if there is one. Its search then starts ~0.1 octave from
    the answer instead of ~0.5 (C, 1 000 frames, seed 1, 255 kB: 9-10 whole-file sizes per rank instead of 11)."""
    below = sorted(r for r in found if r < rank)[-2:]
    if not below:
        return 2.0 ** found[min(found)] if found else None
    if len(below) == 1:
        return 2.0 ** found[below[0]]
    (r0, r1), (x0, x1) = below, (found[below[0]], found[below[1]])
    return 2.0 ** (x1 + (x1 - x0) / (r1 - r0) * (rank - r1))


def rank_stride(rank: int) -> int:
    """The step from `rank` to the next rank the rivals' searches try (at a target and within a budget)."""
    return 1 if rank < DENSE_RANKS else max(1, rank // RANK_GRID)


def _fit_budget(centred: Centred, basis: torch.Tensor, bits: int, budget: int, t_train: np.ndarray,
                t_test: np.ndarray, test_values: np.ndarray, guess: float | None = None, scan: int = 0
                ) -> HeldOutSVD | None:
    """Rank k at these bits: the finest code step whose file fits `budget` (searched from `guess`, e.g. the
    previous rank's step), scored on the held-out frames. The search sizes the coefficients in the layout that
    screens smaller at the guess, then goes on in the other where that packs the step found smaller (the fast
    screen misranks the layouts by ~1 % on C). A file is sized with the larger of its metadata naming either
    interpolation, so whichever it keeps fits. With `scan`, that many finer steps over JITTER_SCAN_OCTAVES are
    tried after the search, and of those that fit the one predicting the held-out frames best is kept: a small
    file's size jitters with its step, and with few codes its R² too (JITTER_SCAN_MAX_BYTES)."""
    stored_u = quantise_tensor(basis.T.numpy(), bits)
    temporal = dequantise_tensor(stored_u).T.astype(np.float64)  # (T_train, k)
    u = torch.from_numpy(temporal)
    gram, projected = u.T @ u, u.T @ centred.matrix
    coefs = torch.linalg.solve(gram, projected).numpy()  # (k, N·C), least squares for the stored U_k
    mean = centred.centre

    def parts(log2_step: float, interpolation: str = INTERPOLATIONS[0]) -> SVDParts:
        step = stored_step(2.0 ** log2_step)
        return SVDParts(stored_u, quantise_uniform(coefs, step), step, mean, interpolation)

    coarsest = math.log2(4.0 * max(float(np.abs(coefs).max()), 1e-30))  # every code rounds to 0
    start = min(math.log2(guess), coarsest) if guess else coarsest - 8
    by_row, by_column = parts(start).layout_bytes(centred.window, screen=True)
    first = bool(by_column < by_row)  # transposed or not: the layout screening smaller is searched first
    payloads: dict[tuple[bool, float], int] = {}

    def size(transpose: bool, log2_step: float, interpolation: str | None = None) -> int:
        """The file's bytes naming `interpolation` (None: the larger of any), its payload compressed once per
        layout and step."""
        meta, blobs = parts(log2_step).contents(centred.window, transpose)
        if (transpose, log2_step) not in payloads:
            payloads[transpose, log2_step] = len(format.payload(blobs))
        named = INTERPOLATIONS if interpolation is None else (interpolation,)
        meta_bytes = max(len(format.meta_blob(interpolated(meta, method))) for method in named)
        return format.file_bytes(meta_bytes, payloads[transpose, log2_step])

    if min(size(first, coarsest), size(not first, coarsest)) > budget:
        return None
    found, layout, n_bytes = coarsest, first, size(first, coarsest)
    for transpose in (first, not first):  # the other layout searched on only where it packs the step found smaller
        if size(transpose, found) <= budget and (transpose == first or size(transpose, found) < n_bytes):
            found = finest_fitting(lambda x, tr=transpose: size(tr, x), budget, found if found < coarsest else start,
                                   coarsest - 24, coarsest, STEP_TOLERANCE_OCTAVES)
            layout, n_bytes = transpose, size(transpose, found)
    projected_np, gram_np = projected.numpy(), gram.numpy()

    def scored(log2_step: float) -> HeldOutSVD:
        """The file at this step, its interpolation the better one at the held-out frames."""
        chosen = parts(log2_step)
        decoded = chosen.ints * chosen.step
        train_r2 = 1.0 - _ss_res(decoded, projected_np, gram_np, centred.sumsq) / centred.ss_tot
        scores = {}
        for method in INTERPOLATIONS:
            at_test = interpolate(t_train, temporal, t_test, method) @ decoded
            predicted = at_test.reshape(test_values.shape) + mean.astype(np.float64)
            scores[method] = r2_score(test_values, predicted)
        method = max(scores, key=scores.get)
        return HeldOutSVD(int(basis.shape[1]), bits, chosen.step, size(layout, log2_step, method), train_r2,
                          scores[method], method, centred.name)

    finer = [float(x) for x in found - JITTER_SCAN_OCTAVES * np.arange(1, scan + 1) / max(scan, 1)]
    return max((scored(x) for x in [found, *finer] if size(layout, x) <= budget), key=lambda p: p.holdout_r2)


def finest_fitting(size: Callable[[float], int], budget: int, start: float, lowest: float, highest: float,
                   tolerance: float) -> float:
    """The smallest x in [lowest, highest] with size(x) <= budget, to within `tolerance`, for a size that falls
    as x grows (a file's bytes against log2 of its code step; size(highest) must fit). Secant steps from `start`
    until the answer is bracketed, then regula falsi (Illinois): a file's bytes are nearly linear in log2 of
    its step, so 4-6 sizes do what a bisection over 24 octaves did in 14 (each a whole-file LZMA)."""
    hi, f_hi = highest, size(highest) - budget
    lo, f_lo = None, 0.0
    x, previous = min(max(start, lowest), highest), (hi, f_hi)
    while lo is None:  # walk from start until one size fits and one does not
        f = size(x) - budget
        if f > 0:
            lo, f_lo = x, f
            break
        hi, f_hi = x, f
        if x <= lowest:
            return lowest
        slope = (f - previous[1]) / (x - previous[0]) if x != previous[0] else 0.0
        jump = f / slope if slope < 0 else 1.0  # the secant's root lies below x: f <= 0 and size falls with x
        previous, x = (x, f), max(lowest, x - min(max(jump, 0.05), 8.0))
    side = 0
    while hi - lo > tolerance:
        x = hi - f_hi * (hi - lo) / (f_hi - f_lo)
        x = min(max(x, lo + tolerance / 2), hi - tolerance / 2)
        f = size(x) - budget
        if f <= 0:
            hi, f_hi = x, f
            f_lo = f_lo / 2 if side == 1 else f_lo  # Illinois: the stale end's weight halves
            side = 1
        else:
            lo, f_lo = x, f
            f_hi = f_hi / 2 if side == -1 else f_hi
            side = -1
    return hi


def _centred(flat: np.ndarray, mean: np.ndarray, n_particles: int) -> tuple[torch.Tensor, float]:
    """(T, N·C) float64 values less their per-component mean, centred in place, and their sum of squares: at
    the whole simulation one float64 copy of the window is 2.9 GB, and the bench ran out of the VM's 23 GB with
    a few more."""
    centred = torch.from_numpy(np.array(flat, dtype=np.float64))  # a copy, whatever flat is
    centred -= torch.from_numpy(np.tile(mean.astype(np.float64), n_particles))
    flat_view = centred.view(-1)
    return centred, float(torch.dot(flat_view, flat_view))


def _ss_res(decoded: np.ndarray, projected: np.ndarray, gram: np.ndarray, sumsq: float) -> float:
    """‖X − U·W‖² of coefficients W = `decoded` from the k×k sums alone (projected = Uᵀ·X, gram = UᵀU,
    sumsq = ‖X‖²), never forming the (T, N·C) residual."""
    return sumsq - 2 * float(np.einsum("ij,ij->", decoded, projected)) + float(
        np.einsum("ij,ij->", decoded @ decoded.T, gram))


def compression(values: np.ndarray, point: QuantisedSVD) -> float:
    """The window's float32 bytes / the file's bytes (the codec's ratio)."""
    return 4 * math.prod(values.shape) / point.n_bytes
