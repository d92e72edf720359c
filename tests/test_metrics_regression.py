"""Point-wise metrics against textbook formulas on small hand-computed arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mpm_inr.metrics import (
    compression_ratio,
    mse,
    pearson_r2,
    pooled_slope_intercept,
    r2_min_component,
    r2_per_component,
    r2_score,
    regression,
    slope_intercept,
)


def column(values: list[float]) -> np.ndarray:
    """A (T=1, N, C=1) field from a list of values."""
    return np.asarray(values, dtype=np.float64)[None, :, None]


def f_like(seed: int = 0, frames: int = 6, particles: int = 50) -> np.ndarray:
    """Deformation-gradient-like data: diagonal ≈ 1, off-diagonal ≈ 0, small spread around each."""
    rng = np.random.default_rng(seed)
    offset = np.array([1.0, 0.0, 0.0, 1.0])
    return offset + 0.01 * rng.normal(size=(frames, particles, 4))


def test_hand_computed_case() -> None:
    gt = column([1, 2, 3, 4])  # mean 2.5, SS_tot 5
    pred = column([1, 2, 3, 5])  # SS_res 1
    assert r2_score(gt, pred) == pytest.approx(0.8, abs=1e-15)
    assert r2_per_component(gt, pred) == pytest.approx([0.8], abs=1e-15)
    assert mse(gt, pred) == pytest.approx(0.25, abs=1e-15)
    # Sxx = 5, Syy = 8.75, Sxy = 6.5 (pred mean 2.75)
    assert pearson_r2(gt, pred) == pytest.approx(6.5**2 / (5 * 8.75), abs=1e-15)
    slope, intercept = slope_intercept(gt, pred)
    assert slope == pytest.approx(1.3, abs=1e-15)
    assert intercept == pytest.approx(2.75 - 1.3 * 2.5, abs=1e-14)
    assert pooled_slope_intercept(gt, pred) == pytest.approx((slope, intercept), abs=1e-14)  # one component


def test_perfect_prediction() -> None:
    gt = f_like()
    assert r2_score(gt, gt) == 1.0
    assert r2_per_component(gt, gt) == [1.0] * 4
    assert mse(gt, gt) == 0.0
    assert pearson_r2(gt, gt) == pytest.approx(1.0, abs=1e-12)
    assert slope_intercept(gt, gt) == pytest.approx((1.0, 0.0), abs=1e-12)


def test_mean_predictor_scores_zero() -> None:
    gt = f_like()
    pred = np.broadcast_to(gt.mean(axis=(0, 1)), gt.shape)
    assert r2_score(gt, pred) == pytest.approx(0.0, abs=1e-12)
    assert r2_per_component(gt, pred) == pytest.approx([0.0] * 4, abs=1e-12)


def test_per_component_means_are_used() -> None:
    """Predicting each component's mean explains nothing; a global-mean SS_tot would call it R² ≈ 1."""
    gt = f_like()
    pred = np.broadcast_to(gt.mean(axis=(0, 1)), gt.shape)
    residual = ((pred - gt) ** 2).sum()
    global_mean_r2 = 1.0 - residual / ((gt - gt.mean()) ** 2).sum()
    assert global_mean_r2 > 0.999  # what pooling would have reported
    assert r2_score(gt, pred) == pytest.approx(0.0, abs=1e-12)


def test_half_amplitude_fools_pearson_but_not_r2() -> None:
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(5, 40, 1))
    gt -= gt.mean()
    pred = 0.5 * gt
    assert pearson_r2(gt, pred) == pytest.approx(1.0, abs=1e-12)
    assert slope_intercept(gt, pred) == pytest.approx((0.5, 0.0), abs=1e-12)
    assert r2_score(gt, pred) == pytest.approx(0.75, abs=1e-12)  # SS_res = 0.25 SS_tot for a zero-mean field


def test_slope_sees_a_gain_error_that_pooling_hides() -> None:
    """Shrinking every component 5 % toward its own mean: slope 0.95, while the pooled fit (reference) is
    dominated by the diagonal/off-diagonal offsets and reports ≈ 1."""
    gt = f_like()
    means = gt.mean(axis=(0, 1))
    pred = means + 0.95 * (gt - means)
    slope, intercept = slope_intercept(gt, pred)
    assert slope == pytest.approx(0.95, abs=1e-12)
    assert intercept == pytest.approx(means.mean() * 0.05, abs=1e-12)  # mean of the per-component intercepts
    assert pooled_slope_intercept(gt, pred)[0] > 0.999


def test_pooled_r2_weights_components_by_their_variance() -> None:
    gt = np.zeros((1, 4, 2))
    gt[0, :, 0] = [0, 1, 2, 3]  # SS_tot 5
    gt[0, :, 1] = [0, 10, 20, 30]  # SS_tot 500
    pred = gt.copy()
    pred[0, 0, 0] += 1.0  # SS_res 1 on the small component
    assert r2_per_component(gt, pred) == pytest.approx([0.8, 1.0])
    assert r2_score(gt, pred) == pytest.approx(1.0 - 1.0 / 505.0)


