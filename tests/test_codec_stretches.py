"""A piecewise series (chebyshev.Stretches): the window cut into P stretches, each with its own Chebyshev series,
coefficients degree-major so every sum still nests by degree; one stretch is the plain series bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.polynomial import chebyshev as npcheb

from mpm_inr.codec import CodecError, bilinear, chebyshev

U = chebyshev.frame_times(60)


def kinked(u: np.ndarray) -> np.ndarray:
    """A curve with a kink at u = 0 and a jump at u = 0.5: no polynomial follows it, 4 stretches of degree 2 do."""
    return np.where(u < 0, u ** 2, 1 - u) + np.where(u >= 0.5, 0.3, 0.0)


def test_one_stretch_is_the_plain_series_bit_for_bit():
    one = chebyshev.Stretches()
    np.testing.assert_array_equal(one.vander(U, 7), npcheb.chebvander(U, 7))
    piece, x = one.locate(U)
    assert not piece.any() and x is not None and np.array_equal(x, U)
    assert one.lebesgue_constant(U, 8) == chebyshev.lebesgue_constant(U, 8)


@pytest.mark.parametrize("count", [2, 3, 8])
def test_rows_are_degree_major_so_a_lower_degree_is_a_prefix(count):
    """Row j·P + p is degree j of stretch p: the series of degree d is the first (d + 1)·P rows of any longer one
    (the nested sums of ProjectedTargets rely on it), and each time has exactly its stretch's polynomials."""
    stretches = chebyshev.Stretches(count)
    full = stretches.vander(U, 6)
    assert full.shape == (U.size, stretches.n_coefs(6)) and stretches.degree(full.shape[1]) == 6
    for degree in range(6):
        np.testing.assert_array_equal(full[:, :stretches.n_coefs(degree)], stretches.vander(U, degree))
    piece, x = stretches.locate(U)
    assert np.all(full.reshape(U.size, 7, count)[np.arange(U.size), :, piece] == npcheb.chebvander(x, 6))
    assert np.count_nonzero(full, axis=1).max() == 7 and (np.abs(x) <= 1).all()
    assert stretches.frames_per_stretch(U).sum() == U.size and stretches.frames_per_stretch(U).min() >= 60 // count


def test_boundaries_belong_to_the_later_stretch_and_the_ends_to_the_first_and_last():
    piece, x = chebyshev.Stretches(4).locate(np.array([-1.0, -0.5, 0.0, 0.4999, 0.5, 1.0]))
    assert piece.tolist() == [0, 1, 2, 2, 3, 3]
    np.testing.assert_allclose(x, [-1, -1, -1, 1 - 2e-4 * 2, -1, 1], atol=1e-9)


def test_a_kinked_curve_is_exact_in_stretches_and_evaluated_between_frames():
    u = chebyshev.sample_times(60)
    samples = np.stack([kinked(u), -2 * kinked(u)], axis=-1)[:, None]  # (M, 1, 2): two curves
    coefs = chebyshev.fit_series(samples, u, 2, chebyshev.Stretches(4))
    fine = np.linspace(-1, 1, 1001)
    np.testing.assert_allclose(chebyshev.evaluate(coefs, fine, chebyshev.Stretches(4))[:, 0, 0], kinked(fine),
                               atol=1e-12)
    plain = chebyshev.fit_series(samples, u, 8)  # more coefficients than the 12 of 4 x degree 2, still far off
    assert np.abs(chebyshev.evaluate(plain, fine)[:, 0, 0] - kinked(fine)).max() > 0.05


def test_projected_sums_of_stretches_match_the_evaluated_basis():
    """The Gram-form sums through the per-stretch projections equal those of the evaluated piecewise basis, with
    held-out frames and several groups."""
    rng = np.random.default_rng(0)
    n_frames, n_particles, n_comp, k = 40, 30, 2, 3
    stretches = chebyshev.Stretches(3)
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
    stretches = chebyshev.Stretches(4)
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


def test_each_stretch_is_guarded_up_to_its_ends():
    """The Lebesgue guard takes the worst stretch, up to its boundaries (a decoded time between a stretch's last
    frame and the boundary is extrapolated by it): more stretches of the same frames bound a lower degree."""
    u = chebyshev.frame_times(200)
    four = chebyshev.Stretches(4)
    assert four.lebesgue_constant(u, 4) < 4 and four.lebesgue_constant(u, 16) > chebyshev.lebesgue_constant(u, 16)
    piece, x = four.locate(u)
    ends = chebyshev.lebesgue_constant(x[piece == 1], 12, span=(-1.0, 1.0))
    assert ends >= chebyshev.lebesgue_constant(x[piece == 1], 12)
    assert four.lebesgue_constant(u, 60) == math.inf  # more coefficients than a stretch's 50 frames


def test_stretch_counts_keep_at_least_the_minimum_frames_per_stretch():
    assert chebyshev.stretch_counts(20) == [1] and chebyshev.stretch_counts(100) == [1, 2]
    assert chebyshev.stretch_counts(1000) == [1, 2, 4, 8, 16]
    assert chebyshev.stretch_counts(10_000)[-1] == 128
    assert max(chebyshev.degrees_within(1000, chebyshev.Stretches(16))) <= 61


@pytest.mark.parametrize("count", [0, -1, 2.0, True, "4"])
def test_a_bad_stretch_count_is_one_line(count):
    with pytest.raises(CodecError, match="stretches, not a positive integer") as err:
        chebyshev.Stretches(count)
    assert "\n" not in str(err.value)


def test_rows_that_are_not_whole_stretches_are_one_line():
    with pytest.raises(CodecError, match="not a multiple of its 3 stretches"):
        chebyshev.evaluate(np.zeros((8, 1, 1)), U, chebyshev.Stretches(3))
