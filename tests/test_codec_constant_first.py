"""The constant-first candidate of a one-component series file (chebyshev.ProjectedTargets.constant_first_series):
each group's curves re-spanned to start with T0, exactly constant in t, so that a particle holding its value over
the window off the centre takes one code instead of two (Jp at 100 frames), searched beside the plain best series
(encode.SeriesTargets._count_points), the smaller file kept."""

from __future__ import annotations

import numpy as np
import pytest

from mpm_inr.codec import chebyshev, format
from mpm_inr.codec import encode as encode_module
from mpm_inr.codec.encode import CodecSettings
from mpm_inr.codec.quantise import roundtrip_tensors
from mpm_inr.data.window import FieldWindow

N_FRAMES, N_PARTICLES = 40, 400


def resting_and_drifting(seed: int = 0, n_comp: int = 1) -> np.ndarray:
    """(T, N, C) float32: 60 % of the particles constant over the window at values scattered about 1, the rest
    drifting down from below 1 the more the lower they start (Jp's compressed snow): the window's strongest
    direction then tilts from constant toward the drift."""
    rng = np.random.default_rng(seed)
    u = chebyshev.frame_times(N_FRAMES)
    resting = rng.random(N_PARTICLES) < 0.6
    level = np.where(resting, 1.0 + 0.2 * rng.normal(size=N_PARTICLES), 1.0 - 0.3 * rng.random(N_PARTICLES))
    drift = np.where(resting, 0.0, 0.5 * (1.0 - level))
    curve = level[None, :] - drift[None, :] * (u[:, None] + 0.3 * u[:, None] ** 2)
    noise = 1e-4 * rng.normal(size=(N_FRAMES, N_PARTICLES)) * ~resting
    values = (curve + noise)[:, :, None] * np.linspace(1.0, 0.5, n_comp)
    return values.astype(np.float32)


def projected_targets(values: np.ndarray, degree: int) -> chebyshev.ProjectedTargets:
    mean = values.reshape(-1, values.shape[2]).mean(axis=0, dtype=np.float64)
    std = values.reshape(-1, values.shape[2]).std(axis=0, dtype=np.float64)
    return chebyshev.ProjectedTargets.build(values, mean, std, [np.arange(values.shape[1])],
                                            chebyshev.frame_times(values.shape[0]), degree)


def constrained_best_ss_res(values: np.ndarray, mean: np.ndarray, degree: int, rank: int) -> float:
    """The least error of rank-r codes over every series of `degree` holding the constant curve, by brute force:
    the targets on orthonormal polynomials over the frames (QR: the first is the constant), the constant
    coordinate kept whole and the best r - 1 of the others."""
    targets = (values[:, :, 0] - mean[0]).astype(np.float64)
    q = np.linalg.qr(np.polynomial.chebyshev.chebvander(chebyshev.frame_times(values.shape[0]), degree))[0]
    coords = q.T @ targets  # (d + 1, N)
    singular = np.linalg.svd(coords[1:], compute_uv=False)
    return float((targets ** 2).sum() - (coords[0] ** 2).sum() - (singular[:rank - 1] ** 2).sum())


@pytest.mark.parametrize("rank", [2, 3])
def test_the_first_curve_is_exactly_constant_as_decoded_and_the_curves_are_the_best_holding_it(rank):
    """Curve 0 has no coefficient past degree 0, so it stays exactly constant through float32 and 4-bit storage;
    the curves are orthonormal over the training frames (the polynomials' Gram metric, original units), and
    their codes' error is the least of any rank-r series of the degree that holds the constant curve: no less
    than the plain best series'."""
    degree = 6
    values = resting_and_drifting()
    projected = projected_targets(values, degree)
    curves = projected.constant_first_series(0, degree, rank)
    assert curves.shape == (degree + 1, rank, 1) and curves[0, 0, 0] != 0 and not curves[1:, 0].any()
    scaled = curves[:, :, 0] * projected.std
    np.testing.assert_allclose(scaled.T @ projected.poly_gram @ scaled, np.eye(rank), atol=1e-8)
    fit = projected.fits_group(curves, 0)
    best = projected.fits_group(projected.best_series(0, degree, rank), 0)
    mean = values.reshape(-1, 1).mean(axis=0, dtype=np.float64)
    ridge = 1e-9 * projected.target_sq[0]  # bilinear.ridged's share of the Gram matrix, ten times over
    assert fit.ss_res == pytest.approx(constrained_best_ss_res(values, mean, degree, rank), abs=ridge)
    assert best.ss_res <= fit.ss_res
    start = np.random.default_rng(1).normal(size=(degree + 1, rank, 1))
    np.testing.assert_array_equal(projected.refine([start], constant_first=True)[0], curves)
    stored = chebyshev.rotated_series([curves], 4, lambda g, c: projected.fits_group(c, g, klt=False))
    decoded = roundtrip_tensors({"coefs": stored.stored}, 4)["coefs"].astype(np.float64)
    at = chebyshev.evaluate(decoded, np.linspace(-1.0, 1.0, 1001))[:, 0]
    assert np.ptp(at) == 0.0 and np.ptp(chebyshev.evaluate(decoded, np.linspace(-1.0, 1.0, 1001))[:, 1]) > 0