def test_constant_component_is_undefined_but_its_error_counts() -> None:
    gt = np.zeros((3, 4, 2))
    gt[..., 0] = 0.1  # constant (0.1 is inexact in binary: the computed mean must not invent variance)
    gt[..., 1] = np.arange(12.0).reshape(3, 4)
    exact = r2_per_component(gt, gt)
    assert math.isnan(exact[0]) and exact[1] == 1.0
    assert r2_min_component(exact) == 1.0

    pred = gt.copy()
    pred[0, 0, 0] += 2.0  # wrong on the constant component only
    per_component = r2_per_component(gt, pred)
    assert math.isnan(per_component[0]) and per_component[1] == 1.0
    ss_tot = ((gt[..., 1] - gt[..., 1].mean()) ** 2).sum()
    assert r2_score(gt, pred) == pytest.approx(1.0 - 4.0 / ss_tot)


def test_all_constant_field() -> None:
    gt = np.ones((2, 3, 1))
    assert math.isnan(r2_score(gt, gt))
    assert math.isnan(r2_min_component(r2_per_component(gt, gt)))
    assert math.isnan(pearson_r2(gt, gt))
    assert all(math.isnan(v) for v in slope_intercept(gt, gt))


def test_r2_can_be_negative() -> None:
    gt = column([1, 2, 3, 4])
    pred = column([4, 3, 2, 1])  # SS_res 20, SS_tot 5
    assert r2_score(gt, pred) == pytest.approx(-3.0)


def test_non_finite_predictions_do_not_raise() -> None:
    gt = f_like()
    pred = gt.copy()
    pred[0, 0, 0] = np.nan
    assert math.isnan(r2_score(gt, pred))
    assert math.isnan(mse(gt, pred))


def test_torch_and_numpy_agree_and_float32_is_upcast() -> None:
    gt = f_like(seed=3).astype(np.float32)
    pred = gt + np.float32(0.003) * np.random.default_rng(4).normal(size=gt.shape).astype(np.float32)
    expected = r2_per_component(gt.astype(np.float64), pred.astype(np.float64))
    assert r2_per_component(torch.from_numpy(gt), torch.from_numpy(pred)) == expected
    assert r2_per_component(gt, torch.from_numpy(pred)) == expected


def test_two_dimensional_input_is_one_component() -> None:
    gt = np.arange(12.0).reshape(3, 4)
    pred = gt + 1.0
    assert r2_per_component(gt, pred) == r2_per_component(gt[..., None], pred[..., None])


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        r2_score(np.zeros((2, 3, 4)), np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match="frames, particles, components"):
        r2_score(np.zeros(5), np.zeros(5))


def test_compression_ratio() -> None:
    assert compression_ratio(100 * 9000 * 4, 10_000) == 360.0
    assert compression_ratio(400 * 9000 * 4, 265_220) == pytest.approx(54.3, abs=0.05)  # reference §3.1 example
    with pytest.raises(ValueError):
        compression_ratio(10, 0)


def test_matches_torchmetrics() -> None:
    """Cross-check against torchmetrics where its definitions coincide with ours (well-spread components)."""
    from torchmetrics.functional import pearson_corrcoef
    from torchmetrics.functional import r2_score as tm_r2_score

    rng = np.random.default_rng(5)
    gt = rng.normal(size=(4, 30, 3)) * [1.0, 5.0, 0.2] + [0.0, 3.0, -1.0]
    pred = gt + 0.3 * rng.normal(size=gt.shape)
    flat_gt = torch.from_numpy(gt.reshape(-1, 3))
    flat_pred = torch.from_numpy(pred.reshape(-1, 3))
    raw = tm_r2_score(flat_pred, flat_gt, multioutput="raw_values")
    assert r2_per_component(gt, pred) == pytest.approx(raw.tolist(), abs=1e-12)
    pooled_r = pearson_corrcoef(flat_pred.reshape(-1), flat_gt.reshape(-1))
    assert pearson_r2(gt, pred) == pytest.approx(float(pooled_r) ** 2, abs=1e-12)


def test_component_sums_of_a_long_window_go_by_blocks_of_frames_with_the_same_sums(monkeypatch):
    """Beyond SUMS_CHUNK_VALUES (the whole simulation's windows) the two passes go a block of frames at a time, from
    float32 without a float64 copy of the window: the one-shot sums to 1e-12, a constant component still 0."""
    rng = np.random.default_rng(0)
    gt = (rng.standard_normal((50, 300, 4)) * [1, 0.1, 10, 1] + [5, 0, -3, 100]).astype(np.float32)
    gt[:, :, 3] = 100.0
    pred = (gt + 0.01 * rng.standard_normal(gt.shape)).astype(np.float32)
    whole = regression.component_sums(gt, pred)
    monkeypatch.setattr(regression, "SUMS_CHUNK_VALUES", 7 * 300 * 4)  # 7 frames a block, the last one short
    blocked = regression.component_sums(gt, pred)
    assert np.allclose(blocked[0], whole[0], rtol=1e-12, atol=0) and blocked[1][3] == whole[1][3] == 0.0
    assert np.allclose(blocked[1], whole[1], rtol=1e-12, atol=0)
    assert regression.r2_score(gt, pred) == pytest.approx(r2_score(gt.astype(np.float64), pred.astype(np.float64)),
                                                          abs=1e-15)
