"""Classical compressors as first-class baselines of a run's window, in bytes: the truncated SVD (per-component
centred), SZ3 and ZFP at the run's R² (matched accuracy) and at the run's size (matched size), read off tables
computed once per window and cached.

Entry points: `classical_baselines(BaselineSource.from_window(...) or .from_dataset(...), target_r2, model_bytes,
cache_dirs(dataset_dir))` returns the `baselines` block of metrics.json (docs/contracts.md); a training run uses
`WindowBaselines` directly, so its `svd` block comes from the same SVD table. The compressors' grid points are
computed as queries need them (search.py); `python -m mpm_inr.baselines table ...` computes a study's windows
ahead of its runs.
"""

from mpm_inr.baselines.cache import BaselineCache, cache_dirs, user_cache_dir
from mpm_inr.baselines.codecs import CODECS, BaselinesUnavailable
from mpm_inr.baselines.compare import WindowBaselines, classical_baselines, svd_bytes
from mpm_inr.baselines.evaluate import CodecPoint, evaluate_codec
from mpm_inr.baselines.source import BaselineSource
from mpm_inr.baselines.svd_table import SVD_SCALING, SVDTable

__all__ = [
    "CODECS",
    "SVD_SCALING",
    "BaselineCache",
    "BaselineSource",
    "BaselinesUnavailable",
    "CodecPoint",
    "SVDTable",
    "WindowBaselines",
    "cache_dirs",
    "classical_baselines",
    "evaluate_codec",
    "svd_bytes",
    "user_cache_dir",
]
