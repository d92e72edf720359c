"""A codec file's window section, written and read in one place: which frames and particles a file decodes to,
and which frames it was fitted on. Our model files and the quantised SVD's files (svd_file) carry the same one,
so the two are compared on the same container, not on what each chose to record.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from mpm_inr.codec.format import CodecError
from mpm_inr.data.window import FieldWindow, holdout_mask, holdout_rule


def window_section(field: str, start: int, n_frames: int, n_particles: int, n_components: int,
                   held_out: np.ndarray, t_period: float) -> dict[str, Any]:
    """The window a decoder rebuilds; `held_out` (n_frames,) bool, regularly held-out frames (data.holdout_every)
    stored as their rule, any other set as its list (format 6: with every 4th frame held out the list cost 0.4 KB
    at 1 000 frames and 5.1 KB at 10 000; at 100 frames the dictionary already held it)."""
    every = holdout_rule(held_out)
    rule = {"holdout_every": every} if every else {"held_out": [int(i) for i in np.flatnonzero(held_out)]}
    return {"field": field, "start": int(start), "n_frames": int(n_frames), "n_particles": int(n_particles),
            "n_components": int(n_components), **rule, "t_period": float(t_period)}


def field_window_section(window: FieldWindow, t_period: float) -> dict[str, Any]:
    """window_section of a loaded window (its frames, particles and held-out frames)."""
    return window_section(window.field, int(window.frames[0]), window.n_frames, window.n_particles,
                          window.n_components, window.held_out, t_period)


def held_out_mask(window: dict[str, Any]) -> np.ndarray:
    """(n_frames,) bool, True at the frames the model was not fitted on: their rule (`holdout_every`, format 6)
    or their list (every format; an empty one when nothing is held out)."""
    n_frames = int(window["n_frames"])
    if "holdout_every" in window:
        every = window["holdout_every"]
        if not isinstance(every, int) or every < 2:
            raise CodecError(f"the file's held-out rule holdout_every={every!r} is not an integer >= 2; the "
                             f"file is inconsistent, encode it again")
        return holdout_mask(n_frames, every)
    mask = np.zeros(n_frames, dtype=bool)
    mask[np.asarray(window["held_out"], dtype=np.int64)] = True
    return mask


def window_offsets(window: dict[str, Any], frames: Sequence[float] | np.ndarray) -> np.ndarray:
    """Absolute (possibly fractional) frame numbers -> float64 frames since the window's start, or one CodecError
    line for a time outside the window: no file extrapolates."""
    offset = np.asarray(frames, dtype=np.float64) - window["start"]
    last = window["n_frames"] - 1
    if offset.size and (offset.min() < 0 or offset.max() > last or not np.isfinite(offset).all()):
        raise CodecError(f"frame times must lie in the window [{window['start']}, {window['start'] + last}] "
                         f"(the model does not extrapolate); got {np.asarray(frames).min()}.."
                         f"{np.asarray(frames).max()}")
    return offset


class WindowFrames(ABC):
    """The frames of a decoded file's window, from its metadata: shared by our models (decode.CodecModel) and the
    quantised SVD's (svd_file.SVDModel), which differ only in how they predict."""

    meta: dict[str, Any]

    @property
    def frames(self) -> np.ndarray:
        """Absolute dataset frame numbers of the window."""
        return self.meta["window"]["start"] + np.arange(self.meta["window"]["n_frames"])

    @property
    def train_frames(self) -> np.ndarray:
        """Window indices of the frames the file was fitted on (R² is reported over these)."""
        return np.flatnonzero(~held_out_mask(self.meta["window"]))

    @abstractmethod
    def predict(self, frames: Sequence[float] | np.ndarray) -> np.ndarray:
        """(len(frames), N, C) float32 in original units at absolute (possibly fractional) frame numbers."""

    def decode_window(self) -> np.ndarray:
        """Every frame of the window, (T, N, C)."""
        return self.predict(self.frames)
