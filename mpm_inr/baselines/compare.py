"""The classical baselines of one run's window at the run's accuracy and the run's size, in bytes.

For the truncated SVD (per-component centred, the best rank-k fit for the reported R², Eckart–Young), SZ3 and
ZFP: the smallest stored size that reaches the run's R² on its training frames (matched accuracy) and the R²
reached within the run's stored bytes (matched size), each with the held-out R² when the window holds frames
out. Sizes are bytes a decoder needs: the SVD's float32 U_k, S_k, V_k and component means; the compressors'
streams. Both are read off the window's tables (svd_table.py: every rank, one decomposition per window;
search.py: the compressors on a fixed grid of error bounds, each point computed when a query first needs it),
cached per window, so a later run of the window costs a file read plus the grid points its own R² and bytes need.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from mpm_inr.baselines.cache import BaselineCache, json_safe
from mpm_inr.baselines.codecs import CODECS, codec_versions, require
from mpm_inr.baselines.evaluate import CHUNK_FRAMES, CodecPoint, ComponentEvaluator
from mpm_inr.baselines.search import GRID_STEP, Table
from mpm_inr.baselines.source import BaselineSource
from mpm_inr.baselines.svd_table import SVD_SCALING, SVDTable, compute_svd_table
from mpm_inr.metrics.interpolate import METHODS
from mpm_inr.metrics.svd import svd_param_count
from mpm_inr.threads import process_workers

DEFAULT_CODECS = ("sz3", "zfp")
#: what `warm` queries after the matched size: matched accuracy at the design document's two thresholds, the R²
#: most runs land near (a run's own R² then walks lattice points these already read, or the very same points)
WARM_TARGETS = (0.995, 0.999)


def svd_bytes(rank: int, n_frames: int, n_columns: int, n_components: int) -> int:
    """float32 bytes of a rank-k SVD with its component means: 4·(k·(T + N·C + 1) + C)."""
    return 4 * (svd_param_count(rank, n_frames, n_columns) + n_components)


class WindowBaselines:
    """The baselines of one source: its SVD table and one compressor table per codec, from (and to) the cache
    when the source has a fingerprint and a cache directory is writable."""

    def __init__(self, source: BaselineSource, cache_dirs: list | None = None,
                 codec_names: tuple[str, ...] = DEFAULT_CODECS, device: str = "cpu") -> None:
        self.source, self.codec_names, self.device = source, tuple(codec_names), device
        self.cache = None
        if cache_dirs and source.key.get("fingerprint"):
            self.cache = BaselineCache(list(cache_dirs), {**source.key, "codecs": codec_versions(self.codec_names)})
        self._svd: SVDTable | None = None
        self._tables: dict[str, Table] = {}
        self._evaluators: dict[str, ComponentEvaluator] = {}  # made on first use: a run without baselines
        # never needs the codecs installed
        self.workers: int | None = None  # the codecs' processes; None: the run's torch threads (process_workers)

    # ------------------------------------------------------------------ tables
    def svd_table(self) -> SVDTable:
        """The window's SVD at every rank: from the cache, else one decomposition (stored at once)."""
        if self._svd is None:
            start = time.perf_counter()
            stored = self.cache.svd if self.cache is not None else {}
            self._svd = SVDTable.from_record(stored, self.source, 0.0) if stored else None
            if stored and self._svd is None and self.cache is not None:
                self.cache.distrust_svd()
            if self._svd is not None:
                self._svd = dataclasses.replace(self._svd, time_s=time.perf_counter() - start)
            else:
                self._svd, _ = compute_svd_table(self.source, self.device)
                if self.cache is not None:
                    self.cache.svd = self._svd.as_record()
                    self.cache.save()
        return self._svd

    def adopt_svd_table(self, table: SVDTable) -> SVDTable:
        """Use a table of this window computed elsewhere (an earlier job of this process, mpm_inr.data.window_cache)
        for the SVD baseline too; returns it."""
        self._svd = table
        return table

    def compressions(self) -> int:
        """Real compressions this object made (a warm window makes none)."""
        return sum(evaluator.calls for evaluator in self._evaluators.values())

    def table(self, name: str) -> Table:
        if name not in self._evaluators:  # its processes: the torch threads the run pinned (mpm_inr.threads)
            workers = process_workers() if self.workers is None else self.workers
            self._evaluators[name] = ComponentEvaluator(self.source, CODECS[name], workers=workers)
        if name not in self._tables:
            stored = self.cache.points.get(name, {}) if self.cache is not None else {}
            self._tables[name] = Table(self._evaluators[name].point, CODECS[name].start_scale, stored)
        return self._tables[name]

    def close_workers(self) -> None:
        """End the codecs' worker processes (ComponentEvaluator); a later compression forks new ones."""
        for evaluator in self._evaluators.values():
            evaluator.close()

    @contextlib.contextmanager
    def _computing(self) -> Iterator[None]:
        """Hold the window's compute lock (a second process needing points waits, then finds them stored) and
        read what the cache holds by then; stores what the block computed. The codecs' worker processes end
        with the block."""
        try:
            if self.cache is None:
                yield
                return
            with self.cache.computing():
                self.reload()
                calls_before, bands_before = self.compressions(), dict(self.cache.bands)
                yield
                for name, table in self._tables.items():
                    self.cache.points[name] = table.points
                if self.compressions() > calls_before or self.cache.bands != bands_before:
                    self.cache.save()
        finally:
            self.close_workers()

    def full_tables(self, store_each: bool = False) -> dict[str, tuple[float, float]]:
        """Every grid point of each codec's band (search.Table.full_band) that the cache does not hold yet, so
        that later runs of the window compress nothing inside it; returns each band (x of both ends).
        store_each: store every point as it comes (a process that may be stopped anywhere keeps all it computed)."""
        require(self.codec_names)
        with self._computing():
            stored = self.cache.bands if self.cache is not None else {}
            filling = {name: self.table(name).filling_band() for name in self.codec_names if name not in stored}
            while filling:  # a point of each codec in turn: stopped early, every codec has its share
                for name, points in list(filling.items()):
                    if next(points, None) is None:
                        del filling[name]
                        stored[name] = self.table(name).band
                    elif store_each and self.cache is not None:
                        self.cache.points[name] = self.table(name).points
                        self.cache.save()
            return {name: stored[name] for name in self.codec_names}

    def warm(self, targets: tuple[float, ...] = WARM_TARGETS, model_bytes: int | None = None,
             essentials_stored: Callable[[], None] | None = None) -> None:
        """Compute and store the grid points that do not depend on a run's result. First what a query of the run
        reads that is known before its fit: the matched-size query at the run's bytes (float32 parameters, no
        codec file); stored, then `essentials_stored()`. Then, as time allows, the matched-accuracy queries at
        `targets`, stored again. A run's own queries then compress only the points their walks did not reach
        (the walks share one lattice, search.py); their answers are the same (an answer depends only on the
        query and the codec's points)."""
        require(self.codec_names)
        if model_bytes is not None:
            with self._computing():
                for name in self.codec_names:
                    self.table(name).matched_size(model_bytes)
        if essentials_stored is not None:
            essentials_stored()
        with self._computing():
            for target in targets:
                for name in self.codec_names:
                    self.table(name).matched_accuracy(target)

    def needs_warming(self) -> bool:
        """Whether the cache lacks every point of some codec (a window no run or table command has queried): only
        then is `warm` worth a process beside the run (aside.py)."""
        return self.cache is not None and any(not self.cache.points.get(name) for name in self.codec_names)

    def needs_tables(self) -> bool:
        """Whether some codec's band is not complete in the cache (`full_tables` would compress)."""
        return self.cache is not None and any(name not in self.cache.bands for name in self.codec_names)

    def reload(self) -> None:
        """Re-read the cache (another process may have stored tables); in-memory tables follow it."""
        if self.cache is not None:
            self.cache.reload()
            self._tables = {}

    # ------------------------------------------------------------------ reading the tables
    def _svd_entry(self, rank: int, table: SVDTable) -> dict[str, Any]:
        source = self.source
        n_bytes = svd_bytes(rank, source.train.size, source.n_particles * source.n_components, source.n_components)
        entry = {"rank": rank, "bytes": n_bytes, "compression": source.raw_bytes / n_bytes,
                 "r2": float(table.r2_rank[rank - 1]),
                 "r2_per_component": [float(v) for v in table.r2_per_component_rank[rank - 1]]}
        if source.test.size:
            entry["holdout_r2"] = {method: float(table.holdout[method][rank - 1]) for method in METHODS}
        return entry

    def svd(self, target_r2: float, model_bytes: int) -> dict[str, Any]:
        """The SVD's matched-accuracy rank (smallest reaching target_r2) and matched-size rank (largest within
        model_bytes); either is None when no rank qualifies."""
        start = time.perf_counter()
        table = self.svd_table()
        source = self.source
        reached = np.flatnonzero(table.r2_rank >= target_r2)
        per_rank = svd_bytes(1, source.train.size, source.n_particles * source.n_components, 0)
        within = min((model_bytes - 4 * source.n_components) // per_rank, table.r2_rank.size)
        return {
            "scaling": SVD_SCALING,
            "matched_accuracy": self._svd_entry(int(reached[0]) + 1, table) if reached.size else None,
            "matched_size": self._svd_entry(int(within), table) if within >= 1 else None,
            "time_s": time.perf_counter() - start,
        }

    def _codec_entry(self, point: CodecPoint | None) -> dict[str, Any] | None:
        if point is None:
            return None
        entry = {"eps": point.eps, "bytes": point.bytes, "compression": self.source.raw_bytes / point.bytes,
                 "r2": point.r2, "r2_per_component": point.r2_per_component}
        if point.holdout_r2 is not None:
            entry["holdout_r2"] = {"linear": point.holdout_r2}
        return entry

    def codec(self, name: str, target_r2: float, model_bytes: int) -> dict[str, Any]:
        """A compressor's matched-accuracy and matched-size points (None when none qualifies), computing the grid
        points they need that the table lacks."""
        start = time.perf_counter()
        table = self.table(name)
        accurate, sized = table.matched_accuracy(target_r2), table.matched_size(model_bytes)
        return {"setting": f"{CODECS[name].setting}, bound eps·std per component, eps on the grid 2^-(k/"
                           f"{round(1 / GRID_STEP)}), (frames × particles) chunks of {CHUNK_FRAMES} training frames",
                "matched_accuracy": self._codec_entry(accurate), "matched_size": self._codec_entry(sized),
                "table_points": len(table.points), "compressions": self._evaluators[name].calls,
                "workers": self._evaluators[name].processes,
                "time_s": time.perf_counter() - start}

    # ------------------------------------------------------------------ all of them
    def report(self, target_r2: float, model_bytes: int) -> dict[str, Any]:
        """The `baselines` block of metrics.json (docs/contracts.md); NaN as null."""
        if not (math.isfinite(target_r2) and model_bytes > 0):
            raise ValueError(f"need a finite target R² and positive model bytes, got {target_r2}, {model_bytes}")
        start = time.perf_counter()
        require(self.codec_names)
        out: dict[str, Any] = {"target_r2": target_r2, "model_bytes": int(model_bytes),
                               "raw_bytes": self.source.raw_bytes, "window": dict(self.source.key)}
        if np.all(np.isnan(self.svd_table().r2_per_component_rank[0])):  # R² undefined: SS_tot is 0 everywhere
            return json_safe({**out, "skipped": "every component is constant on the training frames"})
        out["svd"] = self.svd(target_r2, model_bytes)
        with self._computing():
            for name in self.codec_names:
                out[name] = self.codec(name, target_r2, model_bytes)
        if self.cache is not None:
            where = self.cache.loaded_from
            out["cache"] = {"path": None if where is None else str(where), "compressions": self.compressions()}
        out["time_s"] = time.perf_counter() - start
        return json_safe(out)


def classical_baselines(source: BaselineSource, target_r2: float, model_bytes: int,
                        cache_dirs: list | None = None, codecs: tuple[str, ...] = DEFAULT_CODECS,
                        device: str = "cpu") -> dict[str, Any]:
    """The `baselines` block for a run whose training R² is target_r2 and which stores model_bytes.

    cache_dirs: from `cache.cache_dirs(dataset_dir)`; None or a source without a fingerprint: no cache."""
    require(codecs)
    return WindowBaselines(source, cache_dirs, codecs, device).report(target_r2, model_bytes)
