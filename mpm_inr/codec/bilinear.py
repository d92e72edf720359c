"""Bilinear latent codes (inr_type=lagrangian, decoder=bilinear) as a transform code.

The decoded field of a particle in basis group g is z·B_g, B_g the basis network's K x (frames·components)
output. Quantising z directly wastes bits: its K columns are correlated and weigh unequally in the output. So,
per group, the codes are rotated into the directions of the prediction's own SVD (a Karhunen-Loève transform in
the metric of B_g, in original units): the rows of R·B_g are orthonormal and sorted by energy, so one uniform
step δ on every coefficient gives every coefficient the same error, δ²/12 added to SS_res (reverse
water-filling), and weak directions quantise to zero and are dropped. Particles whose values are constant over
the window are one more group, with the constant basis (one row per component), so their values share the budget. The coefficients are then re-solved by
least squares for the decoded basis and the int8 directions (a cheap quantisation-aware step) before rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from torch import nn

from mpm_inr.codec.format import CodecError
from mpm_inr.codec.quantise import (
    pack_array,
    quantise_uniform,
    smallest_int,
    unpack_array,
)

ROW_LEVELS = 127  # directions are stored as int8 rows scaled to max |.| = 127
_RIDGE = 1e-10  # of the mean Gram diagonal: keeps a rank-deficient group basis solvable
#: float64 values a group's targets are formed in at a time (target_blocks): a float64 copy of the whole
#: simulation's F (10 000 frames x 9 000 particles x 4 components) is 2.9 GB, and its transpose as much again
TARGET_BLOCK_VALUES = 1 << 22
#: codes (particles x directions) from which their KLT comes from the directions' Gram matrix (right_singular):
#: an SVD would make the left vectors too, as large as the codes (whole simulation, S apart: 36 000 x ~1 000,
#: plus LAPACK's workspace); smaller ones keep the SVD, so every file of a shorter window stays bit for bit
GRAM_KLT_VALUES = 1 << 24


@dataclass
class GroupFit:
    """One group's least-squares codes in their KLT coordinates, with the Gram-form sums that give the decoded
    error of any codes in O(n·K²) instead of decoding n x frames x components values."""

    gram: np.ndarray  # (K, K) B Bᵀ of the group's basis in original units (times std per component)
    target_basis: np.ndarray  # (n, K) Y Bᵀ, Y the training-frame values minus the normalisation mean
    target_sq: float  # ||Y||²
    rotation: np.ndarray  # (K, K): KLT directions in code space, strongest first (identity: fit_from_sums klt=False)
    coefs: np.ndarray  # (n, K) least-squares coefficients in those directions
    _stored: tuple[bytes, StoredDirections] | None = field(default=None, repr=False, compare=False)

    @cached_property
    def code_peaks(self) -> np.ndarray:
        """(K,) the largest |code| in each direction: a step keeps a direction where its peak rounds to non-zero
        (a step search asks at every step it tries, and this does not depend on the step)."""
        return np.abs(self.coefs).max(axis=0, initial=0.0)

    def stored_directions(self, kept: np.ndarray) -> StoredDirections:
        """The `kept` directions as a file stores them and the codes re-solved for them (quantise_codes), kept for
        the last set asked: a step search tries many steps that keep the same directions."""
        key = kept.tobytes()
        if self._stored is None or self._stored[0] != key:
            self._stored = (key, StoredDirections.solved(self, kept))
        return self._stored[1]

    @property
    def nbytes(self) -> int:
        """Bytes its arrays hold (what a memo of fits counts)."""
        return self.gram.nbytes + self.target_basis.nbytes + self.rotation.nbytes + self.coefs.nbytes

    @property
    def ss_res(self) -> float:
        """Σ squared error of the unquantised least-squares codes: ||Y||² − <Z, Y Bᵀ> at the optimum."""
        codes = self.coefs @ self.rotation
        return self.target_sq - float(np.einsum("ij,ij->", codes, self.target_basis))


@dataclass
class QuantisedCodes:
    """Codes at one step: per group the kept directions (int8 rows with float32 scales) and integer coefficients."""

    step: float
    rows: list[np.ndarray | None]  # (r_g, K_g) int8, each row scaled to max |.| = ROW_LEVELS; None: no directions
    row_scales: list[np.ndarray | None]  # (r_g,) float32
    ints: list[np.ndarray]  # (n_g, r_g) integers
    ss_res: float  # Σ squared error over the coded particles and training frames, original units

    @property
    def particles(self) -> tuple[int, ...]:
        """Each group's coded particles (n_g): with the ranks, the shapes its stored codes are cut into."""
        return tuple(int(q.shape[0]) for q in self.ints)


