"""Classical compressors as first-class baselines of a run's window, in bytes: the truncated SVD (per-component
centred), SZ3 and ZFP at the run's R² (matched accuracy) and at the run's size (matched size), cached per window.

Entry point: `classical_baselines(BaselineSource.from_window(...) or .from_dataset(...), target_r2, model_bytes,
cache_dirs(dataset_dir))` returns the `baselines` block of metrics.json (docs/contracts.md).
"""

from mpm_inr.baselines.cache import BaselineCache, cache_dirs, user_cache_dir
from mpm_inr.baselines.codecs import CODECS, BaselinesUnavailable
from mpm_inr.baselines.compare import ClassicalBaselines, classical_baselines, svd_bytes
from mpm_inr.baselines.evaluate import CodecPoint, evaluate_codec
from mpm_inr.baselines.source import BaselineSource

__all__ = [
    "CODECS",
    "BaselineCache",
    "BaselineSource",
    "BaselinesUnavailable",
    "ClassicalBaselines",
    "CodecPoint",
    "cache_dirs",
    "classical_baselines",
    "evaluate_codec",
    "svd_bytes",
    "user_cache_dir",
]
