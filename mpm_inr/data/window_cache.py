"""An in-process cache of field windows, so the 2nd..nth job of a --multirun (one interpreter running its jobs in
turn) does not read, check and normalise the same window again, nor recompute what depends on the window alone
(the SVD baseline).

A window is keyed by the dataset directory (resolved), its recorded fingerprint, the identity of every file the
window reads (size, mtime and inode of meta.json, the field's .npy, x.npy, type.npy and object_id.npy) and the
window's spec (field, frames, held-out frames, normalisation). A regenerated or edited dataset changes one of
them, so a cached window is never stale. Each hit hands out a copy of the arrays (about 10 ms for 100 frames of
9000 particles against 0.1-0.2 s to build), so a caller that writes into its window cannot change the next
job's. The cache holds at most `MAX_WINDOWS` windows and `MAX_BYTES` of arrays, least recently used first out;
a window bigger than the byte budget is built and not kept.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mpm_inr.config.fields import FIELDS
from mpm_inr.data.dataset import META, open_dataset, recorded_fingerprint
from mpm_inr.data.window import FieldWindow

MAX_WINDOWS = 2
MAX_BYTES = 512 * 2**20  # two 1000-frame F windows of 9000 particles (216 MB each) fit; a third evicts the oldest

T = TypeVar("T")

_ARRAYS = ("frames", "values", "positions", "material", "object_id", "held_out", "mean", "std")


@dataclass
class _Entry:
    window: FieldWindow
    nbytes: int
    derived: dict[Hashable, Any] = field(default_factory=dict)


@dataclass
class CacheStats:
    """How the cache has been used in this process (tests count builds, never time)."""

    builds: int = 0
    hits: int = 0
    derived_builds: int = 0
    derived_hits: int = 0


_entries: OrderedDict[tuple, _Entry] = OrderedDict()
_lock = threading.Lock()
stats = CacheStats()


def _file_identity(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)  # follows symlinks: a dataset of links to another one is keyed by the files it reads
    return st.st_size, st.st_mtime_ns, st.st_ino


def window_key(dataset_path: str | os.PathLike, field_name: str, n_training_frames: int, holdout_every: int,
               normalize: bool) -> tuple:
    """The cache key of a window: what it is built from, down to the files' identities. Opening the dataset
    validates it as `FieldWindow.from_dataset` would, so a broken dataset fails here with its usual error."""
    path = Path(dataset_path).resolve()
    ds = open_dataset(path)
    array = FIELDS[field_name].array if field_name in FIELDS else field_name
    files = tuple(_file_identity(path / name) for name in
                  (META, f"{array}.npy", "x.npy", "type.npy", "object_id.npy"))
    return (str(path), recorded_fingerprint(ds), files, field_name, int(n_training_frames), int(holdout_every),
            bool(normalize))


def _copy(window: FieldWindow, key: tuple | None) -> FieldWindow:
    arrays = {name: np.array(getattr(window, name), copy=True) for name in _ARRAYS}
    return dataclasses.replace(window, **arrays, cache_key=key)


def get_window(dataset_path: str | os.PathLike, field_name: str, n_training_frames: int, holdout_every: int,
               normalize: bool) -> FieldWindow:
    """`FieldWindow.from_dataset` of the dataset at `dataset_path`, from the cache when the same files gave it
    before. The returned window owns its arrays and carries `cache_key`, for `derived`."""
    key = window_key(dataset_path, field_name, n_training_frames, holdout_every, normalize)
    with _lock:
        entry = _entries.get(key)
        if entry is not None:
            _entries.move_to_end(key)
            stats.hits += 1
            return _copy(entry.window, key)
    window = FieldWindow.from_dataset(open_dataset(key[0]), field_name, n_training_frames, holdout_every, normalize)
    nbytes = sum(np.asarray(getattr(window, name)).nbytes for name in _ARRAYS)
    with _lock:
        stats.builds += 1
        if nbytes <= MAX_BYTES:
            _entries[key] = _Entry(window, nbytes)
            _evict()
    return _copy(window, key)


def _evict() -> None:
    while len(_entries) > MAX_WINDOWS or sum(e.nbytes for e in _entries.values()) > MAX_BYTES:
        _entries.popitem(last=False)


def has_derived(window: FieldWindow, name: Hashable) -> bool:
    """Whether `derived(window, name, ...)` would return a kept value without computing it."""
    key = window.cache_key
    with _lock:
        entry = _entries.get(key) if key is not None else None
        return entry is not None and name in entry.derived


def derived(window: FieldWindow, name: Hashable, compute: Callable[[], T]) -> T:
    """`compute()`, a value that depends on the window's values alone (and on `name`, which should say everything
    else it depends on: the method, its settings, the device), kept with the cached window so later jobs on the
    same window reuse it. A window not from the cache, or evicted since, just computes. The value is shared between
    jobs, so callers must not modify it."""
    key = window.cache_key
    with _lock:
        entry = _entries.get(key) if key is not None else None
        if entry is not None and name in entry.derived:
            stats.derived_hits += 1
            return entry.derived[name]
    value = compute()
    with _lock:
        stats.derived_builds += 1
        entry = _entries.get(key) if key is not None else None
        if entry is not None:
            entry.derived[name] = value
    return value


def clear() -> None:
    """Forget every cached window and reset the counts."""
    with _lock:
        _entries.clear()
        for name in ("builds", "hits", "derived_builds", "derived_hits"):
            setattr(stats, name, 0)


def cached_keys() -> list[tuple]:
    with _lock:
        return list(_entries)
