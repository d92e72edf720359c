"""On-disk cache of a window's baseline tables, so a study computes each window once.

One JSON file per (dataset fingerprint, field, window, holdout_every), format FORMAT:
  key     {format, fingerprint, field, frames, holdout_every, codecs (versions), grid (search.GRID_STEP and the
           band's R² limits)}: a file whose key differs is another window's or another version's
  svd     the SVD's R² at every rank (pooled, per component), its singular values and, with held-out frames, its
           held-out R² at every rank per interpolation method (mpm_inr.baselines.svd_table)
  tables  {codec: {band: [x_lo, x_hi]}}: every grid point from x_lo to x_hi is in `points` (written by
          `python -m mpm_inr.baselines table`, search.Table.full_band; a run writes none)
  points  {codec: {repr(x): CodecPoint record}}: every grid point computed so far, by runs (the points their
          queries read, search.py) or by the table command
It lives in `<dataset>/baselines/`, or in `$XDG_CACHE_HOME/mpm_inr/baselines/` (~/.cache) when the dataset
directory is not writable; when neither is, nothing is cached. Every write merges with what is on disk under an
exclusive lock (`.<file>.lock`) and replaces the file by an atomic rename, so a kill -9 leaves the old file or
the new one, never half of one, and two writers never lose each other's entries. A file that does not parse, or
whose key or entries are not what this code writes, is never trusted: one warning line, and it is recomputed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mpm_inr.baselines.evaluate import CodecPoint
from mpm_inr.baselines.search import GRID_STEP, R2_CEILING, R2_FLOOR, on_grid
from mpm_inr.data.lock import exclusive_lock
from mpm_inr.errors import DatasetError

log = logging.getLogger(__name__)

FORMAT = "mpm_inr.baselines/2"
GRID = {"step": GRID_STEP, "r2_floor": R2_FLOOR, "r2_ceiling": R2_CEILING}
_POINT_FIELDS = {"exponent", "bytes", "r2", "r2_per_component", "holdout_r2", "holdout_r2_per_component"}


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


def _nan(values: list | None) -> list | None:
    return None if values is None else [math.nan if v is None else v for v in values]


def point_from_record(record: dict[str, Any]) -> CodecPoint:
    return CodecPoint(float(record["exponent"]), int(record["bytes"]), float(record["r2"]),
                      _nan(record["r2_per_component"]), record["holdout_r2"],
                      _nan(record["holdout_r2_per_component"]))


def _number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _valid_point(x: str, record: Any) -> bool:
    return (isinstance(record, dict) and set(record) == _POINT_FIELDS and _number(record["r2"])
            and isinstance(record["bytes"], int) and record["bytes"] > 0 and _number(record["exponent"])
            and repr(float(record["exponent"])) == x and isinstance(record["r2_per_component"], list)
            and all(_number(v) for v in record["r2_per_component"]) and _number(record["holdout_r2"]))


def _valid_tables(stored: dict[str, Any]) -> bool:
    try:
        return _check_tables(stored)
    except (TypeError, ValueError):  # a key that is not a number, a band that is not a pair ...
        return False


def _check_tables(stored: dict[str, Any]) -> bool:
    points, tables = stored.get("points", {}), stored.get("tables", {})
    if not (isinstance(points, dict) and isinstance(tables, dict)):
        return False
    for codec, records in points.items():
        if not (isinstance(records, dict) and all(_valid_point(x, r) for x, r in records.items())
                and on_grid(float(x) for x in records)):
            return False
    for codec, table in tables.items():
        band = table.get("band") if isinstance(table, dict) else None
        if not (isinstance(band, list) and len(band) == 2 and on_grid(band) and band[0] <= band[1]):
            return False
        lo, hi = band
        xs = {repr(lo + k * GRID_STEP) for k in range(round((hi - lo) / GRID_STEP) + 1)}
        if not xs <= set(points.get(codec, {})):
            return False
    return True


class BaselineCache:
    """The stored tables of one window: `svd` (a dict, empty until computed), `bands[codec]` (complete ranges of
    grid points) and `points[codec][x]` (CodecPoint). `save` merges them into the file."""

    def __init__(self, directories: list[str | os.PathLike], key: dict[str, Any]) -> None:
        self.key = {"format": FORMAT, **key, "grid": GRID}
        self.paths = [Path(directory) / _file_name(key) for directory in directories]
        self.svd: dict[str, Any] = {}
        self.bands: dict[str, tuple[float, float]] = {}
        self.points: dict[str, dict[float, CodecPoint]] = {}
        self.distrusted: set[Path] = set()  # files already warned about: one line each
        self.loaded_from: Path | None = None
        self.reload()

    def reload(self) -> None:
        """Read the first location holding a file for this window (a bad one warns and is left to be replaced)."""
        for path in self.paths:
            stored = self._read(path, warn=True)
            if stored is not None:
                self.loaded_from = path
                self.svd = stored.get("svd", {})
                self.bands = {c: (t["band"][0], t["band"][1]) for c, t in stored.get("tables", {}).items()}
                self.points = {c: {float(x): point_from_record(r) for x, r in records.items()}
                               for c, records in stored.get("points", {}).items()}
                return

    def _read(self, path: Path, warn: bool) -> dict[str, Any] | None:
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            return self._distrust(path, f"unreadable ({err.strerror or err})", warn)
        try:
            stored = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return self._distrust(path, "not valid JSON", warn)
        if not isinstance(stored, dict) or stored.get("key") != self.key:
            return self._distrust(path, "another window's, format's, grid's or codec version's", warn)
        if not (isinstance(stored.get("svd", {}), dict) and _valid_tables(stored)):
            return self._distrust(path, "malformed", warn)
        return stored

    def _distrust(self, path: Path, why: str, warn: bool) -> None:
        if warn and path not in self.distrusted:
            self.distrusted.add(path)
            log.warning("baselines cache %s is %s: not used, recomputed and replaced", path, why)

    def distrust_svd(self) -> None:
        """The stored SVD is not a complete table of this window: warn once, forget it (the next save replaces
        it: a merge keeps the new SVD, never the stored one)."""
        self._distrust(self.loaded_from or self.paths[0], "holding an SVD that is not this window's", True)
        self.svd = {}

    @contextlib.contextmanager
    def computing(self) -> Iterator[bool]:
        """Hold the window's compute lock in the first writable location (yields False where none is), so two
        jobs needing the same grid points compute them once: the second waits, then finds them stored."""
        with contextlib.ExitStack() as held:
            for path in self.paths:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    held.enter_context(exclusive_lock(path.with_name(f".{path.name}.compute.lock"),
                                                      f"to finish the baseline tables of {path.name}; they are "
                                                      f"reused then"))
                except (OSError, DatasetError):
                    continue
                yield True
                return
            yield False

    def save(self) -> Path | None:
        """Merge into the first writable location under its lock; returns where it went (None: nowhere)."""
        for path in self.paths:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with exclusive_lock(path.with_name(f".{path.name}.lock"), f"to finish writing {path.name}"):
                    self._merge_into(path)
            except (OSError, DatasetError):
                continue
            self.loaded_from = path
            return path
        return None

    def _merge_into(self, path: Path) -> None:
        for stale in path.parent.glob(f".{path.name}.*.part"):  # a writer killed mid-write (we hold the lock)
            stale.unlink(missing_ok=True)
        stored = self._read(path, warn=False) or {}
        points = stored.get("points", {})
        for codec, records in self.points.items():
            points.setdefault(codec, {}).update({repr(x): json_safe(p.as_record()) for x, p in records.items()})
        tables = {**stored.get("tables", {}), **{c: {"band": list(b)} for c, b in self.bands.items()}}
        svd = json_safe(self.svd) or stored.get("svd", {})  # one decomposition's numbers, never a mix of two
        part = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            with part.open("w") as out:
                out.write(json.dumps({"key": self.key, "svd": svd, "tables": tables, "points": points}) + "\n")
                out.flush()
                os.fsync(out.fileno())
            part.replace(path)
        finally:
            part.unlink(missing_ok=True)
