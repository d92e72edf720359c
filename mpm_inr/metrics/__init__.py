"""Honest metrics of a predicted particle field, in original units (definitions: docs/contracts.md, Contract 2).

Pure functions on (T, N, C) arrays (numpy or torch, computed in float64), an on-device streaming accumulator
for the trainer, and the truncated-SVD baseline.
"""

from mpm_inr.metrics._arrays import middle_frame
from mpm_inr.metrics.evaluate import METRIC_KEYS, evaluate_all, pooled_scores
from mpm_inr.metrics.image import (
    KinographReference,
    grid_particles,
    kinograph_r2,
    kinograph_reference,
    kinograph_ssim,
    ssim_image,
    ssim_per_component,
)
from mpm_inr.metrics.regression import (
    compression_ratio,
    mse,
    pearson_r2,
    pooled_slope_intercept,
    r2_min_component,
    r2_per_component,
    r2_score,
    slope_intercept,
)
from mpm_inr.metrics.streaming import R2Accumulator, StreamingResult
from mpm_inr.metrics.svd import SVDBaseline, SVDHoldout, svd_baseline, svd_holdout

__all__ = [
    "METRIC_KEYS",
    "KinographReference",
    "R2Accumulator",
    "SVDBaseline",
    "SVDHoldout",
    "StreamingResult",
    "compression_ratio",
    "evaluate_all",
    "grid_particles",
    "kinograph_r2",
    "kinograph_reference",
    "kinograph_ssim",
    "middle_frame",
    "mse",
    "pearson_r2",
    "pooled_scores",
    "pooled_slope_intercept",
    "r2_min_component",
    "r2_per_component",
    "r2_score",
    "slope_intercept",
    "ssim_image",
    "ssim_per_component",
    "svd_baseline",
    "svd_holdout",
]
