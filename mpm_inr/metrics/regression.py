"""Point-wise regression metrics of a predicted field against ground truth, in original units.

Definitions (the contract of `metrics.json`, see docs/contracts.md):

- **R²** = 1 − Σ_c SS_res,c / Σ_c SS_tot,c, where SS_tot,c is taken about component c's *own* mean over all
  frames × particles. A single global mean would credit a model for F's diagonal (≈ 1) vs off-diagonal (≈ 0)
  offset, which any constant-per-component predictor gets right.
- **Constant components** (all ground-truth values equal, e.g. Jp ≡ 1 in an elastic-only window) have
  SS_tot = 0, so their own R² is undefined: `r2_per_component` reports NaN for them and `r2_min_component`
  ignores them. Their squared error still counts in the pooled `r2_score` numerator, so a model that gets a
  constant component wrong is penalised; it just cannot be *credited* for variance that is not there.
  If every component is constant the pooled R² is NaN too.
- **pearson_r2** is the reference implementation's score: squared Pearson correlation of all values pooled
  across components. It ignores gain and offset errors (pred = 0.5·gt scores 1) and is reported only for
  comparison with the reference's tables.
- **slope, intercept**: least-squares fit of pred on gt with one common slope and an intercept per component
  (each component centred on its own mean, as for R²): slope = Σ_c S_xy,c / Σ_c S_xx,c. An under-fitted INR
  shrinks toward the component means and shows slope < 1. The reported intercept is the mean of the
  per-component intercepts, mean(pred) − slope·mean(gt). A fully pooled regression (the reference's
  `linregress` on all values, `pooled_slope_intercept`) is dominated on F-like fields by the spread *between*
  component means (diagonal ≈ 1, off-diagonal ≈ 0), which every model gets right, so a 5 % gain error on every
  component still shows slope ≈ 1; for a single component both are the same ordinary regression.

Every function accepts numpy arrays or torch tensors of shape (T, N, C) (or (T, N) for one component) and
computes in float64. Non-finite predictions yield non-finite scores (NaN or −inf) rather than an exception:
a diverged run must still be able to write its metrics.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpm_inr.metrics._arrays import as_field_pair

#: arrays above this many values are summed a block of frames at a time: a float64 copy of the whole simulation's
#: 4-component window is 2.9 GB per array, and the codec's encoding held four (22 GB on the 23-GB VM)
SUMS_CHUNK_VALUES = 2**24


def component_sums(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-component (SS_res, SS_tot), in float64, of (T, N, C) arrays of any float dtype; SS_tot is exactly 0 for
    constant components.

    Two-pass (mean first, then centred squares) so that large means do not cancel the spread. Beyond
    SUMS_CHUNK_VALUES values both passes go a block of frames at a time, upcast a block at a time: the same sums
    to rounding in the last digits, without float64 copies of the window.
    """
    n_components = gt.shape[-1]
    if gt.size <= SUMS_CHUNK_VALUES:
        g = gt.reshape(-1, n_components).astype(np.float64, copy=False)
        p = pred.reshape(-1, n_components).astype(np.float64, copy=False)
        centred = g - g.mean(axis=0)
        ss_tot = np.einsum("ij,ij->j", centred, centred)
        residual = p - g
        ss_res = np.einsum("ij,ij->j", residual, residual)
        ss_tot[g.max(axis=0) == g.min(axis=0)] = 0.0  # rounding of the mean must not invent variance
        return ss_res, ss_tot
    step = max(1, SUMS_CHUNK_VALUES // max(1, gt[0].size))
    blocks = [slice(lo, lo + step) for lo in range(0, gt.shape[0], step)]
    total, low, high = np.zeros(n_components), np.full(n_components, np.inf), np.full(n_components, -np.inf)
    for block in blocks:
        g = gt[block].reshape(-1, n_components).astype(np.float64)
        total += g.sum(axis=0)
        low, high = np.minimum(low, g.min(axis=0)), np.maximum(high, g.max(axis=0))
    mean = total / (gt.size // n_components)
    ss_res, ss_tot = np.zeros(n_components), np.zeros(n_components)
    for block in blocks:
        g = gt[block].reshape(-1, n_components).astype(np.float64)
        centred = g - mean
        ss_tot += np.einsum("ij,ij->j", centred, centred)
        residual = pred[block].reshape(-1, n_components).astype(np.float64) - g
        ss_res += np.einsum("ij,ij->j", residual, residual)
    ss_tot[high == low] = 0.0
    return ss_res, ss_tot


def r2_from_sums(ss_res: np.ndarray, ss_tot: np.ndarray) -> tuple[float, list[float]]:
    """Pooled R² and per-component R² from per-component sums (NaN where SS_tot is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        per_component = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)
    total_tot = float(ss_tot.sum())
    pooled = 1.0 - float(ss_res.sum()) / total_tot if total_tot > 0 else float("nan")
    return pooled, [float(v) for v in per_component]


def r2_score(gt: Any, pred: Any) -> float:
    """R² = 1 − Σ_c SS_res,c / Σ_c SS_tot,c with per-component means (NaN if every component is constant)."""
    gt_values, pred_values = as_field_pair(gt, pred, float64=False)  # component_sums upcasts
    return r2_from_sums(*component_sums(gt_values, pred_values))[0]


def r2_per_component(gt: Any, pred: Any) -> list[float]:
    """R² of each component about its own mean; NaN for components whose ground truth is constant."""
    gt_values, pred_values = as_field_pair(gt, pred, float64=False)  # component_sums upcasts
    return r2_from_sums(*component_sums(gt_values, pred_values))[1]


def r2_min_component(per_component: list[float]) -> float:
    """Worst defined per-component R² (constant components, reported as NaN, are ignored); NaN if none."""
    defined = [v for v in per_component if not np.isnan(v)]
    return min(defined) if defined else float("nan")


def mse(gt: Any, pred: Any) -> float:
    """Mean squared error over all frames × particles × components, in the arrays' units."""
    gt_values, pred_values = as_field_pair(gt, pred)
    residual = (pred_values - gt_values).ravel()
    return float(residual @ residual) / residual.size


def pooled_moments(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float, float, float, float]:
    """(mean_gt, mean_pred, Sxx, Syy, Sxy) of all values pooled across components (two-pass)."""
    x = gt.ravel()
    y = pred.ravel()
    mean_x = float(x.mean())
    mean_y = float(y.mean())
    dx = x - mean_x
    dy = y - mean_y
    return mean_x, mean_y, float(dx @ dx), float(dy @ dy), float(dx @ dy)


def pearson_r2(gt: Any, pred: Any) -> float:
    """Squared Pearson correlation of pooled values: the *reference's* "R²", reported only for comparison.

    NaN when either side has no variance.
    """
    gt_values, pred_values = as_field_pair(gt, pred)
    _, _, sxx, syy, sxy = pooled_moments(gt_values, pred_values)
    if not (sxx > 0 and syy > 0):
        return float("nan")
    return sxy * sxy / (sxx * syy)


def slope_intercept(gt: Any, pred: Any) -> tuple[float, float]:
    """Common slope of pred on gt with per-component centring, and the mean intercept; (NaN, NaN) if gt is
    constant in every component. For one component this is ordinary least squares."""
    gt_values, pred_values = as_field_pair(gt, pred)
    n_components = gt_values.shape[-1]
    g = gt_values.reshape(-1, n_components)
    p = pred_values.reshape(-1, n_components)
    mean_g = g.mean(axis=0)
    mean_p = p.mean(axis=0)
    centred_g = g - mean_g
    sxx = float(np.einsum("ij,ij->", centred_g, centred_g))
    sxy = float(np.einsum("ij,ij->", centred_g, p - mean_p))
    if not sxx > 0:
        return float("nan"), float("nan")
    slope = sxy / sxx
    return slope, float(mean_p.mean()) - slope * float(mean_g.mean())


def pooled_slope_intercept(gt: Any, pred: Any) -> tuple[float, float]:
    """The reference's slope: ordinary regression of pred on gt over all values pooled across components.

    Reported only for comparison with the reference's tables; see the module docstring for why it flatters
    multi-component fields.
    """
    gt_values, pred_values = as_field_pair(gt, pred)
    mean_x, mean_y, sxx, _, sxy = pooled_moments(gt_values, pred_values)
    if not sxx > 0:
        return float("nan"), float("nan")
    slope = sxy / sxx
    return slope, mean_y - slope * mean_x


def compression_ratio(n_values: int, n_params: int) -> float:
    """Stored values per model parameter: frames × particles × components / parameters."""
    if n_params <= 0:
        raise ValueError(f"n_params must be positive, got {n_params}")
    if n_values < 0:
        raise ValueError(f"n_values must be non-negative, got {n_values}")
    return n_values / n_params
