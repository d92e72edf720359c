"""A piecewise series (chebyshev.Stretches): the window's frames cut into P stretches, each with its own Chebyshev
series from its first frame to its last, the gap between two stretches a straight line; coefficients
degree-major so every sum still nests by degree; one stretch is the plain series bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.polynomial import chebyshev as npcheb

from mpm_inr.codec import CodecError, bilinear, chebyshev

U = chebyshev.frame_times(60)


def kinked(u: np.ndarray) -> np.ndarray:
    """A curve with a kink at u = 0 and a jump at u = 0.5, both between two frames of a 60-frame window where 4
    stretches meet (frames 29 | 30 and 44 | 45): no polynomial follows it, 4 stretches of degree 2 do."""
    return np.where(u < 0, u ** 2, 1 - u) + np.where(u >= 0.5, 0.3, 0.0)


def test_one_stretch_is_the_plain_series_bit_for_bit():
    one = chebyshev.Stretches()
    np.testing.assert_array_equal(one.vander(U, 7), npcheb.chebvander(U, 7))
    piece, x, weight = one.locate(U)
    assert not piece.any() and np.array_equal(x, U) and (weight == 1).all()
    assert one.lebesgue_constant(U, 8) == chebyshev.lebesgue_constant(U, 8)


@pytest.mark.parametrize("count", [2, 3, 8])
def test_rows_are_degree_major_so_a_lower_degree_is_a_prefix(count):
    """Row j·P + p is degree j of stretch p: the series of degree d is the first (d + 1)·P rows of any longer one
    (the nested sums of ProjectedTargets rely on it), and each time has exactly its stretch's polynomials."""
    stretches = chebyshev.Stretches(count, U.size)
    full = stretches.vander(U, 6)
    assert full.shape == (U.size, stretches.n_coefs(6)) and stretches.degree(full.shape[1]) == 6
    for degree in range(6):
        np.testing.assert_array_equal(full[:, :stretches.n_coefs(degree)], stretches.vander(U, degree))
    piece, x, weight = stretches.locate(U)
    assert (weight == 1).all() and np.all(full.reshape(U.size, 7, count)[np.arange(U.size), :, piece]
                                          == npcheb.chebvander(x, 6))
    assert np.count_nonzero(full, axis=1).max() == 7 and (np.abs(x) <= 1).all()
    assert stretches.frames_per_stretch(U).sum() == U.size and stretches.frames_per_stretch(U).min() >= 60 // count


def test_each_stretch_runs_from_its_first_frame_to_its_last_and_a_gap_is_a_straight_line():
    """60 frames in 4 stretches: frames 0-14, 15-29, 30-44, 45-59; x = -1 at a stretch's first frame and 1 at its
    last; a time between frames 14 and 15 is the line between stretch 0's end and stretch 1's start."""
    four = chebyshev.Stretches(4, 60)
    assert four.starts.tolist() == [0, 15, 30, 45, 60]
    frames = np.array([0, 14, 15, 29, 30, 59])
    piece, x, weight = four.locate(U[frames])
    assert piece.tolist() == [0, 0, 1, 1, 2, 3] and (weight == 1).all()
    np.testing.assert_allclose(x, [-1, 1, -1, 1, -1, 1], atol=1e-12)
    between = U[14] + 0.25 * (U[15] - U[14])
    piece, x, weight = four.locate(np.array([between]))
    assert piece.tolist() == [0] and x[0] == 1.0 and weight[0] == pytest.approx(0.75)
    row = four.vander(np.array([between]), 2).reshape(3, 4)
    np.testing.assert_allclose(row, [[0.75, 0.25, 0, 0], [0.75, -0.25, 0, 0], [0.75, 0.25, 0, 0]])


def test_a_kinked_curve_is_exact_in_stretches_and_a_line_across_their_gaps():
    four = chebyshev.Stretches(4, 60)
    u = chebyshev.sample_times(60)
    inside = four.locate(u)[2] == 1.0  # the network is sampled at half frames: fit those within the stretches
    samples = np.stack([kinked(u), -2 * kinked(u)], axis=-1)[:, None]  # (M, 1, 2): two curves
    coefs = chebyshev.fit_series(samples[inside], u[inside], 2, four)
    fine = np.linspace(-1, 1, 1001)
    piece, _, weight = four.locate(fine)
    decoded = chebyshev.evaluate(coefs, fine, four)[:, 0, 0]
    np.testing.assert_allclose(decoded[weight == 1], kinked(fine[weight == 1]), atol=1e-12)
    gap = weight < 1  # the straight line between the two frames around it
    line = weight[gap] * kinked(U[four.starts[piece[gap] + 1] - 1]) + (1 - weight[gap]) * kinked(
        U[four.starts[piece[gap] + 1]])
    np.testing.assert_allclose(decoded[gap], line, atol=1e-12)
    np.testing.assert_allclose(chebyshev.evaluate(coefs, fine, four).reshape(fine.size, -1),
                               four.vander(fine, 2) @ coefs.reshape(12, -1), atol=1e-12)
    plain = chebyshev.fit_series(samples, u, 8)  # more coefficients than the 12 of 4 x degree 2, still far off
    assert np.abs(chebyshev.evaluate(plain, fine)[:, 0, 0] - kinked(fine)).max() > 0.05