def test_only_one_component_one_stretch_series_of_two_curves_or_more_are_re_spanned():
    """One curve is left the best one (it is the strongest direction), and a field of several components or a
    piecewise series (whose T0 is constant per stretch only) never holds the candidate."""
    values = resting_and_drifting()
    projected = projected_targets(values, 4)
    start = np.random.default_rng(2).normal(size=(5, 1, 1))
    np.testing.assert_array_equal(projected.refine([start], constant_first=True)[0], projected.best_series(0, 4, 1))
    assert projected.constant_first_possible and not projected.holds_constant_first(1)
    assert not projected_targets(resting_and_drifting(n_comp=2), 4).constant_first_possible
    mean, std = np.ones(1), np.ones(1)
    piecewise = chebyshev.ProjectedTargets.build(values, mean, std, [np.arange(N_PARTICLES)],
                                                 chebyshev.frame_times(N_FRAMES), 4, stretches=chebyshev.Stretches(
                                                     2, N_FRAMES))
    assert not piecewise.constant_first_possible


def synthetic_window(values: np.ndarray) -> FieldWindow:
    n_frames, n_particles, n_comp = values.shape
    flat = values.reshape(-1, n_comp)
    return FieldWindow("Jp", np.arange(n_frames), values, np.zeros((n_frames, n_particles, 2), np.float32),
                       np.zeros(n_particles, np.int64), np.zeros(n_particles, np.int64),
                       np.zeros(n_frames, dtype=bool), flat.mean(axis=0).astype(np.float32),
                       flat.std(axis=0).astype(np.float32))


def file_bytes(points: list[encode_module.Point]) -> int:
    """The bytes of the smallest file among a search's finalists, compressed for real (encode._smallest)."""
    meta, _, packed = encode_module._smallest(points, {"kind": "bilinear"}, {})
    encoding = {k: v for k, v in meta.items() if k not in encode_module.SEARCH_KEYS}
    return format.file_bytes(len(format.meta_blob({"kind": "bilinear", "encoding": encoding})), len(packed))


@pytest.mark.parametrize("target", [0.995, 0.999])
def test_the_search_with_the_candidate_makes_no_larger_file_and_here_a_smaller_one(target):
    """Particles resting off the centre and others drifting, one component, network curves [1, u, u²]: searched
    with the constant-first candidate beside the plain series, the file compressed for real is never larger than
    without it, and here smaller (the plain first curve tilts toward the drift, so each resting particle pays a
    second code)."""
    values = resting_and_drifting(seed=3)
    window = synthetic_window(values)
    u = chebyshev.sample_times(N_FRAMES)
    samples = np.stack([np.ones_like(u), u, u ** 2], axis=-1)[:, None, :, None]  # (M, G, K, C)
    gt = values.astype(np.float64)
    ss_tot = float(((gt - gt.mean()) ** 2).sum())
    settings = CodecSettings(target_r2=target)
    goal = encode_module._search_goal(target)

    def searched(constant_first: bool) -> list[encode_module.Point]:
        series = encode_module.SeriesTargets(window.values, window, [np.arange(N_PARTICLES)], None, samples, u, [],
                                             ss_tot, constant_first=constant_first)
        return series.points(goal, settings)

    plain, both = searched(False), searched(True)
    assert plain and both
    assert file_bytes(both) < file_bytes(plain)
