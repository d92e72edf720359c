"""The quantised, lzma-coded truncated SVD baseline (mpm_inr.codec.svd_baseline) against numpy by hand."""

from __future__ import annotations

import numpy as np
import pytest

from mpm_inr.codec.svd_baseline import compression, quantised_svd


def _window(seed: int = 0) -> np.ndarray:
    """(T, N, C) = (40, 50, 2): rank 3 in time plus a little noise, components on different scales and means."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, 40)[:, None]
    curves = np.hstack([np.sin(3 * t), np.cos(5 * t), t ** 2])
    flat = curves @ rng.normal(size=(3, 100)) + 0.01 * rng.normal(size=(40, 100))
    return (flat.reshape(40, 50, 2) * [1.0, 0.1] + [1.0, -2.0]).astype(np.float32)


def _r2(gt: np.ndarray, pred: np.ndarray) -> float:
    gt, pred = gt.reshape(-1, gt.shape[-1]).astype(np.float64), pred.reshape(-1, gt.shape[-1])
    return 1 - ((gt - pred) ** 2).sum() / ((gt - gt.mean(0)) ** 2).sum()


@pytest.mark.parametrize("target", [0.99, 0.999])
def test_decoded_file_reaches_the_target_and_reports_its_own_r2(target):
    values = _window()
    point = quantised_svd(values, target)
    decoded = point.decode(values.shape[1])
    assert _r2(values, decoded) == pytest.approx(point.r2, abs=1e-9)
    assert point.r2 >= target
    assert compression(values, point) == pytest.approx(4 * values.size / point.n_bytes)


def test_rank_and_size_against_the_float_svd():
    """It never needs more rank than the float SVD (same Eckart–Young fit) plus what rounding costs, and its file
    is far smaller than the float32 SVD of that rank."""
    values = _window()
    centred = (values - values.reshape(-1, 2).mean(0)).reshape(40, -1).astype(np.float64)
    s = np.linalg.svd(centred, compute_uv=False)
    float_r2 = 1 - (np.cumsum((s ** 2)[::-1])[::-1][1:] / (s ** 2).sum())  # rank 1, 2, ...
    rank_needed = int(np.argmax(float_r2 >= 0.999)) + 1
    point = quantised_svd(values, 0.999)
    assert rank_needed <= point.rank <= rank_needed + 3
    float32_bytes = 4 * (point.rank * (40 + 100 + 1) + 2)
    assert point.n_bytes < float32_bytes / 2


def test_an_unreachable_target_gives_none():
    assert quantised_svd(_window(), 0.999999999, max_rank=1) is None
