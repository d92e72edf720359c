"""A bilinear model's temporal basis as a Chebyshev series in t: the codec's alternative to the basis network.

The trained basis g(t) of a bilinear latent-code model (K curves per component and basis group) is a smooth
function of the window time u in [-1, 1]. Over a short window it barely moves, and a few Chebyshev coefficients
per curve hold it to well below the codes' quantisation error, in far fewer bytes than the network's weights (F,
100 frames: the 4-bit weights cost ~6.5 kB, more than the codes). The series is fitted to the trained network
itself, sampled at every frame of the window and half-way between (held-out frames included: the network is
defined there; no data is read), so the file still decodes at any t. Once turned into the directions the codes
keep, the curves become the window's best basis of that many curves and that degree for the training frames
(ProjectedTargets.refine), where a least-squares fit of the degree stays bounded between frames; they never read
a held-out frame.
Coefficients are stored as one row (one scale) per degree, since they decay with the degree, at the codec's
candidate weight bits.

The file stores, per basis group, the series of the KLT directions of the codes (bilinear.fit_from_sums) that some
particle keeps at the chosen code step: r_g curves per component instead of K, and no direction rows, since the
codes are then plain coefficients of the stored curves. The codes are re-fitted to the decoded series. The sums
they need (the Gram matrix of the basis, the targets projected on it) are linear in the coefficients, so the
targets are projected on the Chebyshev polynomials once, and another degree or precision costs O(n·K·d·C),
not another pass over every value of the window.

Over a long window one polynomial cannot follow the curves (the whole simulation: S keeps at most R² 0.988 of
its variance at degree 256, C 0.946, whatever the rank), so the window may be cut into P equal stretches of u,
each with its own series (Stretches): a piecewise series, continuous in t within a stretch. Its coefficients are
ordered degree-major (row j·P + p is degree j of stretch p), so the first (d + 1)·P rows are the series of
degree d, and every sum above still nests by degree. Frame by frame, a curve is its values: at every frame (two-frame
stretches of degree 1), or with frames held out at the training frames, a spline between (Knots).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.polynomial import chebyshev
from scipy.interpolate import CubicSpline
from scipy.linalg import solve_triangular
from torch import nn

from mpm_inr.codec import bilinear, block_gram, memo
from mpm_inr.codec.format import CodecError
from mpm_inr.codec.quantise import quantise_uniform, roundtrip_tensors

#: degrees tried, smallest first; a window of n frames allows up to n - 1 (the series then has n coefficients)
DEGREES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)


def sample_times(n_frames: int) -> np.ndarray:
    """Window times where the network is sampled for the fit: every frame and every half frame."""
    return np.linspace(-1.0, 1.0, 2 * n_frames - 1)


def frame_times(n_frames: int) -> np.ndarray:
    """Window time u in [-1, 1] of each frame of the window (the network's t before t_period), on the grid the
    training and the decoder use."""
    return torch.linspace(-1.0, 1.0, n_frames, dtype=torch.float64).numpy()


def degrees_for(n_frames: int) -> list[int]:
    return [d for d in DEGREES if d <= n_frames - 1] or [0]


@dataclass(frozen=True)
class Stretches:
    """The window's frames cut into `count` stretches of consecutive frames (as equal as `n_frames` allows), each
    with its own Chebyshev series in a coordinate x that runs from -1 at its first frame to 1 at its last. A time
    between one stretch's last frame and the next one's first is the straight line between the two series there:
    no stretch is ever evaluated outside its frames, where a polynomial fit swings (degree 24 over 156 frames:
    Lebesgue constant 3.9 between its frames, 31 a frame past them). One stretch is the plain series, bit for
    bit, whatever `n_frames`."""

    count: int = 1
    n_frames: int = 0  # the window's frames (a single stretch does not need them)

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or isinstance(self.count, bool) or self.count < 1:
            raise CodecError(f"the file's series has {self.count!r} stretches, not a positive integer; it is "
                             f"inconsistent, encode it again")
        if self.count > 1 and not 2 * self.count <= self.n_frames:
            raise CodecError(f"the file's series has {self.count} stretches over {self.n_frames} frames, fewer "
                             f"than two frames each; it is inconsistent, encode it again")

    @property
    def starts(self) -> np.ndarray:
        """(P + 1,) the first frame of each stretch, and n_frames."""
        return np.arange(self.count + 1) * self.n_frames // self.count

    def n_coefs(self, degree: int) -> int:
        """Rows of a series of `degree`: d + 1 per stretch."""
        return (degree + 1) * self.count

    def degree(self, n_coefs: int) -> int:
        """The degree of a series of `n_coefs` rows."""
        if n_coefs % self.count or n_coefs < self.count:
            raise CodecError(f"the file's series has {n_coefs} rows, not a multiple of its {self.count} stretches; "
                             f"it is inconsistent, encode it again")
        return n_coefs // self.count - 1

    def locate(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(stretch p, coordinate x within it, weight w) of each time u: the value there is w times stretch p's
        series at x, plus (1 - w) times stretch p + 1's at its first frame (x = -1); w = 1 on and between a
        stretch's own frames."""
        u = np.asarray(u, dtype=np.float64)
        if self.count == 1:
            return np.zeros(u.shape, dtype=np.int64), u, np.ones(u.shape)  # exactly u: the plain series' arithmetic
        frame = (u + 1.0) * ((self.n_frames - 1) / 2.0)  # fractional frame index
        whole = np.round(frame)
        frame = np.where(np.abs(frame - whole) < 1e-9, whole, frame)  # a frame's time lands on its frame
        starts = self.starts
        piece = np.clip(np.searchsorted(starts, frame, side="right") - 1, 0, self.count - 1)
        first, last = starts[piece], starts[piece + 1] - 1
        x = np.minimum(2.0 * (frame - first) / (last - first) - 1.0, 1.0)
        weight = np.clip(1.0 - (frame - last), 0.0, 1.0)  # below 1 only past the last frame: the gap to the next
        return piece, x, weight

    def vander(self, u: np.ndarray, degree: int) -> np.ndarray:
        """(len(u), (d + 1)·P): each time's Chebyshev polynomials in its stretch's columns (blended with the next
        stretch's at its first frame between the two), zero elsewhere."""
        if self.count == 1:
            return chebyshev.chebvander(np.asarray(u, dtype=np.float64), degree)
        piece, x, weight = self.locate(u)
        rows = np.arange(piece.size)
        out = np.zeros((piece.size, degree + 1, self.count))
        out[rows, :, piece] = weight[:, None] * chebyshev.chebvander(x, degree)
        gap = weight < 1.0
        out[rows[gap], :, piece[gap] + 1] += (1.0 - weight[gap])[:, None] * chebyshev.chebvander(-np.ones(1), degree)
        return out.reshape(piece.size, -1)

    def frames_per_stretch(self, u: np.ndarray) -> np.ndarray:
        """(P,) how many of the times u fall on or between each stretch's frames."""
        piece, _, weight = self.locate(u)
        return np.bincount(piece[weight == 1.0], minlength=self.count)

    def meta(self) -> dict[str, Any]:
        """What a file's encoding says of these stretches (nothing for the plain series, format 6's metadata)."""
        return {} if self.count == 1 else {"series_stretches": self.count}

    def evaluate(self, flat: np.ndarray, u: np.ndarray, degree: int) -> np.ndarray:
        """(len(u), columns) the series ((d + 1)·P, columns) at window times u; a stretch at a time, so the
        product skips the other stretches' zero columns."""
        if self.count == 1:
            return chebyshev.chebvander(u, degree) @ flat
        piece, x, weight = self.locate(u)
        gap = np.flatnonzero(weight < 1.0)
        terms = [(piece, x, weight), (piece[gap] + 1, -np.ones(gap.size), 1.0 - weight[gap])]  # the gaps' 2nd term
        at = [np.arange(u.size), gap]
        out = np.zeros((u.size, flat.shape[1]))
        for rows, (pieces, xs, ws) in zip(at, terms, strict=True):
            for p in np.unique(pieces):
                mine = pieces == p
                out[rows[mine]] += ws[mine, None] * (chebyshev.chebvander(xs[mine], degree) @ flat[p::self.count])
        return out

    def lebesgue_constant(self, u: np.ndarray, degree: int) -> float:
        """The worst stretch's lebesgue_constant for its training times u, checked out to its first and last
        frames (past a training time only where the stretch's end frame is held out)."""
        if self.count == 1:
            return lebesgue_constant(u, degree)
        piece, x, weight = self.locate(u)
        own = weight == 1.0
        return max(lebesgue_constant(x[own & (piece == p)], degree, span=(-1.0, 1.0)) for p in range(self.count))


@dataclass(frozen=True)
class Knots(Stretches):
    """A curve held as its values at the window's training frames (its knots), a natural cubic spline through
    them in between: the truncated SVD's temporal factors, interpolated as its held-out rival interpolates them,
    for a window with frames held out, where frame-by-frame stretches of two frames leave some stretch one
    training frame and no line through it (C, 1 000 frames, every 4th frame held out: its split file's series
    stopped below R² 0.995, seed 0 at 0.99291, so its held-out cells kept the model's layout at 240x). A
    degree-0 stretch per knot, so every sum of the projections holds; on the training frames a curve is free, so
    the best rank-r curves are the training frames' truncated SVD's. Cubic, not straight lines: the float SVD's
    held-out R² was within 1e-5 of its training R² at every rank and seed measured (C and S, 100 and 1 000
    frames), where straight lines lost up to 2.4e-4 (C, 1 000 frames, seed 2, rank 48: 0.99849 against
    0.99873)."""

    knots: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        knots = np.asarray(self.knots)
        if (self.count != len(self.knots) or self.count < 2 or np.any(np.diff(knots) <= 0) or knots[0] < 0
                or knots[-1] >= self.n_frames):
            raise CodecError(f"the file's series has {self.count} knots over {self.n_frames} frames, not its "
                             f"window's training frames; it is inconsistent, encode it again")

    @classmethod
    def at_frames(cls, frames: np.ndarray, n_frames: int) -> Knots:
        return cls(len(frames), n_frames, tuple(int(f) for f in frames))

    def meta(self) -> dict[str, Any]:
        return {"series_knots": TRAINING_KNOTS}

    def locate(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(knot p at or before each time, x = -1, weight 1 on a knot and below 1 between two): where a time
        falls, not how it is evaluated (a spline, vander)."""
        frame = (np.asarray(u, dtype=np.float64) + 1.0) * ((self.n_frames - 1) / 2.0)
        knots = np.asarray(self.knots, dtype=np.float64)
        on = np.isclose(frame[:, None], knots[None, :], rtol=0.0, atol=1e-9)
        piece = np.where(on.any(axis=1), on.argmax(axis=1),
                         np.clip(np.searchsorted(knots, frame, side="right") - 1, 0, self.count - 1))
        return piece, -np.ones(frame.shape), np.where(on.any(axis=1), 1.0, 0.5)

    def vander(self, u: np.ndarray, degree: int) -> np.ndarray:
        """(len(u), P): each time's weights on the knots' values (the natural cubic spline's cardinal functions)."""
        if degree != 0:
            raise CodecError(f"the file's series has degree {degree} on its knots, not 0; it is inconsistent, "
                             f"encode it again")
        frames = (np.asarray(u, dtype=np.float64) + 1.0) * ((self.n_frames - 1) / 2.0)
        return CubicSpline(np.asarray(self.knots, dtype=np.float64), np.eye(self.count), bc_type="natural")(frames)

    def evaluate(self, flat: np.ndarray, u: np.ndarray, degree: int) -> np.ndarray:
        return self.vander(u, degree) @ flat

    def lebesgue_constant(self, u: np.ndarray, degree: int) -> float:
        """A value per knot pins its curve there: nothing to amplify (the spline between them is bounded)."""
        return 1.0 if degree == 0 else math.inf


#: `series_knots` of a file whose curves are their values at the window's training frames (format 10)
TRAINING_KNOTS = "training"


def file_stretches(encoding: dict[str, Any], n_frames: int, train_frames: np.ndarray) -> Stretches:
    """A file's stretches from its encoding: knots at the training frames (format 10), else `series_stretches`
    equal stretches (format 7; one where absent)."""
    knots = encoding.get("series_knots")
    if knots is None:
        return Stretches(encoding.get("series_stretches", 1), n_frames)
    if knots != TRAINING_KNOTS:
        raise CodecError(f"the file's series_knots {knots!r} is not one this reader knows; it is inconsistent, "
                         f"encode it again")
    return Knots.at_frames(train_frames, n_frames)


def frame_by_frame(n_frames: int, train_frames: np.ndarray) -> Stretches:
    """Curves held frame by frame: stretches of two frames of degree 1 (a straight line between frames) where
    every frame is a training frame, else Knots at the training frames."""
    if len(train_frames) == n_frames:
        return Stretches(n_frames // 2, n_frames)
    return Knots.at_frames(train_frames, n_frames)


#: the plain series: one stretch over the whole window
ONE_STRETCH = Stretches()
#: the stretch counts a window may be cut into, fewest first
STRETCH_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128)
#: a window is cut only into stretches of at least this many frames: shorter ones hold too few frames for a
#: series of useful degree between bounded fits (a degree-d fit stays bounded up to d ~ 2·√m on m frames), and
#: a 100-frame window is not cut at all: its encoding must stay within 10 s, and two stretches of 50 frames took
#: a third longer for at most 2 % (C, R² 0.999, seed 0: 87.9 KB against 89.5 KB; seeds 1-2 and R² 0.995 the same)
MIN_STRETCH_FRAMES = 100


def stretch_counts(n_frames: int) -> list[int]:
    """The stretch counts tried for a window of `n_frames` frames."""
    return [p for p in STRETCH_COUNTS if p == 1 or n_frames // p >= max(MIN_STRETCH_FRAMES, 2)]


def degrees_within(n_frames: int, stretches: Stretches) -> list[int]:
    """The candidate degrees of a series of `stretches` over a window of `n_frames` frames: those the fewest
    frames of a stretch can pin down."""
    fewest = int(stretches.frames_per_stretch(frame_times(n_frames)).min())
    return degrees_for(fewest)


@torch.no_grad()
def network_samples(network: nn.Module, u: np.ndarray, t_period: float) -> np.ndarray:
    """(M, G, K, C) float64: the network's basis at window times u, in normalised units."""
    t = torch.from_numpy(u / t_period).float().unsqueeze(-1)
    basis = network.basis_per_group(t).double().cpu().numpy()
    return basis.reshape(len(u), basis.shape[1], network.latent_dim, -1)


def fit_series(samples: np.ndarray, u: np.ndarray, degree: int, stretches: Stretches = ONE_STRETCH) -> np.ndarray:
    """((degree + 1)·P, G, K, C) least-squares Chebyshev coefficients of the sampled curves (past
    block_gram.BLOCKWISE_MIN_COEFS, a stretch's on its sparse Vandermonde matrix)."""
    flat = samples.reshape(len(u), -1)
    n_coefs = stretches.n_coefs(degree)
    if type(stretches) is Stretches and block_gram.blockwise(n_coefs):
        coefs = block_gram.sparse_lstsq(block_gram.sparse_vander(*stretches.locate(u), stretches.count, degree), flat)
    else:
        coefs = np.linalg.lstsq(stretches.vander(u, degree), flat, rcond=None)[0]
    return coefs.reshape(n_coefs, *samples.shape[1:])


def evaluate(coefs: np.ndarray, u: np.ndarray, stretches: Stretches = ONE_STRETCH) -> np.ndarray:
    """(len(u), ...) curves at window times u of a series ((d + 1)·P, ...), in normalised units."""
    u = np.asarray(u, dtype=np.float64)
    degree = stretches.degree(coefs.shape[0])
    flat = coefs.reshape(coefs.shape[0], -1)
    return stretches.evaluate(flat, u, degree).reshape(len(u), *coefs.shape[1:])


def lebesgue_constant(u: np.ndarray, degree: int, ends: int = 200,
                      span: tuple[float, float] | None = None) -> float:
    """How much the least-squares polynomial of `degree` through values at times `u` can amplify them anywhere in
    between: max over t of Σ_i |ℓ_i(t)|, ℓ_i the fit's weights, taken at the frames' midpoints (every one for
    short windows; the first and last `ends` gaps and a sparse grid between them for long ones: it peaks near
    the ends). Around 2-6 while the degree is below ~2·√n; then it explodes (100 frames: degree 24 5.5, 32 23,
    48 8 000; every 4th of them held out: 24 25, 32 270). Unbounded (inf) where the degree has more coefficients
    than there are times: no least-squares fit pins such a polynomial down. `span`: also checked at these two
    ends (a stretch's, which its first and last times need not reach); by default the first and last times."""
    u = np.sort(np.asarray(u, dtype=np.float64))
    if degree + 1 > u.size:
        return math.inf
    mids = (u[:-1] + u[1:]) / 2
    if mids.size > 4 * ends:
        inner = mids[ends:-ends]
        mids = np.concatenate([mids[:ends], inner[::max(1, inner.size // (2 * ends))], mids[-ends:]])
    q, r = np.linalg.qr(chebyshev.chebvander(u, degree))
    first, last = (u[:1], u[-1:]) if span is None else ([min(span[0], u[0])], [max(span[1], u[-1])])
    weights = np.linalg.solve(r.T, chebyshev.chebvander(np.concatenate([first, mids, last]), degree).T).T @ q.T
    return float(np.abs(weights).sum(axis=1).max())


#: a series is refined against the training frames only while their least-squares fit of its degree amplifies
#: them at most this much between frames (lebesgue_constant)
MAX_LEBESGUE = 10.0


def bounded(stretches: Stretches, u_train: np.ndarray, degree: int) -> bool:
    """Whether a least-squares series of `degree` through the training times stays bounded between them in every
    stretch (Lebesgue constant at most MAX_LEBESGUE): the one rule for refining a series and cutting a window."""
    return stretches.lebesgue_constant(u_train, degree) <= MAX_LEBESGUE


@dataclass
class ProjectedTargets:
    """The training targets of each coded group projected on the Chebyshev polynomials up to `max_degree`, in
    original units: everything fit_from_sums needs for any series of at most that degree."""

    projections: list[np.ndarray]  # per group (n_g, D + 1, C): Σ_f Y[p, f, c] T_j(u_f)
    target_sq: list[float]  # per group ||Y_g||²
    # (P, D + 1, D + 1): Σ_f T_j(u_f) T_j'(u_f) over each stretch's training frames (block_gram)
    gram_blocks: np.ndarray
    std: np.ndarray  # (C,) the normalisation's std: the series is in normalised units
    u_train: np.ndarray  # window times of the training frames the projections sum over
    stretches: Stretches = field(default_factory=Stretches)  # the projections' polynomials are per stretch
    max_rank: int | None = None  # the most curves a best series is asked for (None: any): its basis keeps no more
    _stable: dict[int, bool] = field(default_factory=dict)  # stable(degree), computed once per degree
    # per (group, degree); a degree search asks for a few degrees at a time, and over the whole simulation each
    # entry is ~70 MB (64 stretches of degree 32)
    _best: memo.BytesMemo[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=lambda: memo.BytesMemo(lambda entry: memo.array_bytes(*entry), BEST_BASIS_MEMO_BYTES))
    _flat: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # (n_g, (d + 1)·C) per group, degree
    # per (group, degree) the whitened directions orthogonal to T0, strongest first (_constant_first_basis)
    _off_constant: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    _dense_gram: np.ndarray | None = None  # poly_gram, made once

    @property
    def poly_gram(self) -> np.ndarray:
        """((D + 1)·P, (D + 1)·P) the polynomials' Gram matrix over the training frames, dense, degree-major."""
        if self._dense_gram is None:
            self._dense_gram = block_gram.dense(self.gram_blocks)
        return self._dense_gram

    def gram_times(self, x: np.ndarray) -> np.ndarray:
        """G @ x for (..., n_coefs, K) `x`, G the Gram matrix of a series of n_coefs coefficients."""
        n_coefs = x.shape[-2]
        if block_gram.blockwise(n_coefs):
            return block_gram.times(block_gram.leading(self.gram_blocks, n_coefs), x)
        return self.poly_gram[:n_coefs, :n_coefs] @ x

    def gram_factor(self, n_coefs: int) -> np.ndarray:
        """The lower Cholesky factor of the (ridged) Gram matrix of a series of `n_coefs` coefficients: dense, or
        its blocks past block_gram.BLOCKWISE_MIN_COEFS (block_gram.whitened_rows and unwhiten take either)."""
        if block_gram.blockwise(n_coefs):
            return block_gram.cholesky(block_gram.leading(self.gram_blocks, n_coefs))
        return np.linalg.cholesky(bilinear.ridged(self.poly_gram[:n_coefs, :n_coefs]))

    @classmethod
    def build(cls, values: np.ndarray, mean: np.ndarray, std: np.ndarray, members: list[np.ndarray],
              u_train: np.ndarray, max_degree: int, frames: np.ndarray | None = None,
              stretches: Stretches = ONE_STRETCH, max_rank: int | None = None) -> ProjectedTargets:
        """From (T, N, C) `values` in original units, of which the training `frames` (None: all; at times
        `u_train`) are projected, a block of particles at a time (bilinear.target_blocks), and a stretch at a
        time (its frames on its own polynomials: the others' columns are zero there)."""
        u_train = np.asarray(u_train, dtype=np.float64)
        piece, x, _ = stretches.locate(u_train)  # training times are frames: never between two stretches
        pieces = [(p, np.flatnonzero(piece == p)) for p in range(stretches.count)]
        local = {p: chebyshev.chebvander(x[rows], max_degree) for p, rows in pieces}  # (F_p, D + 1)
        n_comp, n_coefs = values.shape[2], stretches.n_coefs(max_degree)
        projections, target_sq = [], []
        for idx in members:
            projected, squares = np.zeros((idx.size, n_coefs, n_comp)), 0.0
            at = 0
            for block in bilinear.target_blocks(values, mean, idx, frames):  # (F, m, C)
                rows_of = block.reshape(len(u_train), -1)
                for p, rows in pieces:
                    flat = local[p].T @ (rows_of if stretches.count == 1 else rows_of[rows])  # (D + 1, m·C)
                    projected[at:at + block.shape[1], p::stretches.count] = flat.reshape(
                        max_degree + 1, block.shape[1], n_comp).transpose(1, 0, 2)
                squares += float(np.einsum("fnc,fnc->", block, block))
                at += block.shape[1]
            projections.append(projected)
            target_sq.append(squares)
        blocks = np.stack([local[p].T @ local[p] for p, _ in pieces])  # block-diagonal by stretch
        return cls(projections, target_sq, blocks, np.asarray(std, dtype=np.float64), u_train, stretches, max_rank)

    def fits(self, per_group: Sequence[np.ndarray], klt: bool = True) -> list[bilinear.GroupFit]:
        """Every coded group's least-squares codes for its series (d + 1, K_g, C), d <= max_degree (with their
        KLT unless klt=False: bilinear.fit_from_sums)."""
        if len(per_group) != len(self.projections):
            raise ValueError(f"{len(per_group)} series for {len(self.projections)} coded groups")
        return [self.fits_group(a, g, klt) for g, a in enumerate(per_group)]

    def fits_group(self, series: np.ndarray, group: int, klt: bool = True) -> bilinear.GroupFit:
        """One coded group's least-squares codes for its series (d + 1, K, C)."""
        scaled = series * self.std  # original units
        n_coefs, dim = scaled.shape[:2]
        # Σ_c S_cᵀ G S_c by matmuls: an optimised einsum spent more on its path search than on the product
        by_comp = scaled.transpose(2, 0, 1)  # (C, d + 1, K)
        gram = (by_comp.transpose(0, 2, 1) @ self.gram_times(by_comp)).sum(axis=0)
        by_row = scaled.transpose(0, 2, 1).reshape(n_coefs * scaled.shape[2], dim)  # rows as the projections' (j, c)
        target_basis = self._flat_projections(group, n_coefs) @ by_row
        return bilinear.fit_from_sums(gram, target_basis, self.target_sq[group], klt)

    def _flat_projections(self, group: int, n_coefs: int) -> np.ndarray:
        """(n_g, n_coefs·C) the group's projections on the first `n_coefs` polynomials: a view of one component's
        (a split file's), else a copy, kept for the last degree asked only: a step search fits hundreds of series
        at one degree, and over the whole simulation one degree's copy of S is up to 2.4 GB (S, 32 stretches of
        degree 256; a copy kept per degree took the encoding of a split file past 19 GB)."""
        proj = self.projections[group]
        if proj.shape[2] == 1:
            return proj[:, :n_coefs, 0]
        if (group, n_coefs) not in self._flat:
            self._flat = {key: value for key, value in self._flat.items() if key[0] != group}
            self._flat[group, n_coefs] = np.ascontiguousarray(proj[:, :n_coefs]).reshape(proj.shape[0], -1)
        return self._flat[group, n_coefs]

    def stable(self, degree: int) -> bool:
        """Whether a least-squares series of `degree` through the training frames stays bounded between them."""
        if degree not in self._stable:
            self._stable[degree] = bounded(self.stretches, self.u_train, degree)
        return self._stable[degree]

    def refine(self, per_group: Sequence[np.ndarray], constant_first: bool = False) -> list[np.ndarray]:
        """Each group's series (d + 1, r_g, C) replaced by the best series of its rank and degree for the training
        frames (best_series), where that is defined (refinable); the others as they are; with `constant_first`,
        the best one whose first curve is constant where that applies (constant_first_series). r curves taken from the
        network's basis become the window's best rank-r basis of that degree (the truncated SVD's, were the
        degree unbounded), in KLT form (orthonormal, strongest first, decorrelated codes, as one uniform step
        wants them). Until 2026-12-05 five rounds of alternating least squares from the network's curves moved
        toward it, and only for r <= d: over the whole simulation they left Jp's seed 0 at R² 0.998 where the
        best basis of the model's rank reaches 0.9995."""
        out = []
        for g, series in enumerate(per_group):
            series = np.asarray(series, dtype=np.float64)
            degree, rank = self.stretches.degree(series.shape[0]), series.shape[1]
            if not self.refinable(g, degree, rank):
                out.append(series)
            elif constant_first and self.holds_constant_first(rank):
                out.append(self.constant_first_series(g, degree, rank))
            else:
                out.append(self.best_series(g, degree, rank))
        return out

    @property
    def constant_first_possible(self) -> bool:
        """Whether some series of these targets can hold a constant first curve (holds_constant_first)."""
        return self.std.size == 1 and type(self.stretches) is Stretches and self.stretches.count == 1

    def holds_constant_first(self, rank: int) -> bool:
        """Whether a group's rank-r series is re-spanned about a constant curve (constant_first_series): one
        component, one stretch (a piecewise series' T0 is constant per stretch only), and a curve left besides it."""
        return self.constant_first_possible and rank >= 2

    def constant_first_series(self, group: int, degree: int, rank: int) -> np.ndarray:
        """(d + 1, r, 1) in normalised units: the best rank-r series of `degree` (as best_series) among those
        whose first curve is T0, exactly constant in t (its higher coefficients exactly 0, as stored at any bits),
        the others orthonormal to it over the training frames. A particle constant over the window at a value off
        the centre then takes one code, where the best series' first curve tilts a little toward the field's drift
        and such a particle pays a second non-zero code and both codes' rounding (Jp, 100 frames, R² 0.999,
        seed 1: its first curve moved 0.7 % over the window). Whitened by the Cholesky factor L of the polynomials'
        Gram matrix, T0 is the first coordinate: the other curves are the leading right singular vectors of the
        whitened projections without it."""
        lower = self._best_basis(group, degree)[0]
        n_coefs = self.stretches.n_coefs(degree)
        whitened = np.zeros((n_coefs, rank))
        whitened[0, 0] = 1.0
        whitened[1:, 1:] = self._constant_first_basis(group, degree)[:, :rank - 1]
        return solve_triangular(lower.T, whitened, lower=False, check_finite=False)[:, :, None] / self.std

    def _constant_first_basis(self, group: int, degree: int) -> np.ndarray:
        """(d, d) the right singular vectors (as columns, strongest first) of the group's whitened projections
        without their T0 coordinate, once per degree."""
        if (group, degree) not in self._off_constant:
            lower = self._best_basis(group, degree)[0]
            n_coefs = self.stretches.n_coefs(degree)
            whitened = solve_triangular(lower, self.projections[group][:, :n_coefs, 0].T, lower=True,
                                        check_finite=False)
            self._off_constant[group, degree] = bilinear.right_singular(whitened[1:].T)[1].T
        return self._off_constant[group, degree]

    def refinable(self, group: int, degree: int, rank: int) -> bool:
        """Whether a rank-r series of `degree` of this group is replaced by the best one: it has particles, fewer
        curves than its particles and than the C·(d + 1) polynomials of the degree, and a least-squares fit of the
        degree through the training frames stays bounded between them (stable; unguarded, a degree-32 refined
        series of S, seed 2, every 4th frame held out, swung there: held-out R² 0.99903 -> 0.99543)."""
        n_particles, _, n_comp = self.projections[group].shape
        within = self.max_rank is None or rank <= self.max_rank
        return within and 0 < rank < min(n_particles + 1, n_comp * self.stretches.n_coefs(degree)) and self.stable(
            degree)

    def best_series(self, group: int, degree: int, rank: int) -> np.ndarray:
        """(d + 1, r, C) in normalised units: the rank-r series of `degree` whose least-squares codes leave the
        least error over the group's training frames, its curves orthonormal over those frames (original
        units) and strongest first. The targets projected on the polynomials, whitened by the Cholesky factor L
        of their Gram matrix (P_c L⁻ᵀ per component, side by side), make the fit an ordinary low-rank
        approximation: their leading right singular vectors are the whitened curves."""
        lower, _, vt = self._best_basis(group, degree)
        n_coefs, n_comp = self.stretches.n_coefs(degree), self.std.size
        whitened = vt[:rank].reshape(rank, n_comp, n_coefs).transpose(2, 0, 1).reshape(n_coefs, -1)
        return block_gram.unwhiten(lower, whitened).reshape(n_coefs, rank, n_comp) / self.std

    def reachable_ss_res(self, fits: Sequence[bilinear.GroupFit], degree: int) -> float:
        """The least error over the coded groups that any codes reach with a series of `degree` holding each fit's
        number of curves: the best series' where refine replaces it, the fitted one's elsewhere."""
        total = 0.0
        for g, fit in enumerate(fits):
            rank = fit.gram.shape[0]
            if self.refinable(g, degree, rank):
                singular = self._best_basis(g, degree)[1]
                total += self.target_sq[g] - float(np.sum(singular[:rank] ** 2))
            else:
                total += fit.ss_res
        return total

    def singular_values(self, group: int, degree: int) -> np.ndarray:
        """The group's whitened projections' singular values at `degree`: the best series of rank r leaves
        ||Y_g||² − Σ_{i<r} s_i² (reachable_ss_res)."""
        return self._best_basis(group, degree)[1]

    def _best_basis(self, group: int, degree: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(L, singular values, right singular vectors) of the group's whitened projections, once per degree."""
        return self._best.get((group, degree), lambda: self._best_basis_now(group, degree))

    def _best_basis_now(self, group: int, degree: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n_coefs = self.stretches.n_coefs(degree)
        lower = self.gram_factor(n_coefs)
        proj = self.projections[group][:, :n_coefs]  # (n, d + 1, C)
        singular, vt = bilinear.right_singular(block_gram.whitened_rows(lower, proj))
        # the leading rows only: over the whole simulation, 64 stretches of degree 32 make vt 8 448² (0.57 GB
        # per degree, and a degree search caches several), where the model has 506 curves
        return lower, singular, vt[:self.max_rank].copy()


#: bytes of best bases (ProjectedTargets._best_basis) kept at a time
BEST_BASIS_MEMO_BYTES = 1 << 29


class KeptSeries:
    """A series (d + 1, G, K, C) turned into any set of kept KLT directions per group (`fits`: the float fits of
    its codes), and refined against the window (ProjectedTargets.refine), once per set; and stored at given bits
    (rotated_series), once per set and bits: the step searches of every weight precision and of fewer directions
    visit the same few sets."""

    def __init__(self, coefs: np.ndarray, fits: list[bilinear.GroupFit], projected: ProjectedTargets,
                 memo_bytes: int = memo.DEFAULT_BUDGET, constant_first: bool = False) -> None:
        self.coefs, self.fits, self.projected = coefs, fits, projected
        self.constant_first = constant_first  # refined with a constant first curve (ProjectedTargets.refine)
        self._curves: memo.BytesMemo[list[np.ndarray]] = memo.BytesMemo(lambda c: memo.array_bytes(*c), memo_bytes)
        self._stored: memo.BytesMemo[RotatedSeries | None] = memo.BytesMemo(
            lambda s: 0 if s is None else s.nbytes, memo_bytes)
        self._fits: memo.BytesMemo[bilinear.GroupFit] = memo.BytesMemo(lambda f: f.nbytes, memo_bytes)

    def forget(self) -> None:
        """Drops what the memos hold: a degree search keeps its best series for the search of fewer directions
        after it, which starts again at other sets of directions."""
        for held in (self._curves, self._stored, self._fits):
            held.clear()

    def stored(self, kept: tuple[tuple[int, ...], ...], bits: int) -> RotatedSeries | None:
        """The curves of `kept` as a file at `bits` stores them, with their codes' fits; None where so few bits
        leave a stored curve degenerate (its fit fails to converge, or solves to non-finite codes: seen on C at 3
        bits, where two stored curves coincide)."""
        return self._stored.get((kept, bits), lambda: self._stored_now(kept, bits))

    def _stored_now(self, kept: tuple[tuple[int, ...], ...], bits: int) -> RotatedSeries | None:
        try:
            stored = rotated_series(self.curves(kept), bits, self._fit_stored, self.projected.stretches)
        except np.linalg.LinAlgError:
            return None
        return stored if all(np.isfinite(fit.coefs).all() for fit in stored.fits) else None

    def _fit_stored(self, group: int, curves: np.ndarray) -> bilinear.GroupFit:
        """A group's codes fitted to its stored curves, once per distinct curves: a step search changes the kept
        directions of one group or two at a time, and the others' stored curves stay bit for bit the same
        (C, seed 2, 0.999: 2 475 fits, most of them repeated)."""
        return self._fits.get((group, curves.shape, curves.tobytes()),
                              lambda: self.projected.fits_group(curves, group, klt=False))

    def curves(self, kept: tuple[tuple[int, ...], ...]) -> list[np.ndarray]:
        """Per coded group (d + 1, r_g, C) in normalised units, r_g = len(kept[g])."""
        return self._curves.get(kept, lambda: self.projected.refine([
            np.einsum("rk,jkc->jrc", fit.rotation[list(k)], self.coefs[:, g])
            for g, (fit, k) in enumerate(zip(self.fits, kept, strict=True))], self.constant_first))


@dataclass
class RotatedSeries:
    """The file's basis at one set of kept directions: per coded group, the series of its KLT directions that
    keep a non-zero code (r_g curves per component instead of K: no directions to store, fewer curves), and the
    least-squares fits of the codes to it as stored at `bits`."""

    stored: np.ndarray  # float32, the rotated series as the file lays it out (stored_coefs), before quantisation
    fits: list[bilinear.GroupFit]  # per coded group, for the decoded (quantised) series, in its coordinates (no KLT)

    @property
    def nbytes(self) -> int:
        return self.stored.nbytes + sum(fit.nbytes for fit in self.fits)

    def quantise(self, step: float) -> tuple[list[np.ndarray], float]:
        """Per coded group the codes (n_g, r_g) rounded to multiples of `step`, and the squared error they leave
        over the coded particles and training frames (original units)."""
        ints, ss_res = [], 0.0
        for fit in self.fits:
            q = quantise_uniform(fit.coefs, step)  # least squares in the stored curves' coordinates (klt=False)
            ss_res += bilinear.decoded_ss_res(fit.target_sq, q * step, fit.target_basis, fit.gram)
            ints.append(q)
        return ints, ss_res

    def ss_res(self, step: float) -> float:
        """quantise(step)'s squared error, bit for bit, without making the integers (a step search's every try)."""
        ss_res = 0.0
        for fit in self.fits:
            ss_res += bilinear.decoded_ss_res(fit.target_sq, bilinear.rounded(fit.coefs, step), fit.target_basis,
                                              fit.gram)
        return ss_res


def kept_directions(fits: list[bilinear.GroupFit], step: float) -> tuple[tuple[int, ...], ...]:
    """Per group, the KLT directions some particle's code keeps at `step` (as bilinear.quantise_codes keeps them)."""
    return tuple(tuple(np.flatnonzero(f.code_peaks >= step / 2).tolist()) for f in fits)


def rotated_series(curves: list[np.ndarray], bits: int, fit: Callable[[int, np.ndarray], bilinear.GroupFit],
                   stretches: Stretches = ONE_STRETCH) -> RotatedSeries:
    """Per-group curves (KeptSeries.curves) quantised at `bits` as the decoder will see them, with the codes'
    fits to that (`fit(group, decoded curves)`)."""
    n_coefs, n_comp = curves[0].shape[0], curves[0].shape[-1]
    flat = np.concatenate([c.reshape(n_coefs, -1) for c in curves], axis=1).astype(np.float32)
    stored = stored_coefs(flat, stretches)
    decoded = loaded_coefs(roundtrip_tensors({"coefs": stored}, bits)["coefs"], stretches, flat.shape[1])
    ranks = [c.shape[1] for c in curves]
    return RotatedSeries(stored, [fit(g, group_curves) for g, group_curves in enumerate(split_groups(decoded, ranks,
                                                                                                      n_comp))])


def series_ranks_meta(series_ranks: list[int], code_ranks: list[int]) -> dict[str, list[int]]:
    """The file's `series_ranks` (curves per coded group) where it needs them: not where they are its codes'
    ranks, as in every file without constant particles (format 11; 1-5 bytes of a 1 KB Jp file's metadata)."""
    return {} if list(series_ranks) == list(code_ranks) else {"series_ranks": list(series_ranks)}


def file_series_ranks(encoding: dict[str, Any]) -> list[int]:
    """A series file's curves per coded group (series_ranks_meta)."""
    return encoding.get("series_ranks", encoding.get("ranks", []))


#: `series_order` of a file whose piecewise series is stored curve by curve (format 9)
CURVE_MAJOR = "curve"


def curve_major(stretches: Stretches) -> bool:
    """Whether a series of `stretches` is stored curve by curve: every piecewise one. Each curve's coefficients,
    every degree of every stretch, then share one scale, so its error is one uniform step wherever it lies, as
    the truncated SVD's temporal factors are scaled per direction. Stored by row (one degree of one stretch over
    every curve, one scale each), each row's scale spent the integers' range on a stretch where the curves are
    quiet, and scaled per degree and curve on the small high-degree terms (C, 1 000 frames, seed 2, R² 0.995,
    frame by frame: the file is 228.6 kB by row, 214.6 kB by degree and curve, 206.5 kB curve by curve; the
    quantised SVD's 211.8 kB)."""
    return stretches.count > 1


def stored_coefs(flat: np.ndarray, stretches: Stretches) -> np.ndarray:
    """The file's array of a series ((d + 1)·P, columns), degree-major: as it is for one stretch; curve by curve
    (curve_major) (columns, (d + 1)·P) for more, one row per column, its coefficients degree-major."""
    return np.ascontiguousarray(flat.T) if curve_major(stretches) else flat


def loaded_coefs(stored: np.ndarray, stretches: Stretches, n_cols: int) -> np.ndarray:
    """stored_coefs undone: the series ((d + 1)·P, `n_cols`), or one CodecError line where the shapes disagree."""
    if not curve_major(stretches):
        return stored
    if stored.ndim != 2 or stored.shape[0] != n_cols:
        raise CodecError(f"the file's curve-major series has shape {list(stored.shape)}, not ({n_cols} curves, "
                         f"coefficients); it is inconsistent, encode it again")
    return np.ascontiguousarray(stored.T)


def split_groups(flat: np.ndarray, ranks: Sequence[int], n_comp: int) -> list[np.ndarray]:
    """(d + 1, Σ r_g·C) stored series -> per group (d + 1, r_g, C) float64."""
    edges = np.cumsum([0, *(r * n_comp for r in ranks)])
    if flat.ndim != 2 or flat.shape[1] != edges[-1]:
        raise CodecError("the file's basis series does not match its code ranks; it is inconsistent, encode it "
                         "again")
    return [flat[:, a:b].astype(np.float64).reshape(flat.shape[0], r, n_comp)
            for a, b, r in zip(edges[:-1], edges[1:], ranks, strict=True)]


def predict(series: Sequence[np.ndarray], codes: Sequence[np.ndarray], members: Sequence[np.ndarray], u: np.ndarray,
            n_particles: int, stretches: Stretches = ONE_STRETCH) -> np.ndarray:
    """(len(u), N, C) normalised prediction: each coded group's codes (n_g, r_g) times its curves (d + 1, r_g, C)
    at window times u; particles in no group (the constant ones) are zero here."""
    n_comp = series[0].shape[-1] if len(series) else 1
    out = np.zeros((len(u), n_particles, n_comp))
    for curves, group_codes, idx in zip(series, codes, members, strict=True):
        if idx.size and curves.shape[1]:
            basis = evaluate(curves, u, stretches)  # (len(u), r_g, C)
            # one BLAS product (n_g, r_g) @ (r_g, len(u)·C): einsum's loops took 30x longer (S, 10 000 frames)
            flat = group_codes @ basis.transpose(1, 0, 2).reshape(basis.shape[1], -1)
            out[:, idx] = flat.reshape(idx.size, len(u), n_comp).transpose(1, 0, 2)
    return out
