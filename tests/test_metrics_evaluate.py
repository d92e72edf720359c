"""evaluate_all: Contract 2's keys, consistency with the single metrics, JSON safety and speed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mpm_inr.metrics import (
    METRIC_KEYS,
    evaluate_all,
    kinograph_r2,
    kinograph_ssim,
    pearson_r2,
    r2_per_component,
    r2_score,
    slope_intercept,
    ssim_per_component,
)
from mpm_inr.metrics._arrays import frame_chunks

# docs/contracts.md, Contract 2: the metric keys computed from (gt, pred, positions, n_params)
CONTRACT_KEYS = {
    "final_r2", "final_mse", "r2_per_component", "r2_min_component", "pearson_r2", "slope", "intercept",
    "total_params", "n_values", "compression_ratio", "ssim", "ssim_mean", "kinograph_r2", "kinograph_ssim",
}


def window(frames: int, particles: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth F-like (T, N, 4) field on drifting particles, a noisy under-scaled prediction and positions."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(size=(particles, 2))
    t = np.linspace(0, 1, frames)[:, None, None]
    positions = (xy[None] + 0.1 * t).astype(np.float32)
    phase = np.sin(4 * xy[:, :1] + 2 * xy[:, 1:]) * [1.0, 0.5, -0.5, 2.0]
    gt = np.array([1.0, 0.0, 0.0, 1.0]) + 0.1 * np.sin(3 * t + phase)
    pred = gt.mean(axis=(0, 1)) + 0.95 * (gt - gt.mean(axis=(0, 1))) + 0.002 * rng.normal(size=gt.shape)
    return gt.astype(np.float32), pred.astype(np.float32), positions


def test_keys_are_exactly_the_contract() -> None:
    assert set(METRIC_KEYS) == CONTRACT_KEYS
    gt, pred, positions = window(12, 500)
    assert set(evaluate_all(gt, pred, positions, n_params=1000)) == CONTRACT_KEYS


def test_values_agree_with_the_single_metrics() -> None:
    gt, pred, positions = window(12, 500)
    metrics = evaluate_all(gt, pred, positions, n_params=1000)
    assert metrics["final_r2"] == pytest.approx(r2_score(gt, pred), rel=1e-12)
    assert metrics["r2_per_component"] == pytest.approx(r2_per_component(gt, pred), rel=1e-12)
    assert metrics["r2_min_component"] == min(metrics["r2_per_component"])
    assert metrics["final_mse"] == pytest.approx(float(np.mean((pred.astype(float) - gt) ** 2)), rel=1e-9)
    assert metrics["pearson_r2"] == pytest.approx(pearson_r2(gt, pred), rel=1e-12)
    assert (metrics["slope"], metrics["intercept"]) == pytest.approx(slope_intercept(gt, pred), rel=1e-12)
    assert metrics["slope"] == pytest.approx(0.95, abs=0.01)
    assert metrics["n_values"] == 12 * 500 * 4
    assert metrics["total_params"] == 1000
    assert metrics["compression_ratio"] == pytest.approx(24.0)
    assert metrics["ssim"] == ssim_per_component(gt, pred, positions)
    assert metrics["ssim_mean"] == pytest.approx(np.mean(metrics["ssim"]))
    assert metrics["kinograph_r2"] == kinograph_r2(gt, pred)
    assert metrics["kinograph_ssim"] == kinograph_ssim(gt, pred)
    assert metrics["pearson_r2"] > metrics["final_r2"]  # the reference metric hides the 5 % gain error


def test_undefined_scores_are_nan() -> None:
    gt, _, positions = window(12, 300)
    gt[..., 1] = 0.0  # a constant component: its R² and SSIM are undefined
    metrics = evaluate_all(gt, gt, positions, n_params=10)
    assert math.isnan(metrics["r2_per_component"][1]) and math.isnan(metrics["ssim"][1])
    assert metrics["final_r2"] == 1.0 and metrics["r2_min_component"] == 1.0
    assert metrics["ssim_mean"] == 1.0  # the mean skips the undefined component


def _kinograph_r2_by_hand(gt: np.ndarray, pred: np.ndarray) -> float:
    g, p = gt.astype(np.float64), pred.astype(np.float64)
    ss_tot = ((g - g.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    ss_res = ((p - g) ** 2).sum(axis=1)
    return float(np.mean(1.0 - ss_res / ss_tot, axis=0).mean())


def test_a_window_of_several_chunks_gives_the_same_metrics() -> None:
    """evaluate_all sums a few whole frames at a time in float64; many chunks must give the one-pass numbers."""
    gt, pred, positions = window(90, 1500)  # 540 000 values: three CPU chunks
    chunks = list(frame_chunks(gt, pred))
    assert [g.shape[0] for g, _ in chunks] == [43, 43, 4] and chunks[0][0].dtype == torch.float64
    metrics = evaluate_all(gt, pred, positions, n_params=1000)
    assert metrics["final_r2"] == pytest.approx(r2_score(gt, pred), rel=1e-12)
    assert metrics["r2_per_component"] == pytest.approx(r2_per_component(gt, pred), rel=1e-12)
    assert metrics["pearson_r2"] == pytest.approx(pearson_r2(gt, pred), rel=1e-12)
    assert (metrics["slope"], metrics["intercept"]) == pytest.approx(slope_intercept(gt, pred), rel=1e-12)
    assert metrics["kinograph_r2"] == pytest.approx(_kinograph_r2_by_hand(gt, pred), rel=1e-12)


def test_a_non_finite_prediction_is_never_averaged_away() -> None:
    gt, pred, positions = window(12, 300)
    pred[3, 7, 2] = np.nan
    metrics = evaluate_all(gt, pred, positions, n_params=10)
    for key in ("final_r2", "final_mse", "pearson_r2", "slope", "kinograph_r2"):
        assert math.isnan(metrics[key]), key
    pred[3, 7, 2] = np.inf
    metrics = evaluate_all(gt, pred, positions, n_params=10)
    assert metrics["final_r2"] == -math.inf and metrics["kinograph_r2"] == -math.inf


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_evaluation_gives_the_cpu_numbers() -> None:
    gt, pred, positions = window(90, 1500)
    on_cpu, on_gpu = (evaluate_all(gt, pred, positions, n_params=1000, device=d) for d in ("cpu", "cuda"))
    for key in ("final_r2", "final_mse", "pearson_r2", "slope", "intercept", "kinograph_r2", "kinograph_ssim"):
        assert on_gpu[key] == pytest.approx(on_cpu[key], rel=1e-10), key


def test_the_scores_a_figure_shows_come_before_the_kinograph_ssim() -> None:
    """`scored` gets every score but the kinograph SSIM, with the values returned at the end, before the
    kinograph reference is asked for (a run's figure is drawn beside that last, costly score)."""
    gt, pred, positions = window(12, 500)
    order = []
    metrics = evaluate_all(gt, pred, positions, n_params=1000,
                           kinograph=lambda: order.append("reference") or None,
                           scored=lambda first: order.append(first))
    assert len(order) == 2 and order[1] == "reference"
    first = order[0]
    assert set(first) == CONTRACT_KEYS - {"kinograph_ssim"}
    assert first == {k: v for k, v in metrics.items() if k != "kinograph_ssim"}
    assert metrics == evaluate_all(gt, pred, positions, n_params=1000)  # the same numbers as without either
