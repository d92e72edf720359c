"""The frames a run's baselines see: a (T_all, N, C) array (in memory or memory-mapped), its training and
held-out rows, and the key that names them in the cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from mpm_inr.data.dataset import MPMDataset, recorded_fingerprint
from mpm_inr.data.window import FIELDS, FieldWindow, holdout_mask, window_bounds
from mpm_inr.errors import ConfigError
from mpm_inr.metrics.svd import frame_moments


@dataclass(frozen=True)
class BaselineSource:
    """Rows `train` (fitted/compressed) and `test` (held out, interpolated) of `values`; a row's time is its index
    minus `time_origin` (the window's first row), so a window read from the dataset and the same window in memory
    interpolate with the same numbers.

    key: what identifies these numbers across runs: dataset fingerprint, field, window [start, stop) in the
    dataset's frames and holdout_every. A None fingerprint (a dataset made before fingerprints) disables caching.
    """

    values: Any  # (T_all, N, C) float32 array-like
    train: np.ndarray
    test: np.ndarray
    key: dict[str, Any] = field(default_factory=dict)
    time_origin: int = 0

    @property
    def n_particles(self) -> int:
        return int(self.values.shape[1])

    @property
    def n_components(self) -> int:
        return int(self.values.shape[2])

    @property
    def raw_bytes(self) -> int:
        """float32 bytes of the training frames: what every compression ratio divides."""
        return 4 * self.train.size * self.n_particles * self.n_components

    @cached_property
    def train_moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-component mean, std and SS_tot of the training frames."""
        return frame_moments(self.values, self.train)

    def times(self, rows: np.ndarray) -> np.ndarray:
        """The times of `rows` (float64): what held-out frames are interpolated in."""
        return np.asarray(rows, dtype=np.float64) - self.time_origin

    @cached_property
    def test_ss_tot(self) -> np.ndarray:
        return frame_moments(self.values, self.test)[2]

    @classmethod
    def from_dataset(cls, dataset: MPMDataset, field_name: str, n_training_frames: int,
                     holdout_every: int = 0) -> BaselineSource:
        """The run's window of a dataset, read through the memory map (works for the whole simulation)."""
        if field_name not in FIELDS:
            raise ConfigError(f"unknown field {field_name!r}; valid: {', '.join(FIELDS)}")
        array, n_components = FIELDS[field_name].array, FIELDS[field_name].n_components
        start, stop = window_bounds(dataset.n_frames, n_training_frames)
        mapped = dataset.mmap(array)
        values = mapped.reshape(mapped.shape[0], mapped.shape[1], n_components)
        held_out = holdout_mask(stop - start, holdout_every)
        rows = np.arange(start, stop)
        key = {"fingerprint": recorded_fingerprint(dataset), "field": field_name, "frames": [start, stop],
               "holdout_every": int(holdout_every)}
        return cls(values, rows[~held_out], rows[held_out], key, start)

    @classmethod
    def from_window(cls, window: FieldWindow, fingerprint: str | None, holdout_every: int) -> BaselineSource:
        """A run's FieldWindow (already in memory); fingerprint: the dataset's, as in dataset_provenance."""
        key = {"fingerprint": fingerprint, "field": window.field,
               "frames": [int(window.frames[0]), int(window.frames[-1]) + 1], "holdout_every": int(holdout_every)}
        return cls(window.values, window.train_frames, window.test_frames, key)