@pytest.mark.parametrize("count", [1, 3])
def test_projected_sums_match_the_evaluated_basis(count):
    """The Gram-form sums through the (per-stretch) Chebyshev projections equal those of the evaluated basis, with
    held-out frames and several groups."""
    rng = np.random.default_rng(0)
    n_frames, n_particles, n_comp, k = 40, 30, 2, 3
    stretches = chebyshev.Stretches(count, n_frames)
    values = rng.normal(size=(n_frames, n_particles, n_comp))
    mean, std = values.mean(axis=(0, 1)), np.array([0.5, 2.0])
    members = [np.arange(0, 20), np.arange(20, 30)]
    train = np.setdiff1d(np.arange(n_frames), np.arange(2, n_frames, 4))
    u = chebyshev.frame_times(n_frames)[train]
    coefs = rng.normal(size=(stretches.n_coefs(3), 2, k, n_comp))
    projected = chebyshev.ProjectedTargets.build(values, mean, std, members, u, 5, train, stretches)
    np.testing.assert_allclose(projected.poly_gram, stretches.vander(u, 5).T @ stretches.vander(u, 5), atol=1e-12)
    via_series = projected.fits([coefs[:, 0], coefs[:, 1]])
    basis = chebyshev.evaluate(coefs, u, stretches) * std  # (F, G, K, C) in original units
    bases = [basis[:, g].transpose(1, 0, 2).reshape(k, -1) for g in range(2)]
    direct = bilinear.fit_groups(bases, values[train], mean, members)
    for a, b in zip(via_series, direct, strict=True):
        np.testing.assert_allclose(a.gram, b.gram, rtol=1e-10)
        np.testing.assert_allclose(a.target_basis, b.target_basis, rtol=1e-10, atol=1e-12)
        assert a.ss_res == pytest.approx(b.ss_res, rel=1e-9)


def test_the_best_piecewise_series_of_a_rank_is_the_leading_singular_pairs_and_beats_one_polynomial():
    """Refined, a piecewise series is the best rank-r basis of its stretches and degree (the leading singular pairs
    of the targets on the orthonormalised piecewise polynomials); on curves with kinks it keeps far more than
    one polynomial of as many coefficients."""
    rng = np.random.default_rng(5)
    n_frames, n_particles, degree = 80, 40, 2
    stretches = chebyshev.Stretches(4, n_frames)
    u = chebyshev.frame_times(n_frames)
    shapes = np.stack([np.stack([kinked(u), np.abs(u)], axis=-1), np.stack([u, kinked(-u)], axis=-1)])
    values = np.einsum("pk,kfc->fpc", rng.normal(size=(n_particles, 2)), shapes)
    projected = chebyshev.ProjectedTargets.build(values, np.zeros(2), np.array([1.0, 0.5]), [np.arange(n_particles)],
                                                 u, degree, stretches=stretches)
    q = np.linalg.qr(stretches.vander(u, degree))[0]
    singular = np.linalg.svd(np.einsum("fi,fnc->nic", q, values).reshape(n_particles, -1), compute_uv=False)
    start = rng.normal(size=(stretches.n_coefs(degree), 2, 2))
    fit = projected.fits([projected.refine([start])[0]])[0]
    total = float((values ** 2).sum())
    best = total - float((singular[:2] ** 2).sum())  # ~0: the curves are piecewise quadratics on these stretches
    assert fit.ss_res == pytest.approx(best, rel=1e-6, abs=1e-8 * total) and fit.ss_res < 1e-8 * total
    np.testing.assert_allclose(fit.gram, np.eye(2), atol=1e-8)
    plain = chebyshev.ProjectedTargets.build(values, np.zeros(2), np.array([1.0, 0.5]), [np.arange(n_particles)],
                                             u, 11)  # 12 coefficients a curve, as the 4 stretches of degree 2
    one_fit = plain.fits([plain.refine([rng.normal(size=(12, 2, 2))])[0]])[0]
    assert one_fit.ss_res > 1e-4 * total


