"""On-device streaming R² (and MSE, Pearson, slope) for the trainer: no host sync until `compute()`.

The trainer feeds (ground truth, prediction) chunks of any shape (..., C) as they come out of the model — a
random batch for the periodic estimate, or the whole window chunk by chunk for the final pass. The state is a
handful of per-component float64 tensors on the chunks' device, merged with Chan et al.'s parallel update of
(count, mean, co-moments), which is as accurate as a two-pass computation even when a component's mean is
large against its spread. Definitions match `mpm_inr.metrics.regression` exactly, including NaN for
components whose ground truth is constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StreamingResult:
    """Host-side values of an `R2Accumulator` (Python floats, NaN where undefined)."""

    r2: float
    r2_per_component: list[float]
    mse: float
    pearson_r2: float
    slope: float
    intercept: float
    n_values: int


def _accumulator_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


class R2Accumulator:
    """Accumulates per-component sums for R² = 1 − Σ_c SS_res,c / Σ_c SS_tot,c over chunks on any device.

    `update` launches only device kernels (shapes are known on the host), so it never waits for the GPU.
    `r2_tensor()` returns the pooled R² as a 0-d device tensor, still without a sync; `compute()` syncs once.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.count = 0  # values per component
        self._state: dict[str, torch.Tensor] | None = None

    def update(self, gt: torch.Tensor, pred: torch.Tensor) -> None:
        """Add a chunk: tensors of one shape (..., C) on one device, in original units."""
        if gt.shape != pred.shape:
            raise ValueError(f"gt and pred shapes differ: {tuple(gt.shape)} vs {tuple(pred.shape)}")
        if gt.ndim == 0:
            raise ValueError("R2Accumulator.update needs tensors of shape (..., components)")
        n_components = gt.shape[-1]
        dtype = _accumulator_dtype(gt.device)
        g = gt.detach().reshape(-1, n_components).to(dtype)
        p = pred.detach().reshape(-1, n_components).to(device=g.device, dtype=dtype)
        n_batch = g.shape[0]
        if n_batch == 0:
            return
        if self._state is not None and self._state["mean_gt"].shape[0] != n_components:
            raise ValueError(f"chunk has {n_components} components, earlier chunks had {self._state['mean_gt'].shape[0]}")

        mean_g = g.mean(dim=0)
        mean_p = p.mean(dim=0)
        dg = g - mean_g
        dp = p - mean_p
        residual = p - g
        min_g, max_g = torch.aminmax(g, dim=0)  # one pass: a third of amin and amax apart on a CPU, the same values
        batch = {
            "mean_gt": mean_g,
            "mean_pred": mean_p,
            "m2_gt": (dg * dg).sum(dim=0),
            "m2_pred": (dp * dp).sum(dim=0),
            "co_moment": (dg * dp).sum(dim=0),
            "ss_res": (residual * residual).sum(dim=0),
            "min_gt": min_g,
            "max_gt": max_g,
        }
        if self._state is None:
            self._state = batch
            self.count = n_batch
            return

        state = self._state
        total = self.count + n_batch
        delta_g = mean_g - state["mean_gt"]
        delta_p = mean_p - state["mean_pred"]
        weight = self.count * n_batch / total
        state["m2_gt"] += batch["m2_gt"] + delta_g * delta_g * weight
        state["m2_pred"] += batch["m2_pred"] + delta_p * delta_p * weight
        state["co_moment"] += batch["co_moment"] + delta_g * delta_p * weight
        state["mean_gt"] += delta_g * (n_batch / total)
        state["mean_pred"] += delta_p * (n_batch / total)
        state["ss_res"] += batch["ss_res"]
        state["min_gt"] = torch.minimum(state["min_gt"], batch["min_gt"])
        state["max_gt"] = torch.maximum(state["max_gt"], batch["max_gt"])
        self.count = total

    def _ss_tot(self) -> torch.Tensor:
        state = self._require_state()
        return torch.where(state["max_gt"] > state["min_gt"], state["m2_gt"], torch.zeros_like(state["m2_gt"]))

    def _require_state(self) -> dict[str, torch.Tensor]:
        if self._state is None:
            raise RuntimeError("R2Accumulator has no data: call update() first")
        return self._state

    def r2_tensor(self) -> torch.Tensor:
        """Pooled R² as a 0-d tensor on the data's device (NaN if every component is constant); no host sync."""
        ss_tot = self._ss_tot().sum()
        ss_res = self._require_state()["ss_res"].sum()
        return torch.where(ss_tot > 0, 1.0 - ss_res / ss_tot, torch.full_like(ss_tot, math.nan))

    def compute(self) -> StreamingResult:
        """All accumulated metrics as Python floats (one device-to-host transfer)."""
        state = self._require_state()
        n_components = state["mean_gt"].shape[0]
        n = self.count
        ss_tot = self._ss_tot()
        # Pooled (all components together) moments from the per-component ones: equal counts per component.
        pooled_mean_g = state["mean_gt"].mean()
        pooled_mean_p = state["mean_pred"].mean()
        offset_g = state["mean_gt"] - pooled_mean_g
        offset_p = state["mean_pred"] - pooled_mean_p
        pooled = torch.stack(
            [
                pooled_mean_g,
                pooled_mean_p,
                state["m2_gt"].sum() + n * (offset_g * offset_g).sum(),
                state["m2_pred"].sum() + n * (offset_p * offset_p).sum(),
                state["co_moment"].sum() + n * (offset_g * offset_p).sum(),
                state["m2_gt"].sum(),  # within-component sums, for the common slope
                state["co_moment"].sum(),
            ]
        )
        host = torch.cat([state["ss_res"], ss_tot, pooled]).to("cpu", torch.float64).tolist()
        ss_res, ss_tot_host = host[:n_components], host[n_components : 2 * n_components]
        mean_g, mean_p, sxx, syy, sxy, within_xx, within_xy = host[2 * n_components :]

        per_component = [1.0 - r / t if t > 0 else math.nan for r, t in zip(ss_res, ss_tot_host)]
        total_tot = sum(ss_tot_host)
        r2 = 1.0 - sum(ss_res) / total_tot if total_tot > 0 else math.nan
        pearson = sxy * sxy / (sxx * syy) if sxx > 0 and syy > 0 else math.nan
        slope = within_xy / within_xx if within_xx > 0 else math.nan
        intercept = mean_p - slope * mean_g if within_xx > 0 else math.nan
        n_values = n * n_components
        return StreamingResult(
            r2=r2,
            r2_per_component=per_component,
            mse=sum(ss_res) / n_values,
            pearson_r2=pearson,
            slope=slope,
            intercept=intercept,
            n_values=n_values,
        )
