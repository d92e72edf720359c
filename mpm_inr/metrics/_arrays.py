"""Input coercion shared by the metric functions: numpy or torch in, float64 numpy (T, N, C) out, or float64
torch chunks of whole frames on a device (`frame_chunks`) for the passes over a whole window."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

try:  # torch is a hard dependency of the project, but metrics must not fail to import without it
    import torch
except ImportError:  # pragma: no cover
    torch = None  # type: ignore[assignment]


def to_float64(array: Any) -> np.ndarray:
    """Return `array` (numpy array, torch tensor on any device, or nested sequence) as a float64 numpy array.

    float64 because R² sums over ~1e7 values of fields whose mean can be large against their spread
    (Jp ≈ 1 ± 1e-3); float32 sums lose the digits that decide the score.
    """
    if torch is not None and isinstance(array, torch.Tensor):
        return array.detach().to(device="cpu", dtype=torch.float64).numpy()
    return np.asarray(array, dtype=np.float64)


def as_field(array: Any, name: str = "array", float64: bool = True) -> np.ndarray:
    """Coerce a field to float64 (T, N, C); a (T, N) array is read as a single component.

    float64=False keeps a floating array's own dtype (no copy of a float32 window) for callers that upcast a few
    frames at a time (`frame_chunks`)."""
    if float64:
        values = to_float64(array)
    elif torch is not None and isinstance(array, torch.Tensor):
        values = array.detach().cpu().numpy()
    else:
        values = np.asarray(array)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    if values.ndim == 2:
        values = values[:, :, None]
    if values.ndim != 3:
        raise ValueError(f"{name} must have shape (frames, particles, components), got {values.shape}")
    if values.size == 0:
        raise ValueError(f"{name} is empty (shape {values.shape})")
    return values


def as_field_pair(gt: Any, pred: Any, float64: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Coerce ground truth and prediction to float64 (T, N, C) arrays of the same shape (see `as_field`)."""
    gt_values = as_field(gt, "gt", float64)
    pred_values = as_field(pred, "pred", float64)
    if gt_values.shape != pred_values.shape:
        raise ValueError(f"gt and pred shapes differ: {gt_values.shape} vs {pred_values.shape}")
    return gt_values, pred_values


def frame_chunks(gt: np.ndarray, pred: np.ndarray, device: str = "cpu",
                 values_per_chunk: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(gt, pred) float64 tensors on `device`, a few whole frames at a time, from (T, N, C) arrays of any float dtype.

    A chunk at a time keeps each pass in cache on a CPU and never makes a float64 copy of the whole window (at
    1000 frames of 9000 particles that copy is 290 MB per array). Chunks are whole frames, so per-frame scores
    can be summed inside them."""
    if values_per_chunk is None:
        values_per_chunk = 2**18 if device.startswith("cpu") else 2**25
    frames = max(1, values_per_chunk // max(1, gt[0].size))
    for lo in range(0, gt.shape[0], frames):
        yield (torch.as_tensor(gt[lo:lo + frames], device=device).double(),
               torch.as_tensor(pred[lo:lo + frames], device=device).double())


def frame_positions(positions: Any, n_frames: int, n_particles: int) -> np.ndarray:
    """Positions (N, 2) of the middle frame, from positions given as (T, N, 2) or already as (N, 2)."""
    shape = np.shape(positions)
    if len(shape) == 3:
        if shape[0] != n_frames:
            raise ValueError(f"positions have {shape[0]} frames, the field has {n_frames}")
        positions = positions[middle_frame(n_frames)]  # the one frame is upcast, not the window's positions
    pos = to_float64(positions)
    if pos.shape != (n_particles, 2):
        raise ValueError(f"positions must be (T, {n_particles}, 2) or ({n_particles}, 2), got {shape}")
    return pos


def middle_frame(n_frames: int) -> int:
    """Index of the frame that SSIM and the field plot show: the window's middle, as in the reference."""
    return n_frames // 2