def test_the_best_basis_keeps_only_the_curves_a_series_may_ask_for():
    """max_rank (the model's K) keeps that many leading singular vectors per degree, not all C·(d + 1)·P of them
    (0.57 GB per degree over the whole simulation): the same best series up to it, none refined past it."""
    rng = np.random.default_rng(2)
    u = chebyshev.frame_times(40)
    values = rng.normal(size=(40, 30, 2))
    args = (values, np.zeros(2), np.ones(2), [np.arange(30)], u, 6)
    whole = chebyshev.ProjectedTargets.build(*args, stretches=chebyshev.Stretches(2, 40))
    capped = chebyshev.ProjectedTargets.build(*args, stretches=chebyshev.Stretches(2, 40), max_rank=3)
    start = rng.normal(size=(14, 3, 2))
    np.testing.assert_array_equal(capped.refine([start])[0], whole.refine([start])[0])
    assert capped._best_basis(0, 6)[2].shape[0] == 3
    more = rng.normal(size=(14, 4, 2))
    np.testing.assert_array_equal(capped.refine([more])[0], more)
    assert not np.array_equal(whole.refine([more])[0], more)


def test_each_stretch_is_guarded_up_to_its_ends():
    """The Lebesgue guard takes the worst stretch over its own frames: with every frame trained, a stretch of 50
    frames is the plain series of 50 frames; where a stretch's last frame is held out, it is checked out to it."""
    u = chebyshev.frame_times(200)
    four = chebyshev.Stretches(4, 200)
    fifty = chebyshev.frame_times(50)
    for degree in (4, 12, 16):
        assert four.lebesgue_constant(u, degree) == pytest.approx(chebyshev.lebesgue_constant(fifty, degree))
    train = np.setdiff1d(np.arange(200), [49, 99])  # two stretches' last frames held out
    assert four.lebesgue_constant(u[train], 12) > chebyshev.lebesgue_constant(fifty, 12)
    assert four.lebesgue_constant(u, 60) == math.inf  # more coefficients than a stretch's 50 frames


def test_stretch_counts_keep_at_least_the_minimum_frames_per_stretch():
    assert chebyshev.stretch_counts(20) == [1] and chebyshev.stretch_counts(199) == [1]
    assert chebyshev.stretch_counts(1000) == [1, 2, 4, 8]
    assert chebyshev.stretch_counts(10_000)[-1] == 64
    assert max(chebyshev.degrees_within(1000, chebyshev.Stretches(8, 1000))) <= 124


@pytest.mark.parametrize("count,n_frames,message", [
    (0, 100, "stretches, not a positive integer"), (-1, 100, "stretches, not a positive integer"),
    (2.0, 100, "stretches, not a positive integer"), (True, 100, "stretches, not a positive integer"),
    ("4", 100, "stretches, not a positive integer"), (4, 7, "fewer than two frames each")])
def test_a_bad_stretch_count_is_one_line(count, n_frames, message):
    with pytest.raises(CodecError, match=message) as err:
        chebyshev.Stretches(count, n_frames)
    assert "\n" not in str(err.value)


def test_rows_that_are_not_whole_stretches_are_one_line():
    with pytest.raises(CodecError, match="not a multiple of its 3 stretches"):
        chebyshev.evaluate(np.zeros((8, 1, 1)), U, chebyshev.Stretches(3, 60))


@pytest.mark.parametrize("shape", [(400, 30), (30, 400)])
def test_right_singular_pairs_match_an_svd_tall_from_the_gram_wide_by_svd(shape):
    """A tall matrix's pairs come from its small Gram matrix, without the left vectors: the same spectrum as an
    SVD, its leading right vectors the same up to sign, orthonormal, strongest first."""
    rng = np.random.default_rng(3)
    rows = rng.normal(size=shape) * np.geomspace(1.0, 1e-4, shape[1])
    singular, vt = bilinear.right_singular(rows)
    _, expected, expected_vt = np.linalg.svd(rows, full_matrices=False)
    np.testing.assert_allclose(singular, expected, rtol=1e-9, atol=1e-12 * expected[0])
    assert (np.diff(singular) <= 0).all()
    lead = 10
    np.testing.assert_allclose(np.abs(np.sum(vt[:lead] * expected_vt[:lead], axis=1)), 1.0, atol=1e-8)
    np.testing.assert_allclose(vt @ vt.T, np.eye(vt.shape[0]), atol=1e-9)
