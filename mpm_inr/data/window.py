"""The field window: which frames of which field a run fits, its normalisation, and its coordinates.

One place decides the window (centred at n_frames//2, as in the reference), the held-out frames, the z-score
statistics and the coordinate normalisation, so training, evaluation and plots can never disagree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from mpm_inr.config.fields import FIELDS
from mpm_inr.errors import ConfigError, DatasetError
from mpm_inr.models.context import NetworkContext
from mpm_inr.models.coordinates import CoordinateSource

_STATS_CHUNK = 32  # frames per float64 chunk in `_component_stats` (a few MB at 9000 particles)


def _all_finite(arr: np.ndarray) -> bool:
    """True when no value is NaN or ±inf. A float64 sum is non-finite exactly when some term is (float32 terms
    cannot overflow it), and it needs no temporary mask of the whole window."""
    arr = np.asarray(arr)
    if not np.issubdtype(arr.dtype, np.floating):
        return True
    return bool(np.isfinite(np.add.reduce(arr.reshape(-1), dtype=np.float64)))


def _first_non_finite(arr: np.ndarray) -> tuple[int, ...]:
    """Index of the first NaN or ±inf in C order (frame first). Only called once `_all_finite` has failed, so the
    boolean mask of the whole array is paid on the error path alone."""
    arr = np.asarray(arr)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(~np.isfinite(arr))), arr.shape))


def _non_finite_error(array: str, arr: np.ndarray, frames: np.ndarray, source: str) -> DatasetError:
    """Name the first bad value (frame, particle, component), so the user can look at it, and the fix."""
    idx = _first_non_finite(arr)
    value = np.asarray(arr)[idx]
    if arr.ndim == 1:
        where = f"particle {idx[0]}"
    else:
        where = f"frame {frames[idx[0]]}, particle {idx[1]}" + (f", component {idx[2]}" if arr.ndim > 2 else "")
    return DatasetError(f"{array} of {source} holds {value} at {where} (the first non-finite value in the window of "
                        f"frames {frames[0]}..{frames[-1]}): the dataset is corrupt; delete it and generate it again")


def _component_stats(values: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per component over the selected frames, accumulated in float64 chunk by chunk
    (two passes, so no cancellation for fields far from zero, like F near identity) instead of a float64 copy of
    the whole window: at 1000 frames x 9000 particles that copy and its variance took 2.5 s."""
    picked = np.flatnonzero(frames)
    n_comp = values.shape[-1]
    count = picked.size * int(np.prod(values.shape[1:-1]))

    def chunks():  # (C, m) float64: a row per component, so each sum runs over contiguous memory (7x faster
        # than summing a (m, C) array down its columns: 0.16 -> 0.03 s at 100 frames x 9000 particles x 4)
        for lo in range(0, picked.size, _STATS_CHUNK):
            yield np.ascontiguousarray(values[picked[lo:lo + _STATS_CHUNK]].reshape(-1, n_comp).T, dtype=np.float64)

    mean = sum(chunk.sum(1) for chunk in chunks()) / count
    var = sum(_squared_sum(chunk - mean[:, None]) for chunk in chunks()) / count
    return mean, np.sqrt(var)


