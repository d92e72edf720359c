"""The SVD of a window at every rank, from one decomposition: what the run's `svd` block, its
`svd_r2_same_params` and the SVD baseline in bytes all read, so a window is decomposed once (and a cached window
not at all).

Per-component centred (each component loses its training mean): the best rank-k fit for the R² reported
(Eckart–Young); see mpm_inr.metrics.svd for the decomposition and SVD_SCALING in mpm_inr.training.run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpm_inr.baselines.source import BaselineSource
from mpm_inr.metrics.interpolate import METHODS
from mpm_inr.metrics.svd import (
    DEFAULT_RANKS,
    StreamedFactors,
    SVDBaseline,
    svd_baseline_streamed,
    svd_holdout_every_rank,
)

SVD_SCALING = "centred"
#: pairs dropped once the rest hold at most this share of the window's energy (metrics.svd.kept_rank), but never
#: below the run's `svd` block ranks (DEFAULT_RANKS): every rank after them has R² within 1e-10 of 1 (held-out R²
#: moved by at most 2e-10 on the 10 000-frame windows of discs_3types), and at 10 000 frames the table costs a
#: quarter to two fifths less
TAIL_TOL = 1e-10
RUN_TARGET = 0.995  # the run's `svd` block names the rank reaching this R² (`rank_for_0.995`)


def _floats(values: Any) -> np.ndarray:
    return np.array([[math.nan if v is None else v for v in row] if isinstance(row, list)
                     else (math.nan if row is None else row) for row in values], dtype=np.float64)


@dataclass(frozen=True)
class SVDTable:
    """R² of every rank 1..r on the training frames (pooled and per component), the singular values, and with
    held-out frames their R² at every rank per interpolation method of the temporal coefficients."""

    n_frames: int
    n_particles: int
    n_components: int
    r2_rank: np.ndarray
    r2_per_component_rank: np.ndarray
    singular_values: np.ndarray
    holdout: dict[str, np.ndarray] = field(default_factory=dict)
    time_s: float = 0.0  # the decomposition's wall time, or the cache read's

    def baseline(self) -> SVDBaseline:
        return SVDBaseline(self.n_frames, self.n_particles, self.n_components, SVD_SCALING,
                           tuple(r for r in DEFAULT_RANKS if r <= self.r2_rank.size), self.r2_rank,
                           self.r2_per_component_rank, self.singular_values, self.time_s)

    def run_metrics(self, n_params: int) -> dict[str, Any]:
        """metrics.json `svd`, `svd_rank_for_target` and `svd_r2_same_params` of a run with n_params parameters
        (docs/contracts.md), the numbers the run's own SVD gave before the table."""
        svd = self.baseline()
        block = {**svd.as_metrics(RUN_TARGET, n_params), "scaling": SVD_SCALING,
                 "compression_rank": {str(r): svd.compression(r) for r in svd.ranks}, "time_s": self.time_s}
        if self.holdout:
            block["holdout"] = [{"method": method, "r2_rank": {str(r): float(self.holdout[method][r - 1])
                                                               for r in svd.ranks}} for method in METHODS]
        return {"svd": block, "svd_rank_for_target": svd.rank_for(RUN_TARGET),
                "svd_r2_same_params": (block["same_params"] or {}).get("r2")}

    def as_record(self) -> dict[str, Any]:
        """What the cache stores (NaN as null by the cache)."""
        return {"r2_rank": self.r2_rank.tolist(), "r2_per_component_rank": self.r2_per_component_rank.tolist(),
                "singular_values": self.singular_values.tolist(),
                "holdout": {method: r2.tolist() for method, r2 in self.holdout.items()}}

    @classmethod
    def from_record(cls, record: dict[str, Any], source: BaselineSource, time_s: float) -> SVDTable | None:
        """The table a cache record holds, None when it is not a complete table of this source."""
        try:
            r2 = _floats(record["r2_rank"])
            per_component = _floats(record["r2_per_component_rank"])
            singular = _floats(record["singular_values"])
            holdout = {method: _floats(values) for method, values in record["holdout"].items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        rank = r2.shape[0] if r2.ndim == 1 else -1  # up to every pair: a table kept the ranks TAIL_TOL keeps
        complete = (1 <= rank <= min(source.train.size, source.n_particles * source.n_components)
                    and per_component.shape == (rank, source.n_components)
                    and singular.shape == (rank,) and all(v.shape == (rank,) for v in holdout.values())
                    and set(holdout) == (set(METHODS) if source.test.size else set()))
        return cls(source.train.size, source.n_particles, source.n_components, r2, per_component, singular,
                   holdout, time_s) if complete else None


def compute_svd_table(source: BaselineSource, device: str = "cpu") -> tuple[SVDTable, StreamedFactors]:
    """One decomposition of the source's training frames, scored at every rank (and held out, when frames are):
    two passes over the window after its moments (shared with the compressors), the held-out scores of every
    rank and method read off the second (mpm_inr.metrics.svd.HeldOutProducts)."""
    start = time.perf_counter()
    test = source.test if source.test.size else None
    baseline, factors = svd_baseline_streamed(source.values, source.train, ranks=(1,), normalize=SVD_SCALING,
                                              device=device, test_frames=test, moments=source.train_moments,
                                              tail_tol=TAIL_TOL, min_rank=max(DEFAULT_RANKS))
    holdout = {}
    if test is not None:
        times = source.times(np.arange(source.values.shape[0]))
        for method in METHODS:
            scored = svd_holdout_every_rank(factors, test, method, times, source.test_ss_tot)
            holdout[method] = np.array([scored.r2[k] for k in scored.ranks])
    table = SVDTable(source.train.size, source.n_particles, source.n_components, baseline.r2_all_ranks,
                     baseline.r2_per_component_all_ranks, baseline.singular_values, holdout,
                     time.perf_counter() - start)
    return table, factors
