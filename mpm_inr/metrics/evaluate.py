"""All final metrics of one run in one call, keyed exactly as Contract 2's `metrics.json` (docs/contracts.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from mpm_inr.metrics._arrays import as_field_pair, frame_chunks
from mpm_inr.metrics.image import (
    KinographReference,
    kinograph_frame_sums,
    kinograph_r2_from_sums,
    kinograph_ssim,
    nanmean,
    ssim_per_component,
)
from mpm_inr.metrics.regression import compression_ratio, r2_min_component
from mpm_inr.metrics.streaming import R2Accumulator, StreamingResult

METRIC_KEYS = (
    "final_r2",
    "final_mse",
    "r2_per_component",
    "r2_min_component",
    "pearson_r2",
    "slope",
    "intercept",
    "total_params",
    "n_values",
    "compression_ratio",
    "ssim",
    "ssim_mean",
    "kinograph_r2",
    "kinograph_ssim",
)


def pooled_scores(gt: Any, pred: Any, device: str = "cpu") -> StreamingResult:
    """R², MSE, Pearson and slope of a (T, N, C) prediction alone (the held-out frames' scores), in one pass of
    float64 chunks on `device`: the numbers `evaluate_all` reports for the same arrays."""
    gt_values, pred_values = as_field_pair(gt, pred, float64=False)
    pooled = R2Accumulator()
    for g, p in frame_chunks(gt_values, pred_values, device):
        pooled.update(g, p)
    return pooled.compute()


def evaluate_all(gt: Any, pred: Any, positions: Any, n_params: int, grid: int = 64,
                 device: str = "cpu",
                 kinograph: KinographReference | Callable[[], KinographReference] | None = None,
                 scored: Callable[[dict[str, Any]], None] | None = None,
                 defer: Callable[[Callable[[], float]], Any] | None = None) -> dict[str, Any]:
    """Every final metric of Contract 2 for a (T, N, C) prediction in original units.

    device: where the moments and the kinograph SSIM (the one costly score, an N x T image per component) are
    computed. kinograph: the ground truth's `kinograph_reference` (a window's later runs reuse it), or a function that
    returns it (called after `scored`), else computed.

    scored: called with a copy of every score but the kinograph SSIM as soon as they are known, before that one
    costly score: a run's figure, which shows no kinograph score, is drawn from then on, beside it.

    defer: given the function that computes the kinograph SSIM, runs it elsewhere and returns a handle, which is
    then the value of "kinograph_ssim" for the caller to resolve (a run scores it at low priority beside its figure).

    positions: (T, N, 2) particle positions of the window (or the middle frame's (N, 2)), used for the gridded
    SSIM. Values are Python floats/ints/lists; undefined scores are NaN (the metrics.json writer turns them
    into null). See `regression` and `image` for the definitions.
    """
    gt_values, pred_values = as_field_pair(gt, pred, float64=False)
    n_values = gt_values.size
    # One pass, a few frames at a time in float64 on `device`: the pooled moments (R², MSE, Pearson, slope; the
    # same definitions as `regression`, which the tests hold it to) and the kinograph's per-frame sums.
    pooled, frame_sums = R2Accumulator(), []
    for g, p in frame_chunks(gt_values, pred_values, device):
        pooled.update(g, p)
        frame_sums.append(kinograph_frame_sums(g, p))
    r = pooled.compute()
    ssim = ssim_per_component(gt_values, pred_values, positions, grid=grid)
    metrics = {
        "final_r2": r.r2,
        "final_mse": r.mse,
        "r2_per_component": r.r2_per_component,
        "r2_min_component": r2_min_component(r.r2_per_component),
        "pearson_r2": r.pearson_r2,
        "slope": r.slope,
        "intercept": r.intercept,
        "total_params": int(n_params),
        "n_values": int(n_values),
        "compression_ratio": compression_ratio(n_values, int(n_params)),
        "ssim": ssim,
        "ssim_mean": nanmean(ssim),
        "kinograph_r2": kinograph_r2_from_sums(torch.cat(frame_sums, dim=1).cpu().numpy()),
    }
    if scored is not None:
        scored(dict(metrics))
    reference = kinograph() if callable(kinograph) else kinograph

    def score() -> float:
        return kinograph_ssim(gt_values, pred_values, device=device, reference=reference)

    metrics["kinograph_ssim"] = score() if defer is None else defer(score)
    return metrics
