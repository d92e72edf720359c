"""On-disk cache of a window's baseline numbers, so a study computes each window once.

One JSON file per (dataset fingerprint, field, window, holdout_every), holding the SVD's R² at every rank, its
held-out R² at the ranks asked so far, and every compressor point evaluated so far (keyed by the bound's
exponent; the search visits the same exponents for the same target, see search.py). It lives in
`<dataset>/baselines/`, or in `$XDG_CACHE_HOME/mpm_inr/baselines/` (~/.cache) when the dataset directory is not
writable; when neither is, nothing is cached. Writes merge with what is on disk and replace the file atomically,
so parallel runs of a study lose at most a point, never corrupt the file. A file whose key (format, fingerprint,
window, codec versions) differs is ignored and overwritten.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

FORMAT = "mpm_inr.baselines/1"


def user_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mpm_inr" / "baselines"


def cache_dirs(dataset_dir: str | os.PathLike | None) -> list[Path]:
    """Where a window's cache file may live, in order of preference."""
    return ([Path(dataset_dir) / "baselines"] if dataset_dir is not None else []) + [user_cache_dir()]


def _file_name(key: dict[str, Any]) -> str:
    start, stop = key["frames"]
    return f"{key['fingerprint'][:16]}_{key['field']}_{start}-{stop}_h{key['holdout_every']}.json"


def json_safe(value: Any) -> Any:
    """NaN → null (strict JSON); lists and dicts recursively."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


class BaselineCache:
    """The entries of one window: `svd` (a dict) and `points[codec][exponent]` (CodecPoint records)."""

    def __init__(self, directories: list[str | os.PathLike], key: dict[str, Any]) -> None:
        self.key = {"format": FORMAT, **key}
        self.paths = [Path(directory) / _file_name(key) for directory in directories]
        self.svd: dict[str, Any] = {}
        self.points: dict[str, dict[str, dict[str, Any]]] = {}
        self.hits = self.misses = 0
        for path in self.paths:
            stored = self._read(path)
            if stored is not None:
                self.svd, self.points = stored.get("svd", {}), stored.get("points", {})
                break

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            stored = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return stored if isinstance(stored, dict) and stored.get("key") == self.key else None

    def point(self, codec: str, exponent: float) -> dict[str, Any] | None:
        record = self.points.get(codec, {}).get(repr(exponent))
        self.hits, self.misses = self.hits + (record is not None), self.misses + (record is None)
        return record

    def add_point(self, codec: str, record: dict[str, Any]) -> None:
        self.points.setdefault(codec, {})[repr(record["exponent"])] = json_safe(record)

    def save(self) -> Path | None:
        """Merge into the first writable location; returns where it went (None if nowhere was writable)."""
        for path in self.paths:
            stored = self._read(path) or {}
            points = stored.get("points", {})
            for codec, records in self.points.items():
                points.setdefault(codec, {}).update(records)
            svd = {**stored.get("svd", {}), **self.svd}
            svd["holdout"] = {**stored.get("svd", {}).get("holdout", {}), **self.svd.get("holdout", {})}
            part = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                part.write_text(json.dumps({"key": self.key, "svd": json_safe(svd), "points": points}) + "\n")
                part.replace(path)
            except OSError:
                with contextlib.suppress(OSError):
                    part.unlink(missing_ok=True)
                continue
            return path
        return None
