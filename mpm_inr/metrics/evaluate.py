"""All final metrics of one run in one call, keyed exactly as Contract 2's `metrics.json` (docs/contracts.md)."""

from __future__ import annotations

from typing import Any

from mpm_inr.metrics._arrays import as_field_pair
from mpm_inr.metrics.image import (
    kinograph_r2,
    kinograph_ssim,
    nanmean,
    ssim_per_component,
)
from mpm_inr.metrics.regression import (
    component_sums,
    compression_ratio,
    pearson_r2,
    r2_from_sums,
    r2_min_component,
    slope_intercept,
)

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


def evaluate_all(gt: Any, pred: Any, positions: Any, n_params: int, grid: int = 64,
                 device: str = "cpu") -> dict[str, Any]:
    """Every final metric of Contract 2 for a (T, N, C) prediction in original units.

    device: where the kinograph SSIM (the one costly score, an N x T image per component) is computed.

    positions: (T, N, 2) particle positions of the window (or the middle frame's (N, 2)), used for the gridded
    SSIM. Values are Python floats/ints/lists; undefined scores are NaN (the metrics.json writer turns them
    into null). See `regression` and `image` for the definitions.
    """
    gt_values, pred_values = as_field_pair(gt, pred)
    n_values = gt_values.size
    ss_res, ss_tot = component_sums(gt_values, pred_values)
    final_r2, per_component = r2_from_sums(ss_res, ss_tot)
    slope, intercept = slope_intercept(gt_values, pred_values)
    ssim = ssim_per_component(gt_values, pred_values, positions, grid=grid)
    return {
        "final_r2": final_r2,
        "final_mse": float(ss_res.sum()) / n_values,
        "r2_per_component": per_component,
        "r2_min_component": r2_min_component(per_component),
        "pearson_r2": pearson_r2(gt_values, pred_values),
        "slope": slope,
        "intercept": intercept,
        "total_params": int(n_params),
        "n_values": int(n_values),
        "compression_ratio": compression_ratio(n_values, int(n_params)),
        "ssim": ssim,
        "ssim_mean": nanmean(ssim),
        "kinograph_r2": kinograph_r2(gt_values, pred_values),
        "kinograph_ssim": kinograph_ssim(gt_values, pred_values, device=device),
    }