def coded_members(network: nn.Module, constant: np.ndarray) -> list[np.ndarray]:
    """The particles of each basis group that carry codes (not constant ones), in index order; the encoder and
    the decoder both derive it from the file's per-particle groups and constant mask."""
    group = network.basis_group.cpu().numpy()
    return [np.flatnonzero((group == g) & ~constant) for g in range(network.n_basis_groups)]


@torch.no_grad()
def group_bases(network: nn.Module, t_train: torch.Tensor, std: np.ndarray) -> np.ndarray:
    """(G, K, F·C) float64 basis per group in original units, from the network as the decoder will run it."""
    basis = network.basis_per_group(t_train).double().cpu().numpy()  # (F, G, K·C)
    n_frames, n_groups = basis.shape[:2]
    basis = basis.reshape(n_frames, n_groups, network.latent_dim, -1) * std[None, None, None, :]
    return basis.transpose(1, 2, 0, 3).reshape(n_groups, network.latent_dim, -1)


def constant_basis(n_frames: int, n_components: int) -> np.ndarray:
    """(C, F·C): component c held at 1 over every frame. Particles constant over the window are coded in it
    (value = mean + code), so their values get the same error budget as every other coefficient."""
    return np.tile(np.eye(n_components), n_frames)


def target_blocks(values: np.ndarray, mean: np.ndarray, idx: np.ndarray,
                  frames: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """(F, m, C) float64 targets (values minus the normalisation mean) of the particles `idx`, a block of them at a
    time, TARGET_BLOCK_VALUES at most: over `frames` of (T, N, C) `values` (all of them if None), so a window with
    held-out frames is not copied whole either. `mean`: (C,), or (N, C), a centre per particle (a file that codes
    each particle's components apart centres each on its component's value: encode.split_components)."""
    n_frames = values.shape[0] if frames is None else len(frames)
    per_block = max(1, TARGET_BLOCK_VALUES // max(1, n_frames * values.shape[2]))
    for lo in range(0, idx.size, per_block):
        part = idx[lo:lo + per_block]
        block = values[:, part] if frames is None else values[np.ix_(frames, part)]
        yield block.astype(np.float64) - (mean if np.ndim(mean) < 2 else mean[part])


def fit_groups(bases: list[np.ndarray], values: np.ndarray, mean: np.ndarray, members: list[np.ndarray],
               frames: np.ndarray | None = None) -> list[GroupFit]:
    """Least-squares codes of every group and their KLT. values: (T, N, C) in original units, of which the
    training `frames` (None: all) are fitted."""
    fits = []
    for basis, idx in zip(bases, members, strict=True):
        target_basis, target_sq = np.zeros((idx.size, basis.shape[0])), 0.0
        at = 0
        for block in target_blocks(values, mean, idx, frames):
            flat = block.transpose(1, 0, 2).reshape(block.shape[1], basis.shape[1])  # a row per particle
            target_basis[at:at + flat.shape[0]] = flat @ basis.T
            target_sq += float(np.einsum("ij,ij->", flat, flat))
            at += flat.shape[0]
        fits.append(fit_from_sums(basis @ basis.T, target_basis, target_sq))
    return fits


def right_singular(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(singular values, right singular vectors as rows) of `rows`; for a tall matrix from the eigenvectors of its
    small Gram matrix rowsᵀ·rows, whose eigenvalues are the squared singular values: an SVD would also make the
    left vectors, as large as `rows` (a split file of S over the whole simulation: 36 000 x 8 256, 2.4 GB, plus
    LAPACK's workspace), and the codec needs only the right ones and the spectrum. The Gram squares the spectrum's
    range, which costs the trailing directions' accuracy (error ~1e-16 of the largest squared value), not the
    leading ones' the series keeps."""
    if rows.shape[0] < rows.shape[1]:
        return np.linalg.svd(rows, full_matrices=False)[1:]
    values, vectors = np.linalg.eigh(rows.T @ rows)
    order = np.argsort(values)[::-1]
    return np.sqrt(np.clip(values[order], 0.0, None)), np.ascontiguousarray(vectors[:, order].T)


def fit_from_sums(gram: np.ndarray, target_basis: np.ndarray, target_sq: float, klt: bool = True) -> GroupFit:
    """A group's least-squares codes and their KLT from the Gram-form sums alone (B Bᵀ, Y Bᵀ, ||Y||²), whatever
    represents the basis (a network, a Chebyshev series). `klt=False` skips the KLT (rotation = identity, the
    codes in the basis' own coordinates): a stored series' codes are quantised in those (chebyshev.RotatedSeries),
    and the decomposition cost a fifth of a C file's encoding."""
    codes = np.linalg.solve(ridged(gram), target_basis.T).T  # (n, K)
    if not klt:
        return GroupFit(gram, target_basis, target_sq, np.eye(gram.shape[0]), codes)
    lower = np.linalg.cholesky(ridged(gram))
    # a group whose particles are all constant has no codes, and no directions
    whitened = codes @ lower
    if not codes.shape[0]:
        vt = np.zeros((0, gram.shape[0]))
    elif whitened.size >= GRAM_KLT_VALUES:
        vt = right_singular(whitened)[1]
    else:
        vt = np.linalg.svd(whitened, full_matrices=False)[2]
    rotation = np.linalg.solve(lower.T, vt.T).T  # Vᵀ L⁻¹: rows of rotation·basis are orthonormal
    return GroupFit(gram, target_basis, target_sq, rotation, whitened @ vt.T)


@dataclass(frozen=True)
class StoredDirections:
    """A group's kept KLT directions as int8 rows with float32 scales (what the decoder multiplies by), and the
    least-squares codes in them with their Gram-form sums: all a step needs but the rounding."""

    half: np.ndarray  # (r, K) int8
    scale: np.ndarray  # (r,) float32
    gram: np.ndarray  # (r, r)
    rhs: np.ndarray  # (n, r) Y (stored rows · B)ᵀ
    coefs: np.ndarray  # (n, r)

    @classmethod
    def solved(cls, fit: GroupFit, kept: np.ndarray) -> StoredDirections:
        scale = np.abs(fit.rotation[kept]).max(axis=1, initial=0.0).astype(np.float32)
        scale = np.where(scale > 0, scale, np.float32(1.0))
        half = np.rint(fit.rotation[kept] / scale[:, None] * ROW_LEVELS).astype(np.int8)
        stored = half.astype(np.float64) / ROW_LEVELS * scale[:, None]  # (r, K): what the decoder multiplies by
        gram, rhs = stored @ fit.gram @ stored.T, fit.target_basis @ stored.T
        coefs = np.linalg.solve(ridged(gram), rhs.T).T if kept.size else rhs
        return cls(half, scale, gram, rhs, coefs)


def quantise_codes(fits: list[GroupFit], step: float) -> QuantisedCodes:
    """Drop the directions whose coefficients would all round to zero, re-solve the rest for the stored (int8)
    directions, round them to multiples of `step`, and measure the decoded error."""
    rows, scales, ints, ss_res = [], [], [], 0.0
    for fit in fits:
        solved = fit.stored_directions(np.flatnonzero(fit.code_peaks >= step / 2))
        q = quantise_uniform(solved.coefs, step)
        ss_res += decoded_ss_res(fit.target_sq, q * step, solved.rhs, solved.gram)
        rows.append(solved.half)
        scales.append(solved.scale)
        ints.append(q)
    return QuantisedCodes(step, rows, scales, ints, ss_res)


def quantised_ss_res(fits: list[GroupFit], step: float) -> float:
    """quantise_codes(fits, step).ss_res, bit for bit, without making the integers: a step search asks it at
    every step it tries, and only the step it keeps is packed."""
    ss_res = 0.0
    for fit in fits:
        solved = fit.stored_directions(np.flatnonzero(fit.code_peaks >= step / 2))
        ss_res += decoded_ss_res(fit.target_sq, rounded(solved.coefs, step), solved.rhs, solved.gram)
    return ss_res


def rounded(coefs: np.ndarray, step: float) -> np.ndarray:
    """The codes as the file decodes them, q·step with q = quantise_uniform(coefs, step), as floats: the
    integers are exact in float64, so the products are the same bits."""
    return np.rint(np.asarray(coefs, dtype=np.float64) / step) * step


def decoded_ss_res(target_sq: float, decoded: np.ndarray, rhs: np.ndarray, gram: np.ndarray) -> float:
    """Σ squared error of codes `decoded` (n, r) from the Gram-form sums: ||Y||² − 2<Z, Y Bᵀ> + <ZᵀZ, B Bᵀ>."""
    return target_sq - 2 * float(np.vdot(decoded, rhs)) + float(np.vdot(decoded.T @ decoded, gram))


#: `codes_order` of a file whose codes are stored particle-major (format 8); absent: direction-major
PARTICLE_MAJOR = "particle"


def pack_codes(codes: QuantisedCodes, particle_major: bool = False) -> tuple[dict[str, bytes], dict]:
    """Blobs and metadata: every group's integer columns back to back (column-major, direction by direction),
    or with `particle_major` each particle's integers together (`codes_order`, format 8: C at 1 000 frames, its
    components apart, 13 % smaller so, as the quantised SVD's coefficients are), one lzma stream; the directions
    and their scales likewise. A group whose rows are None has no directions: its codes are the coefficients of
    the stored basis itself (a Chebyshev series file's coded groups); where no group has any, the file holds no
    arrays of them (format 11)."""
    columns = np.concatenate([q.ravel() if particle_major else q.T.ravel() for q in codes.ints])
    blobs, meta = {}, {"step": codes.step, "ranks": [int(q.shape[1]) for q in codes.ints]}
    if particle_major:
        meta["codes_order"] = PARTICLE_MAJOR
    blobs["codes"], meta["codes"] = pack_array(columns.astype(np.result_type(*[q.dtype for q in codes.ints])))
    rows = [r for r in codes.rows if r is not None]
    if not rows:  # format 11: no directions, no (empty) arrays of them: ~3-6 bytes of a 1 KB Jp file's metadata
        return blobs, meta
    if len(rows) < len(codes.rows):
        meta["directions"] = [r is not None for r in codes.rows]
    blobs["rows"], meta["rows"] = pack_array(np.concatenate([r.ravel() for r in rows]))
    blobs["row_scales"], meta["row_scales"] = pack_array(np.concatenate(
        [s for s in codes.row_scales if s is not None]))
    return blobs, meta


def reordered_codes(blobs: dict[str, bytes], meta: dict, particles: tuple[int, ...]) -> tuple[dict[str, bytes], dict]:
    """`blobs` and `meta` (pack_codes' and more) with the codes in the other order, direction- <-> particle-major,
    for groups of `particles` particles each, nothing else changed. Which order LZMA codes smaller is known only by
    compressing both: the encoder's fast screen (format.screen_size) prefers direction-major where the real coder
    packs particle-major 2.5 % smaller (C, 100 frames, seed 0, every 4th frame held out, R² 0.995: 24 468 B
    against 25 104 B), as the quantised SVD's file, sized both ways for real, was stored."""
    groups = code_groups(blobs, meta, particles)
    reordered = {key: value for key, value in meta.items() if key != "codes_order"}
    if meta.get("codes_order") != PARTICLE_MAJOR:
        reordered["codes_order"] = PARTICLE_MAJOR
    packed, reordered["codes"] = packed_code_groups(groups, reordered, meta["codes"]["dtype"])
    return {**blobs, "codes": packed}, reordered


def code_groups(blobs: dict[str, bytes], meta: dict, particles: tuple[int, ...]) -> list[np.ndarray]:
    """Each group's (n, rank) integer codes as `meta`'s order (codes_order) stores them, for groups of `particles`
    particles each; one CodecError line where they do not add up."""
    ranks = meta["ranks"]
    columns = unpack_array(_blob(blobs, "codes"), meta["codes"])
    ends = np.cumsum([n * r for n, r in zip(particles, ranks, strict=True)])
    if columns.ndim != 1 or (ends[-1] if ends.size else 0) != columns.size:
        raise CodecError(f"codes of {columns.size} integers are not groups of {particles} particles × {ranks} ranks")
    by_particle = meta.get("codes_order") == PARTICLE_MAJOR
    # a group's block is its (n, r) codes row-major (particle-major) or their transpose's (direction-major)
    return [block.reshape(n, r) if by_particle else block.reshape(r, n).T
            for block, n, r in zip(np.split(columns, ends[:-1]), particles, ranks, strict=True)]


def packed_code_groups(groups: list[np.ndarray], meta: dict, dtype: str | None = None) -> tuple[bytes, dict]:
    """(blob, spec) of the groups' (n, rank) integer codes in `meta`'s order (codes_order), as `dtype` where given
    (the type they were read as), else the narrowest that holds them."""
    by_particle = meta.get("codes_order") == PARTICLE_MAJOR
    columns = np.concatenate([(q if by_particle else q.T).ravel() for q in groups]) if groups else np.zeros(0, int)
    return pack_array(columns.astype(dtype) if dtype is not None else smallest_int(columns))


def unpack_codes(blobs: dict[str, bytes], meta: dict, shapes: list[tuple[int, int]]) -> list[np.ndarray]:
    """Per group (n_g, K_g) float64 codes q·δ·R, for the (particles, code size) of each group; a group stored
    without directions (pack_codes) gives its (n_g, rank_g) coefficients q·δ, whatever K_g says."""
    columns = unpack_array(_blob(blobs, "codes"), meta["codes"]).astype(np.float64)
    ranks = meta["ranks"]
    if "rows" in meta:
        rows = unpack_array(_blob(blobs, "rows"), meta["rows"]).astype(np.float64)
        scales = unpack_array(_blob(blobs, "row_scales"), meta["row_scales"]).astype(np.float64)
        directions = meta.get("directions", [True] * len(ranks))
    else:  # format 11: no group stores directions
        rows, scales, directions = np.zeros(0), np.zeros(0), meta.get("directions", [False] * len(ranks))
    by_particle = meta.get("codes_order") == PARTICLE_MAJOR
    if "codes_order" in meta and not by_particle:
        raise CodecError(f"the file's codes_order {meta['codes_order']!r} is not one this reader knows; it is "
                         f"inconsistent, encode it again")
    if len(ranks) != len(shapes) or len(directions) != len(ranks) \
            or columns.size != sum(n * r for (n, _), r in zip(shapes, ranks, strict=True)) \
            or rows.size != sum(k * r for (_, k), r, d in zip(shapes, ranks, directions, strict=True) if d):
        raise CodecError("the file's codes do not match its particle groups; it is inconsistent, encode it again")
    out, at_col, at_row, at_value = [], 0, 0, 0
    for (n, dim), rank, has_rows in zip(shapes, ranks, directions, strict=True):
        part = columns[at_col:at_col + n * rank]
        q = (part.reshape(n, rank) if by_particle else part.reshape(rank, n).T) * meta["step"]
        at_col += n * rank
        if has_rows:
            rotation = rows[at_value:at_value + rank * dim].reshape(rank, dim) / ROW_LEVELS * scales[
                at_row:at_row + rank, None]
            q = q @ rotation
            at_row, at_value = at_row + rank, at_value + rank * dim
        out.append(q)
    return out


def _blob(blobs: dict[str, bytes], name: str) -> bytes:
    try:
        return blobs[name]
    except KeyError:
        raise CodecError(f"the file lacks its {name!r} blob; it is inconsistent, encode it again") from None


def ridged(gram: np.ndarray) -> np.ndarray:
    """The Gram matrix with a relative ridge: solvable when a basis or a set of codes is rank-deficient."""
    if gram.size == 0:
        return gram
    return gram + ridge(float(np.mean(np.diag(gram)))) * np.eye(gram.shape[0])


def ridge(mean_diagonal: float) -> float:
    """The ridge ridged adds to a Gram matrix of this mean diagonal (block_gram adds it block by block)."""
    return _RIDGE * max(mean_diagonal, 1e-300)
