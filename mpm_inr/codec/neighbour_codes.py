"""Codes predicted from each particle's neighbours at the window's first frame (format 13).

A split file's codes (encode._encoded_split) are each particle-part's coefficients on the window's curves. Over
the whole simulation, C's leading coefficients of neighbouring particles are alike: the mean of a particle's six
nearest neighbours (at rest, all around it) predicts 50-80 % of their variance (seed 0, R² 0.995, 428 curves).
So the file may store, in place of its integer codes, their residual after a prediction from the particles
already decoded: the particles go in Morton order of their cells at the window's first frame, each predicted by
the inverse-square-distance mean of its NEIGHBOURS nearest earlier particles, times a gain per material, part and
curve. The transform is lossless on the integers (the decoded values are the file's without it, bit for bit),
so it changes the bytes only, and a file keeps it only where it comes out smaller (encode._smallest): the cells
and materials it stores cost ~18 KB for 9 000 particles (compressed), against 280 KB saved on the codes of that
file (3.727 -> 3.447 MB; NEIGHBOURS 2: 3.458 MB, 4 to 10 larger in a first floating-point version; cells of 1/256
put a third of the particles in a shared cell and saved half as much).

Everything a decoder recomputes is integer arithmetic (cells, Morton order, squared distances, weights from
their products, floor divisions), so the encoder's prediction, made for every particle at once, and the decoder's,
made one particle at a time, agree exactly on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from mpm_inr.codec import bilinear
from mpm_inr.codec.format import CodecError
from mpm_inr.codec.quantise import pack_array, smallest_int, unpack_array

KEY = "codes_predicted"  # the encoding's metadata of a file whose codes are residuals
CELLS = 1024  # a first-frame position is stored as its cell of a CELLS x CELLS grid on the unit square
NEIGHBOURS = 3  # earlier particles a particle's codes are predicted from
WEIGHT_TOTAL = 64  # the neighbours' integer weights add up to about this
GAIN_LEVELS = 32  # a gain is stored in steps of 1/GAIN_LEVELS ...
GAIN_MAX = 2  # ... from 0 to GAIN_MAX
#: a file's codes are tried as residuals only where its fast-compressed payload is at least this large: the
#: cells and materials (~2 bytes a particle) would outweigh the saving on a small file (C, 100 frames: ~25 KB)
MIN_SCREENED_BYTES = 1 << 18
_DISTANCE_BLOCK = 1 << 22  # pairwise squared distances formed at a time (int64)


@dataclass(frozen=True)
class RowMap:
    """Which particle and part each row of the predicted code group is: a split file's coded rows are the
    particle-parts not stored by value (row = particle·parts + part), in order."""

    particle: np.ndarray  # (n,) int
    part: np.ndarray  # (n,) int
    n_parts: int

    @classmethod
    def of_split(cls, constant: np.ndarray, n_parts: int) -> RowMap:
        """The coded rows of a split file whose (N·parts,) `constant` mask marks the rows stored by value."""
        rows = np.flatnonzero(~np.asarray(constant, dtype=bool))
        return cls(rows // n_parts, rows % n_parts, n_parts)


@dataclass(frozen=True)
class Neighbours:
    """The particles' cells and prediction groups (material), and what follows from them alone: the Morton
    order the codes are predicted in, each particle's nearest earlier particles and their integer weights."""

    cells: np.ndarray  # (P, 2) uint16
    groups: np.ndarray  # (P,) small non-negative int

    @classmethod
    def at(cls, positions: np.ndarray, groups: np.ndarray) -> Neighbours:
        """From (P, 2) positions in the unit square (clipped to it) and (P,) group labels."""
        cells = np.clip(np.floor(np.asarray(positions, dtype=np.float64) * CELLS), 0, CELLS - 1).astype(np.uint16)
        labels = np.asarray(groups)
        if labels.size and (labels.min() < 0 or not np.array_equal(labels, np.rint(labels))):
            raise ValueError("prediction groups must be non-negative integers")
        return cls(cells, labels.astype(np.int64))

    @cached_property
    def n_groups(self) -> int:
        return int(self.groups.max()) + 1 if self.groups.size else 0

    @cached_property
    def order(self) -> np.ndarray:
        """Particles in Morton order of their cells, ties by index."""
        x, y = self.cells[:, 0].astype(np.int64), self.cells[:, 1].astype(np.int64)
        morton = np.zeros(x.size, dtype=np.int64)
        for bit in range(int(CELLS - 1).bit_length()):
            morton |= ((x >> bit) & 1) << (2 * bit) | ((y >> bit) & 1) << (2 * bit + 1)
        return np.lexsort((np.arange(x.size), morton))

    @cached_property
    def _nearest(self) -> tuple[np.ndarray, np.ndarray]:
        """(P, NEIGHBOURS) each particle's nearest earlier particles (-1: none) and their integer weights."""
        n = self.cells.shape[0]
        rank = np.empty(n, dtype=np.int64)
        rank[self.order] = np.arange(n)
        cells = self.cells.astype(np.int64)
        found = -np.ones((n, NEIGHBOURS), dtype=np.int64)
        dist2 = np.zeros((n, NEIGHBOURS), dtype=np.int64)
        never = np.iinfo(np.int64).max
        k = min(NEIGHBOURS, n)
        per_block = max(1, _DISTANCE_BLOCK // max(n, 1))
        for lo in range(0, n, per_block):
            rows = np.arange(lo, min(n, lo + per_block))
            d2 = ((cells[rows, None, :] - cells[None, :, :]) ** 2).sum(-1)
            key = d2 * n + rank[None, :]  # unique per row: the k smallest are one set, whatever the sort
            key[rank[None, :] >= rank[rows, None]] = never
            nearest = np.argpartition(key, k - 1, axis=1)[:, :k] if k < n else np.argsort(key, axis=1)[:, :k]
            keys = np.take_along_axis(key, nearest, axis=1)
            by_key = np.argsort(keys, axis=1)
            nearest, keys = np.take_along_axis(nearest, by_key, 1), np.take_along_axis(keys, by_key, 1)
            earlier = keys != never
            found[rows, :k] = np.where(earlier, nearest, -1)
            dist2[rows, :k] = np.where(earlier, keys // n, 0)
        return found, _inverse_square_weights(found >= 0, np.maximum(dist2, 1))

    def sums(self, dense: np.ndarray) -> np.ndarray:
        """(P, parts, r) each particle's weighted sum of its earlier neighbours' codes."""
        found, weights = self._nearest
        out = np.zeros(dense.shape, dtype=np.int64)
        for j in range(found.shape[1]):
            has = found[:, j] >= 0
            out[has] += weights[has, j, None, None] * dense[found[has, j]]
        return out

    @cached_property
    def weight_sums(self) -> np.ndarray:
        return self._nearest[1].sum(axis=1)

    def blobs(self) -> tuple[dict[str, bytes], dict[str, Any]]:
        blobs, meta = {}, {}
        blobs[f"{KEY}/cells"], meta["cells"] = pack_array(self.cells)
        blobs[f"{KEY}/groups"], meta["groups"] = pack_array(smallest_int(self.groups))
        return blobs, meta

    @classmethod
    def from_blobs(cls, blobs: dict[str, bytes], meta: dict[str, Any]) -> Neighbours:
        cells = unpack_array(_blob(blobs, f"{KEY}/cells"), meta["cells"])
        groups = unpack_array(_blob(blobs, f"{KEY}/groups"), meta["groups"]).astype(np.int64)
        if cells.ndim != 2 or cells.shape[1] != 2 or groups.shape != (cells.shape[0],) or (groups < 0).any():
            raise CodecError("the file's neighbour cells and groups do not match; it is inconsistent, encode it again")
        return cls(cells, groups)


def _inverse_square_weights(valid: np.ndarray, dist2: np.ndarray) -> np.ndarray:
    """(P, K) integer weights ∝ 1/d² adding up to about WEIGHT_TOTAL, in integers alone: 1/d_j² ∝ the product of
    the other neighbours' d² (at most (2·CELLS²)^(K-1), 4.4e12 for three), rounded half up."""
    others = np.zeros(dist2.shape, dtype=np.int64)
    for j in range(dist2.shape[1]):
        product = np.ones(dist2.shape[0], dtype=np.int64)
        for k in range(dist2.shape[1]):
            if k != j:
                product *= np.where(valid[:, k], dist2[:, k], 1)
        others[:, j] = np.where(valid[:, j], product, 0)
    total = np.maximum(others.sum(axis=1, keepdims=True), 1)
    return (2 * WEIGHT_TOTAL * others + total) // (2 * total)


def _predictions(sums: np.ndarray, gains: np.ndarray, weight_sums: np.ndarray) -> np.ndarray:
    """gain/GAIN_LEVELS · sums/weight_sums, rounded half up by integer arithmetic (0 with no neighbours)."""
    den = GAIN_LEVELS * np.maximum(weight_sums, 1).reshape((-1,) + (1,) * (sums.ndim - 1))
    out = np.floor_divide(2 * gains * sums + den, 2 * den)
    return np.where(weight_sums.reshape(den.shape) > 0, out, 0)


def _dense(ints: np.ndarray, rows: RowMap, n_particles: int) -> np.ndarray:
    dense = np.zeros((n_particles, rows.n_parts, ints.shape[1]), dtype=np.int64)
    dense[rows.particle, rows.part] = ints
    return dense


def fitted_gains(ints: np.ndarray, rows: RowMap, near: Neighbours) -> np.ndarray:
    """(groups, parts, r) uint8 gains, least squares per material, part and curve, in steps of 1/GAIN_LEVELS."""
    dense = _dense(np.asarray(ints, dtype=np.int64), rows, near.cells.shape[0])
    return _gains(dense, near.sums(dense), near)


def residuals(ints: np.ndarray, rows: RowMap, near: Neighbours, gains: np.ndarray) -> np.ndarray:
    """The (n, r) codes less their predictions from the earlier neighbours' codes (all at once)."""
    dense = _dense(np.asarray(ints, dtype=np.int64), rows, near.cells.shape[0])
    return _residuals(dense, near.sums(dense), rows, near, gains)


def predicted(ints: np.ndarray, rows: RowMap, near: Neighbours) -> tuple[np.ndarray, np.ndarray]:
    """(residuals, gains) of fitted_gains and residuals, the neighbours' sums formed once."""
    dense = _dense(np.asarray(ints, dtype=np.int64), rows, near.cells.shape[0])
    sums = near.sums(dense)
    gains = _gains(dense, sums, near)
    return _residuals(dense, sums, rows, near, gains), gains


def _gains(dense: np.ndarray, sums: np.ndarray, near: Neighbours) -> np.ndarray:
    mean = sums / np.maximum(near.weight_sums, 1)[:, None, None]
    gains = np.zeros((near.n_groups,) + dense.shape[1:], dtype=np.float64)
    for group in range(near.n_groups):
        of = near.groups == group
        gains[group] = (dense[of] * mean[of]).sum(0) / np.maximum((mean[of] ** 2).sum(0), 1e-300)
    return np.rint(np.clip(gains, 0, GAIN_MAX) * GAIN_LEVELS).astype(np.uint8)


def _residuals(dense: np.ndarray, sums: np.ndarray, rows: RowMap, near: Neighbours,
               gains: np.ndarray) -> np.ndarray:
    predicted = _predictions(sums, gains.astype(np.int64)[near.groups], near.weight_sums)
    return (dense - predicted)[rows.particle, rows.part]


def restored(residual: np.ndarray, rows: RowMap, near: Neighbours, gains: np.ndarray) -> np.ndarray:
    """The (n, r) codes from their residuals, particle by particle in Morton order (each prediction reads only
    particles restored before it)."""
    n_particles = near.cells.shape[0]
    dense = _dense(np.asarray(residual, dtype=np.int64), rows, n_particles)
    coded = np.zeros((n_particles, rows.n_parts), dtype=bool)
    coded[rows.particle, rows.part] = True
    found, weights = near._nearest
    gain = gains.astype(np.int64)
    for i in near.order:
        has = found[i] >= 0
        if has.any():
            sums = (weights[i, has, None, None] * dense[found[i, has]]).sum(0)
            dense[i] += _predictions(sums[None], gain[near.groups[i]][None], near.weight_sums[i:i + 1])[0]
            dense[i] *= coded[i][:, None]
    return dense[rows.particle, rows.part]


def predicted_blobs(blobs: dict[str, bytes], meta: dict, particles: tuple[int, ...], rows: RowMap,
                    near: Neighbours) -> tuple[dict[str, bytes], dict]:
    """A point's code blobs and metadata (bilinear.pack_codes') with its first group's codes as residuals (the
    split file's coded particle-parts; any other group, its particles stored by value, as it was) and what a
    decoder needs to undo it: the cells, groups and gains."""
    groups = bilinear.code_groups(blobs, meta, particles)
    if groups[0].shape[0] != rows.particle.size:
        raise ValueError(f"the first code group has {groups[0].shape[0]} rows, the row map {rows.particle.size}")
    groups[0], gains = predicted(groups[0], rows, near)
    out_meta = dict(meta)
    packed, out_meta["codes"] = bilinear.packed_code_groups(groups, meta)
    side, out_meta[KEY] = near.blobs()
    side[f"{KEY}/gains"], out_meta[KEY]["gains"] = pack_array(gains)
    return {**blobs, **side, "codes": packed}, out_meta


def restored_blobs(blobs: dict[str, bytes], encoding: dict, particles: tuple[int, ...], rows: RowMap
                   ) -> tuple[dict[str, bytes], dict]:
    """The file's blobs and encoding metadata with its codes as they were before prediction (one CodecError line
    where its parts do not fit together), for a file whose encoding holds KEY; others as they are."""
    if KEY not in encoding:
        return blobs, encoding
    spec = encoding[KEY]
    near = Neighbours.from_blobs(blobs, spec)
    gains = unpack_array(_blob(blobs, f"{KEY}/gains"), spec["gains"])
    groups = bilinear.code_groups(blobs, encoding, particles)
    if (near.cells.shape[0] <= (rows.particle.max() if rows.particle.size else -1) or not groups
            or groups[0].shape[0] != rows.particle.size
            or gains.shape != (near.n_groups, rows.n_parts, groups[0].shape[1])):
        raise CodecError("the file's predicted codes do not match its particles; it is inconsistent, encode it again")
    groups[0] = restored(groups[0], rows, near, gains)
    plain = {key: value for key, value in encoding.items() if key != KEY}
    packed, plain["codes"] = bilinear.packed_code_groups(groups, encoding)
    return {**blobs, "codes": packed}, plain


def _blob(blobs: dict[str, bytes], key: str) -> bytes:
    if key not in blobs:
        raise CodecError(f"the file lacks its {key!r} array; it is inconsistent, encode it again")
    return blobs[key]
