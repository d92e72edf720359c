"""The classical baselines of one run's window at the run's accuracy and the run's size, in bytes.

For the truncated SVD (per-component centred, the best rank-k fit for the reported R², Eckart–Young), SZ3 and
ZFP: the smallest stored size that reaches the run's R² on its training frames (matched accuracy) and the R²
reached within the run's stored bytes (matched size), each with the held-out R² when the window holds frames
out. Sizes are bytes a decoder needs: the SVD's float32 U_k, S_k, V_k and component means; the compressors'
streams.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpm_inr.baselines.cache import BaselineCache, json_safe
from mpm_inr.baselines.codecs import SZ3, ZFP, codec_versions, require
from mpm_inr.baselines.evaluate import CHUNK_FRAMES, CodecPoint, evaluate_codec
from mpm_inr.baselines.search import (
    matched_accuracy,
    matched_size,
    size_start,
    start_exponent,
)
from mpm_inr.baselines.source import BaselineSource
from mpm_inr.metrics.interpolate import METHODS
from mpm_inr.metrics.svd import (
    StreamedFactors,
    svd_baseline_streamed,
    svd_holdout_streamed,
    svd_param_count,
)

SVD_SCALING = "centred"
DEFAULT_CODECS = ("sz3", "zfp")


def svd_bytes(rank: int, n_frames: int, n_columns: int, n_components: int) -> int:
    """float32 bytes of a rank-k SVD with its component means: 4·(k·(T + N·C + 1) + C)."""
    return 4 * (svd_param_count(rank, n_frames, n_columns) + n_components)


@dataclass
class ClassicalBaselines:
    """Baselines of one source; numbers come from (and go to) `cache` when there is one."""

    source: BaselineSource
    cache: BaselineCache | None = None
    codec_names: tuple[str, ...] = DEFAULT_CODECS
    device: str = "cpu"
    _factors: StreamedFactors | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ SVD
    def _svd_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """R² (pooled, per component) of every rank on the training frames."""
        stored = self.cache.svd if self.cache is not None else {}
        if "r2_rank" not in stored:
            baseline, self._factors = svd_baseline_streamed(self.source.values, self.source.train, ranks=(1,),
                                                            normalize=SVD_SCALING, device=self.device)
            stored = {"r2_rank": baseline.r2_all_ranks.tolist(),
                      "r2_per_component_rank": baseline.r2_per_component_all_ranks.tolist()}
            if self.cache is not None:
                self.cache.svd.update(json_safe(stored))
        per_component = np.array([[np.nan if v is None else v for v in row] for row in stored["r2_per_component_rank"]])
        return np.array(stored["r2_rank"], dtype=np.float64), per_component

    def _svd_holdout(self, rank: int, method: str) -> float:
        stored = self.cache.svd.setdefault("holdout", {}) if self.cache is not None else {}
        name = f"{method}/{rank}"
        if name not in stored:
            if self._factors is None:
                _, self._factors = svd_baseline_streamed(self.source.values, self.source.train, ranks=(1,),
                                                         normalize=SVD_SCALING, device=self.device)
            stored[name] = svd_holdout_streamed(self._factors, self.source.test, ranks=(rank,), method=method).r2[rank]
        return float("nan") if stored[name] is None else float(stored[name])

    def _svd_entry(self, rank: int, r2: np.ndarray, per_component: np.ndarray) -> dict[str, Any]:
        source = self.source
        n_bytes = svd_bytes(rank, source.train.size, source.n_particles * source.n_components, source.n_components)
        entry = {"rank": rank, "bytes": n_bytes, "compression": source.raw_bytes / n_bytes, "r2": float(r2[rank - 1]),
                 "r2_per_component": [float(v) for v in per_component[rank - 1]]}
        if source.test.size:
            entry["holdout_r2"] = {method: self._svd_holdout(rank, method) for method in METHODS}
        return entry

    def svd(self, target_r2: float, model_bytes: int) -> dict[str, Any]:
        """The SVD's matched-accuracy rank (smallest reaching target_r2) and matched-size rank (largest within
        model_bytes); either is None when no rank qualifies."""
        start = time.perf_counter()
        r2, per_component = self._svd_curve()
        source = self.source
        reached = np.flatnonzero(r2 >= target_r2)
        per_rank = svd_bytes(1, source.train.size, source.n_particles * source.n_components, 0)
        within = min((model_bytes - 4 * source.n_components) // per_rank, r2.size)
        return {
            "scaling": SVD_SCALING,
            "matched_accuracy": self._svd_entry(int(reached[0]) + 1, r2, per_component) if reached.size else None,
            "matched_size": self._svd_entry(int(within), r2, per_component) if within >= 1 else None,
            "time_s": time.perf_counter() - start,
        }

    # ------------------------------------------------------------------ compressors
    def _evaluator(self, codec: SZ3 | ZFP):
        def evaluate(exponent: float) -> CodecPoint:
            record = self.cache.point(codec.name, exponent) if self.cache is not None else None
            if record is None:
                point = evaluate_codec(self.source, codec, exponent)
                if self.cache is not None:
                    self.cache.add_point(codec.name, point.as_record())
                return point
            nan = [np.nan if v is None else v for v in record["r2_per_component"]]
            held = record["holdout_r2_per_component"]
            return CodecPoint(record["exponent"], record["bytes"], record["r2"], nan, record["holdout_r2"],
                              None if held is None else [np.nan if v is None else v for v in held])
        return evaluate

    def _codec_entry(self, point: CodecPoint | None) -> dict[str, Any] | None:
        if point is None:
            return None
        entry = {"eps": point.eps, "bytes": point.bytes, "compression": self.source.raw_bytes / point.bytes,
                 "r2": point.r2, "r2_per_component": point.r2_per_component}
        if point.holdout_r2 is not None:
            entry["holdout_r2"] = {"linear": point.holdout_r2}
        return entry

    def codec(self, codec: SZ3 | ZFP, target_r2: float, model_bytes: int) -> dict[str, Any]:
        """A compressor's matched-accuracy and matched-size points (None when the search found none)."""
        start = time.perf_counter()
        evaluate = self._evaluator(codec)
        accurate, steps_accuracy = matched_accuracy(evaluate, target_r2, codec.start_scale)
        start_size = (size_start(accurate, model_bytes, self.source.raw_bytes // 4) if accurate is not None
                      else start_exponent(target_r2, codec.start_scale))
        sized, steps_size = matched_size(evaluate, model_bytes, start_size)
        return {"setting": f"{codec.setting}, bound eps·std per component, (frames × particles) chunks of "
                           f"{CHUNK_FRAMES} training frames",
                "matched_accuracy": self._codec_entry(accurate), "matched_size": self._codec_entry(sized),
                "search_points": steps_accuracy + steps_size, "time_s": time.perf_counter() - start}

    # ------------------------------------------------------------------ all of them
    def report(self, target_r2: float, model_bytes: int) -> dict[str, Any]:
        """The `baselines` block of metrics.json (docs/contracts.md); NaN as null."""
        if not (math.isfinite(target_r2) and model_bytes > 0):
            raise ValueError(f"need a finite target R² and positive model bytes, got {target_r2}, {model_bytes}")
        start = time.perf_counter()
        codecs = require(self.codec_names)
        hits_before = self.cache.hits if self.cache is not None else 0
        out: dict[str, Any] = {"target_r2": target_r2, "model_bytes": int(model_bytes),
                               "raw_bytes": self.source.raw_bytes, "window": dict(self.source.key)}
        if not np.any(self.source.train_moments[2] > 0):
            return json_safe({**out, "skipped": "every component is constant on the training frames"})
        out["svd"] = self.svd(target_r2, model_bytes)
        for codec in codecs:
            out[codec.name] = self.codec(codec, target_r2, model_bytes)
        if self.cache is not None:
            where = self.cache.save()
            out["cache"] = {"path": None if where is None else str(where),
                            "points_reused": self.cache.hits - hits_before}
        out["time_s"] = time.perf_counter() - start
        return json_safe(out)


def classical_baselines(source: BaselineSource, target_r2: float, model_bytes: int,
                        cache_dirs: list | None = None, codecs: tuple[str, ...] = DEFAULT_CODECS,
                        device: str = "cpu") -> dict[str, Any]:
    """The `baselines` block for a run whose training R² is target_r2 and which stores model_bytes.

    cache_dirs: from `cache.cache_dirs(dataset_dir)`; None or a source without a fingerprint: no cache."""
    require(codecs)
    cache = None
    if cache_dirs and source.key.get("fingerprint"):
        cache = BaselineCache(list(cache_dirs), {**source.key, "codecs": codec_versions(codecs)})
    return ClassicalBaselines(source, cache, codecs, device).report(target_r2, model_bytes)
