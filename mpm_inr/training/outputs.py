"""Contract 2 writers: metrics.json (atomic), analysis.log in the design document's `key: value` style, console
table."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else (1e308 if value > 0 else -1e308)
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    return value


def write_metrics(run_dir: Path, metrics: Mapping[str, Any]) -> Path:
    path = Path(run_dir) / "metrics.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(dict(metrics)), indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


ANALYSIS_KEYS = ("status", "field_name", "inr_type", "final_r2", "r2_min_component", "final_mse", "pearson_r2",
                 "slope", "intercept", "total_params", "compression_ratio", "codec_ratio", "codec_bytes", "codec_r2",
                 "codec_slope", "svd_r2_same_params", "svd_ratio_same_r2", "sz3_ratio_same_r2", "zfp_ratio_same_r2",
                 "svd_r2_same_bytes", "sz3_r2_same_bytes", "zfp_r2_same_bytes", "training_time",
                 "training_time_min", "wall_time", "steps", "steps_per_s", "ssim_mean", "kinograph_r2", "kinograph_ssim",
                 "holdout_r2", "n_training_frames", "device")


def write_analysis_log(run_dir: Path, metrics: Mapping[str, Any]) -> Path:
    rows = dict(metrics)
    rows["field_name"] = metrics.get("field")
    if metrics.get("training_time") is not None:
        rows["training_time_min"] = metrics["training_time"] / 60.0
    lines = [f"{k}: {_fmt(rows[k])}" for k in ANALYSIS_KEYS if rows.get(k) is not None]
    path = Path(run_dir) / "analysis.log"
    path.write_text("\n".join(lines) + "\n")
    return path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}" if abs(v) < 1e4 else f"{v:.4e}"
    return str(v)


def _fmt_r2(v: Any) -> str:
    """Six decimals: 0.9999997 must not print as 1 beside a model's 0.999943."""
    return f"{v:.6f}" if isinstance(v, float) else _fmt(v)


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """A short fixed-width table for the console; compression always sits beside R²."""
    keys = [("status", "status"), ("final_r2", "R² (1-SSres/SStot)"), ("r2_min_component", "R² worst component"),
            ("compression_ratio", "compression (values/params)"), ("codec_ratio", "codec file ratio (bytes)"),
            ("codec_r2", "codec R² (decoded file)"), ("codec_slope", "codec slope (decoded file)"), ("slope", "slope"), ("pearson_r2", "Pearson r² (ref.)"),
            ("svd_r2_same_params", "SVD R² at as many params"),
            ("svd_ratio_same_r2", "SVD compression at this R²"), ("sz3_ratio_same_r2", "SZ3 compression at this R²"),
            ("zfp_ratio_same_r2", "ZFP compression at this R²"), ("svd_r2_same_bytes", "SVD R² at these bytes"),
            ("sz3_r2_same_bytes", "SZ3 R² at these bytes"), ("zfp_r2_same_bytes", "ZFP R² at these bytes"),
            ("holdout_r2", "held-out R²"),
            ("svd_rank_for_target", "SVD rank for 0.995"),
            ("final_mse", "MSE (orig. units)"), ("total_params", "params"), ("training_time", "training time [s]"),
            ("steps", "steps"), ("steps_per_s", "steps/s")]
    rows = [(label, _fmt_r2(metrics[key]) if "r2" in key and "ratio" not in key else _fmt(metrics[key]))
            for key, label in keys
            if metrics.get(key) is not None]
    if metrics.get("timings"):  # where the run's time went besides the training loop
        rows.append(("time by phase [s]", " · ".join(f"{k} {v:.2f}" for k, v in metrics["timings"].items())))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label:<{width}}  {value}" for label, value in rows)