def _squared_sum(rows: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", rows, rows)


def window_bounds(n_frames: int, n_training_frames: int) -> tuple[int, int]:
    """[start, stop) of the window of n_training_frames centred at n_frames // 2 (the reference's rule)."""
    if n_training_frames < 2:
        raise ConfigError(f"data.n_training_frames={n_training_frames} must be >= 2")
    if n_training_frames > n_frames:
        raise ConfigError(
            f"data.n_training_frames={n_training_frames} exceeds the dataset's {n_frames} frames; "
            f"use at most {n_frames}"
        )
    start = max(0, n_frames // 2 - n_training_frames // 2)
    start = min(start, n_frames - n_training_frames)
    return start, start + n_training_frames


def holdout_mask(n: int, every: int) -> np.ndarray:
    """True for held-out frames: every `every`-th interior frame, so held-out frames are interpolated."""
    mask = np.zeros(n, dtype=bool)
    if every and every > 0:
        if every < 2:
            raise ConfigError(f"data.holdout_every={every} must be 0 (off) or >= 2")
        k = np.arange(n)
        mask = (k % every == every // 2) & (k > 0) & (k < n - 1)
    return mask


def holdout_rule(mask: np.ndarray) -> int | None:
    """The `every` whose holdout_mask this mask is (None if it is no such mask, or holds out nothing): what a
    codec file stores instead of the held-out frames' list (2 500 numbers over the whole simulation)."""
    held = np.flatnonzero(mask)
    if held.size == 0:
        return None
    every = int(held[1] - held[0]) if held.size > 1 else 2 * int(held[0])
    for candidate in {every, every + 1} if held.size == 1 else {every}:
        if candidate >= 2 and np.array_equal(holdout_mask(mask.size, candidate), mask):
            return candidate
    return None


def frames_of(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """values[idx] along the frame axis: the array itself when idx is every frame in order (no copy: 14 MB for 100
    frames of a 4-component field, 1.4 GB at 10 000)."""
    if len(idx) == values.shape[0] and np.array_equal(idx, np.arange(values.shape[0])):
        return values
    return values[idx]


@dataclass
class FieldWindow:
    field: str
    frames: np.ndarray  # (T,) absolute frame indices
    values: np.ndarray  # (T, N, C) float32, original units
    positions: np.ndarray  # (T, N, 2)
    material: np.ndarray  # (N,)
    object_id: np.ndarray  # (N,)
    held_out: np.ndarray  # (T,) bool
    mean: np.ndarray  # (C,)
    std: np.ndarray  # (C,)
    # what the window was built from, set by mpm_inr.data.window_cache (None: not from the cache), so results that
    # depend on the window alone can be kept with it; the arrays above are this window's own copy either way
    cache_key: tuple | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def n_frames(self) -> int:
        return self.values.shape[0]

    @property
    def n_particles(self) -> int:
        return self.values.shape[1]

    @property
    def n_components(self) -> int:
        return self.values.shape[2]

    @property
    def train_frames(self) -> np.ndarray:
        return np.flatnonzero(~self.held_out)

    @property
    def test_frames(self) -> np.ndarray:
        return np.flatnonzero(self.held_out)

    @classmethod
    def from_dataset(cls, dataset, field: str, n_training_frames: int, holdout_every: int = 0,
                     normalize: bool = True) -> FieldWindow:
        if field not in FIELDS:
            raise ConfigError(f"unknown field {field!r}; valid: {', '.join(FIELDS)}")
        array, n_comp = FIELDS[field].array, FIELDS[field].n_components
        start, stop = window_bounds(dataset.n_frames, n_training_frames)
        values = np.asarray(dataset.read(array, start, stop), dtype=np.float32)
        values = values.reshape(values.shape[0], values.shape[1], n_comp)
        positions = np.asarray(dataset.read("x", start, stop), dtype=np.float32)
        held_out = holdout_mask(stop - start, holdout_every)
        return cls.from_arrays(field, np.arange(start, stop), values, positions,
                               dataset.per_particle("type"), dataset.per_particle("object_id"), held_out, normalize,
                               source=f"dataset {dataset.path}")

    @classmethod
    def from_arrays(cls, field: str, frames: np.ndarray, values: np.ndarray, positions: np.ndarray,
                    material: np.ndarray, object_id: np.ndarray, held_out: np.ndarray | None = None,
                    normalize: bool = True, source: str = "the dataset") -> FieldWindow:
        """`source` names where the arrays come from in the error a NaN or ±inf in them raises."""
        held_out = np.zeros(values.shape[0], dtype=bool) if held_out is None else held_out
        # the network reads positions, material and object ids too: a NaN there would surface later as a
        # misleading 'diverged' run
        for array, arr in ((f"{FIELDS[field].array}.npy", values), ("x.npy", positions), ("type.npy", material),
                           ("object_id.npy", object_id)):
            if not _all_finite(arr):
                raise _non_finite_error(array, arr, frames, source)
        if normalize:
            mean, std = _component_stats(values, ~held_out)
            std = np.where(std > 0, std, 1.0)
        else:
            mean, std = np.zeros(values.shape[-1]), np.ones(values.shape[-1])
        return cls(field, frames, values, positions, np.asarray(material).astype(np.int64),
                   np.asarray(object_id).astype(np.int64), held_out, mean.astype(np.float32), std.astype(np.float32))

    def network_context(self) -> NetworkContext:
        """What a network needs to know about this window: sizes and per-particle groups."""
        return NetworkContext(self.n_particles, self.n_components, torch.from_numpy(self.material),
                              torch.from_numpy(self.object_id))

    def normalize(self, values):
        """Original units -> training units (z-scored per component, or identity when normalize=false)."""
        mean, std = self._stats_like(values)
        return (values - mean) / std

    def denormalize(self, values):
        mean, std = self._stats_like(values)
        return values * std + mean

    def denormalize_(self, values: torch.Tensor) -> torch.Tensor:
        """`denormalize` in place (the same two float operations), so a long window's prediction is not copied."""
        mean, std = self._stats_like(values)
        return values.mul_(std).add_(mean)

    def _stats_like(self, values):
        if isinstance(values, torch.Tensor):
            return (torch.as_tensor(self.mean, device=values.device, dtype=values.dtype),
                    torch.as_tensor(self.std, device=values.device, dtype=values.dtype))
        return self.mean, self.std

    def coordinate_source(self, t_period: float = 1.0, xy_period: float = 1.0, with_positions: bool = False,
                          device: torch.device | str = "cpu") -> CoordinateSource:
        """Normalised coordinates: t in [-1, 1] over the window, x/y box [0, 1] -> [-1, 1], ids -> [-1, 1]."""
        n = self.n_frames
        t = torch.linspace(-1.0, 1.0, n) / t_period
        particle = torch.linspace(-1.0, 1.0, self.n_particles)
        xy = None
        if with_positions:
            xy = (torch.from_numpy(self.positions) * 2.0 - 1.0) / xy_period
            xy = xy.to(device)
        return CoordinateSource(t.to(device), particle.to(device), xy)
