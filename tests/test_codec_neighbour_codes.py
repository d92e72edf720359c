"""Codes stored as residuals of their neighbours' (mpm_inr.codec.neighbour_codes): lossless, deterministic, and
refused in one line where the file's parts do not fit together."""

from __future__ import annotations

import numpy as np
import pytest

from mpm_inr.codec import CodecError, bilinear, neighbour_codes
from mpm_inr.codec.neighbour_codes import Neighbours, RowMap


def _particles(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 2)), rng.integers(0, 3, size=n)


def _smooth_codes(positions: np.ndarray, rows: RowMap, rank: int, noise: float, seed: int = 1) -> np.ndarray:
    """(rows, rank) integers: a smooth function of each particle's position per part and curve, plus noise."""
    rng = np.random.default_rng(seed)
    freq = rng.normal(size=(rows.n_parts, rank, 2)) * 3
    phase = rng.random((rows.n_parts, rank))
    xy = positions[rows.particle]
    smooth = 200 * np.sin(np.einsum("nd,nkd->nk", xy, freq[rows.part]) + phase[rows.part])
    return np.rint(smooth + noise * rng.normal(size=smooth.shape)).astype(np.int64)


def test_residuals_restore_the_codes_exactly_and_are_smaller_where_neighbours_are_alike():
    positions, groups = _particles(400)
    constant = np.zeros(400 * 4, dtype=bool)
    constant[np.random.default_rng(2).choice(constant.size, 150, replace=False)] = True  # rows stored by value
    rows = RowMap.of_split(constant, 4)
    near = Neighbours.at(positions, groups)
    for noise, shrinks in ((2.0, True), (300.0, False)):
        ints = _smooth_codes(positions, rows, 6, noise)
        gains = neighbour_codes.fitted_gains(ints, rows, near)
        residual = neighbour_codes.residuals(ints, rows, near, gains)
        assert np.array_equal(neighbour_codes.restored(residual, rows, near, gains), ints)
        if shrinks:
            assert (residual ** 2).sum() < 0.1 * (ints ** 2).sum()
        else:  # neighbours that share nothing get small gains, and the residuals stay about the codes' size
            assert gains.mean() < 0.5 * neighbour_codes.GAIN_LEVELS
            assert (residual ** 2).sum() < 1.5 * (ints ** 2).sum()


def test_each_particle_is_predicted_from_its_nearest_earlier_particles_ties_by_order():
    positions, groups = _particles(120, seed=3)
    positions[7] = positions[8]  # the same cell: a tie the order breaks
    near = Neighbours.at(positions, groups)
    found, weights = near._nearest
    rank = np.empty(120, dtype=np.int64)
    rank[near.order] = np.arange(120)
    cells = near.cells.astype(np.int64)
    for i in range(120):
        earlier = np.flatnonzero(rank < rank[i])
        d2 = ((cells[earlier] - cells[i]) ** 2).sum(1)
        expect = earlier[np.lexsort((rank[earlier], d2))][:neighbour_codes.NEIGHBOURS]
        got = found[i][found[i] >= 0]
        assert np.array_equal(got, expect)
        assert weights[i].sum() == (0 if got.size == 0 else pytest.approx(neighbour_codes.WEIGHT_TOTAL, abs=2))
        if got.size:  # integers in proportion to 1/d², to within their rounding
            inverse = 1.0 / np.maximum(((cells[got] - cells[i]) ** 2).sum(1), 1)
            share = neighbour_codes.WEIGHT_TOTAL * inverse / inverse.sum()
            assert weights[i].dtype == np.int64 and np.abs(weights[i][:got.size] - share).max() <= 0.5
    assert (found[near.order[0]] == -1).all()  # the first particle has no one to be predicted from


def test_predicted_blobs_round_trip_through_the_packed_codes_in_either_order():
    positions, groups = _particles(200, seed=4)
    constant = np.zeros(200 * 4, dtype=bool)
    constant[:40] = True
    rows = RowMap.of_split(constant, 4)
    coded = _smooth_codes(positions, rows, 5, 3.0).astype(np.int16)
    by_value = np.random.default_rng(5).integers(-9, 9, size=(40, 1)).astype(np.int16)
    codes = bilinear.QuantisedCodes(0.5, [None, None], [None, None], [coded, by_value], 0.0)
    near = Neighbours.at(positions, groups)
    for particle_major in (False, True):
        blobs, meta = bilinear.pack_codes(codes, particle_major)
        predicted, predicted_meta = neighbour_codes.predicted_blobs(blobs, meta, codes.particles, rows, near)
        assert neighbour_codes.KEY in predicted_meta and predicted["codes"] != blobs["codes"]
        back, back_meta = neighbour_codes.restored_blobs(predicted, predicted_meta, codes.particles, rows)
        assert neighbour_codes.KEY not in back_meta
        restored = bilinear.code_groups(back, back_meta, codes.particles)
        assert np.array_equal(restored[0], coded) and np.array_equal(restored[1], by_value)
        assert neighbour_codes.restored_blobs(blobs, meta, codes.particles, rows) == (blobs, meta)


def test_predicted_codes_that_do_not_fit_their_particles_are_one_line():
    positions, groups = _particles(60, seed=6)
    rows = RowMap.of_split(np.zeros(60 * 4, dtype=bool), 4)
    codes = bilinear.QuantisedCodes(0.5, [None], [None], [_smooth_codes(positions, rows, 3, 1.0)], 0.0)
    blobs, meta = bilinear.pack_codes(codes)
    near = Neighbours.at(positions, groups)
    predicted, predicted_meta = neighbour_codes.predicted_blobs(blobs, meta, codes.particles, rows, near)
    gains_spec = predicted_meta[neighbour_codes.KEY]["gains"]
    wrong = {**predicted_meta, neighbour_codes.KEY: {**predicted_meta[neighbour_codes.KEY],
                                                    "gains": {**gains_spec, "shape": [1, 4, 3]}}}
    with pytest.raises(CodecError, match="a stored array has|do not match its particles"):
        neighbour_codes.restored_blobs(predicted, wrong, codes.particles, rows)
    without_cells = {k: v for k, v in predicted.items() if not k.endswith("/cells")}
    with pytest.raises(CodecError, match="lacks its 'codes_predicted/cells' array"):
        neighbour_codes.restored_blobs(without_cells, predicted_meta, codes.particles, rows)
    fewer_rows = RowMap.of_split(np.r_[np.ones(4, dtype=bool), np.zeros(59 * 4, dtype=bool)], 4)
    with pytest.raises(CodecError, match="not groups of|do not match its particles"):
        neighbour_codes.restored_blobs(predicted, predicted_meta, (fewer_rows.particle.size,), fewer_rows)


def test_prediction_groups_must_be_labels():
    with pytest.raises(ValueError, match="non-negative integers"):
        Neighbours.at(np.zeros((3, 2)), np.array([0.0, 1.5, 2.0]))
