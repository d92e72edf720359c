"""R2Accumulator: chunked, on-device accumulation equals the direct float64 computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mpm_inr.metrics import (
    R2Accumulator,
    mse,
    pearson_r2,
    r2_per_component,
    r2_score,
    slope_intercept,
)


def accumulate(gt: np.ndarray, pred: np.ndarray, n_chunks: int, dtype: torch.dtype = torch.float64) -> R2Accumulator:
    """Feed (T, N, C) arrays as random-sized chunks of flattened points, as the trainer's final pass does."""
    accumulator = R2Accumulator()
    flat_gt = torch.from_numpy(gt.reshape(-1, gt.shape[-1])).to(dtype)
    flat_pred = torch.from_numpy(pred.reshape(-1, gt.shape[-1])).to(dtype)
    cuts = np.sort(np.random.default_rng(n_chunks).choice(np.arange(1, flat_gt.shape[0]), n_chunks - 1, replace=False))
    for chunk_gt, chunk_pred in zip(flat_gt.tensor_split(cuts.tolist()), flat_pred.tensor_split(cuts.tolist())):
        accumulator.update(chunk_gt, chunk_pred)
    return accumulator


@pytest.mark.parametrize("n_chunks", [1, 7])
def test_streaming_matches_direct(n_chunks: int) -> None:
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(10, 300, 4)) * [0.1, 1.0, 2.0, 0.01] + [1.0, 0.0, -3.0, 1.0]
    pred = 0.97 * gt + 0.05 * rng.normal(size=gt.shape)
    result = accumulate(gt, pred, n_chunks).compute()
    assert result.n_values == gt.size
    assert result.r2 == pytest.approx(r2_score(gt, pred), rel=1e-12)
    assert result.r2_per_component == pytest.approx(r2_per_component(gt, pred), rel=1e-12)
    assert result.mse == pytest.approx(mse(gt, pred), rel=1e-12)
    assert result.pearson_r2 == pytest.approx(pearson_r2(gt, pred), rel=1e-12)
    slope, intercept = slope_intercept(gt, pred)
    assert result.slope == pytest.approx(slope, rel=1e-12)
    assert result.intercept == pytest.approx(intercept, rel=1e-9, abs=1e-12)


def test_large_mean_keeps_its_digits() -> None:
    """Mean 1e8, spread 1: a one-pass Σy² − n·ȳ² in float64 loses SS_tot; the merged moments must not."""
    rng = np.random.default_rng(1)
    gt = 1e8 + rng.normal(size=(8, 500, 1))
    pred = gt + 0.1 * rng.normal(size=gt.shape)
    expected = r2_score(gt, pred)
    naive_ss_tot = (gt**2).sum() - gt.size * gt.mean() ** 2
    true_ss_tot = ((gt - gt.mean()) ** 2).sum()
    assert abs(naive_ss_tot - true_ss_tot) > 1e-3 * true_ss_tot  # the trap is real at this offset
    assert accumulate(gt, pred, 9).compute().r2 == pytest.approx(expected, abs=1e-9)


def test_float32_chunks_are_accumulated_in_float64() -> None:
    rng = np.random.default_rng(2)
    gt = (1.0 + 1e-3 * rng.normal(size=(20, 400, 1))).astype(np.float32)  # Jp-like
    pred = gt + np.float32(1e-5) * rng.normal(size=gt.shape).astype(np.float32)
    expected = r2_score(gt, pred)  # float64 two-pass on the float32 values
    assert accumulate(gt, pred, 11, torch.float32).compute().r2 == pytest.approx(expected, abs=1e-9)


def test_constant_component_is_nan_like_the_direct_metric() -> None:
    gt = np.zeros((4, 5, 2))
    gt[..., 0] = 0.1
    gt[..., 1] = np.arange(20.0).reshape(4, 5)
    pred = gt + 0.5
    result = accumulate(gt, pred, 3).compute()
    assert math.isnan(result.r2_per_component[0])
    assert result.r2_per_component[1] == pytest.approx(r2_per_component(gt, pred)[1])
    assert result.r2 == pytest.approx(r2_score(gt, pred))


def test_r2_tensor_stays_on_device_and_matches_compute() -> None:
    rng = np.random.default_rng(3)
    gt = rng.normal(size=(5, 50, 4))
    pred = gt + 0.1 * rng.normal(size=gt.shape)
    accumulator = accumulate(gt, pred, 4)
    r2 = accumulator.r2_tensor()
    assert isinstance(r2, torch.Tensor) and r2.ndim == 0
    assert float(r2) == pytest.approx(accumulator.compute().r2, rel=1e-14)


def test_reset_and_misuse() -> None:
    accumulator = R2Accumulator()
    with pytest.raises(RuntimeError, match="no data"):
        accumulator.compute()
    accumulator.update(torch.zeros(3, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="components"):
        accumulator.update(torch.zeros(3, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="shapes differ"):
        accumulator.update(torch.zeros(3, 2), torch.zeros(2, 2))
    accumulator.reset()
    accumulator.update(torch.arange(4.0).reshape(2, 2), torch.arange(4.0).reshape(2, 2))
    assert accumulator.compute().r2 == 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_update_never_syncs_with_the_host_on_cuda() -> None:
    gt = torch.randn(1000, 4, device="cuda")
    pred = gt + 0.1 * torch.randn_like(gt)
    accumulator = R2Accumulator()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for start in range(0, 1000, 250):
            accumulator.update(gt[start : start + 250], pred[start : start + 250])
        r2 = accumulator.r2_tensor()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert r2.device.type == "cuda"
    # r2_score reads a 2-D array as (frames, particles) of one component, so give it the (1, N, C) layout.
    assert accumulator.compute().r2 == pytest.approx(r2_score(gt[None], pred[None]), rel=1e-9)
