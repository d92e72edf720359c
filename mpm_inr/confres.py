"""OmegaConf resolvers used by conf/ (part of the config contract: whoever composes conf/ registers them).

`${frames_scaled:BASE,${data.n_training_frames}[,POWER]}` scales a per-field default tuned at 100 frames to a
longer window: BASE * (frames / 100) ** POWER, POWER 0.5 unless given. Measured on discs_3types: the latent size K
most MPM fields need grows roughly with the square root of the window (S: K 16 at 100 frames, 32 at 400, 48 at
1000 for R² ≥ 0.995), and so do the steps; C needs more (its per-disc SVD rank for 0.995 goes 12 -> 36 -> 72).

`${sampled_scaled:VALUE,${data.n_training_frames},${train.step_frames},POWER}` scales a value for a window whose
steps read a sample of its frames (`train.step_frames`, auto beyond 1 000 frames: 100 per step): VALUE * (frames /
frames a step reads) ** POWER, VALUE itself where a step reads every frame. Over the whole simulation (10 000
frames, 100 per step) the presets' learning rate 3e-3 left F (seed 2) at R² 0.605 and Jp (seed 1) at 0.456, stuck
from the first 100 steps; with 7 963 steps (POWER 0.3 on 2 000, which had stopped Jp's seed 0 at 0.934), 1.5e-3
(POWER -0.15) reached 0.99872 (F, seed 2) and 0.99765 / 0.99827 / 0.99606 (Jp, seeds 0 / 1 / 2), where 9.5e-4
(POWER -0.25) left Jp at 0.99368 / 0.99519 / 0.99805.

`${sampled_choice:DENSE,SAMPLED,${data.n_training_frames},${train.step_frames}}` is SAMPLED where a step reads a
sample of the frames, DENSE where it reads them all: Jp's gradient clipping (train.grad_clip 1.0) over the whole
simulation, where 1.5e-3 with 7 963 steps still left Jp's seed 1 at 0.99342 (and with 12 619 steps collapsed it to
0.473 at step 2 300, from 0.984) while clipped it reached 0.99952 (0.99968 with 12 619 steps).
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import OmegaConf

from mpm_inr.config.step_frames import resolve_step_frames
from mpm_inr.errors import ConfigError

REFERENCE_FRAMES = 100


def _window_frames(frames: int | str) -> int:
    try:
        return int(frames)
    except (TypeError, ValueError):  # OmegaConf reports this with the key it was resolving: name the user's key
        raise ValueError(f"data.n_training_frames must be an integer, got {frames!r}") from None


def _sampled_reads(frames: int, step_frames: int | str) -> int | None:
    """The frames a step reads where it reads a sample of the window's; None where it reads every frame, or where
    train.step_frames is bad (the run's checks name it in their own words)."""
    try:
        return resolve_step_frames(step_frames, frames)
    except ConfigError:
        return None


def frames_scaled(base: int, frames: int, power: float = 0.5) -> int:
    """base at <= 100 frames, base * (frames / 100) ** power (rounded up) beyond."""
    frames = _window_frames(frames)
    base, power = int(base), float(power)
    if not 0 <= power <= 1:
        raise ValueError(f"frames_scaled power must be in [0, 1], got {power}")
    if frames <= REFERENCE_FRAMES:
        return base
    return math.ceil(base * (frames / REFERENCE_FRAMES) ** power - 1e-9)


def sampled_scaled(value: float, frames: int, step_frames: int | str, power: float) -> float:
    """value * (frames / the frames a step reads) ** power (an int value rounded up); value where a step reads every
    frame."""
    frames, power = _window_frames(frames), float(power)
    if not -1 <= power <= 1:
        raise ValueError(f"sampled_scaled power must be in [-1, 1], got {power}")
    read = _sampled_reads(frames, step_frames)
    if read is None:
        return value
    scaled = value * (frames / read) ** power
    return math.ceil(scaled - 1e-9) if isinstance(value, int) else scaled


def sampled_choice(dense: Any, sampled: Any, frames: int, step_frames: int | str) -> Any:
    """`sampled` where a step reads a sample of the window's frames, `dense` where it reads every frame."""
    return dense if _sampled_reads(_window_frames(frames), step_frames) is None else sampled


def register() -> None:
    """Idempotent: safe to call from every entry point."""
    if not OmegaConf.has_resolver("frames_scaled"):
        OmegaConf.register_new_resolver("frames_scaled", frames_scaled)
    if not OmegaConf.has_resolver("sampled_scaled"):
        OmegaConf.register_new_resolver("sampled_scaled", sampled_scaled)
    if not OmegaConf.has_resolver("sampled_choice"):
        OmegaConf.register_new_resolver("sampled_choice", sampled_choice)
