"""OmegaConf resolvers used by conf/ (part of the config contract: whoever composes conf/ registers them).

`${frames_scaled:BASE,${data.n_training_frames}[,POWER]}` scales a per-field default tuned at 100 frames to a
longer window: BASE * (frames / 100) ** POWER, POWER 0.5 unless given. Measured on discs_3types: the latent size K
most MPM fields need grows roughly with the square root of the window (S: K 16 at 100 frames, 32 at 400, 48 at
1000 for R² ≥ 0.995), and so do the steps; C needs more (its per-disc SVD rank for 0.995 goes 12 -> 36 -> 72).
"""

from __future__ import annotations

import math

from omegaconf import OmegaConf

REFERENCE_FRAMES = 100


def frames_scaled(base: int, frames: int, power: float = 0.5) -> int:
    """base at <= 100 frames, base * (frames / 100) ** power (rounded up) beyond."""
    try:
        frames = int(frames)
    except (TypeError, ValueError):  # OmegaConf reports this with the key it was resolving: name the user's key
        raise ValueError(f"data.n_training_frames must be an integer, got {frames!r}") from None
    base, power = int(base), float(power)
    if not 0 <= power <= 1:
        raise ValueError(f"frames_scaled power must be in [0, 1], got {power}")
    if frames <= REFERENCE_FRAMES:
        return base
    return math.ceil(base * (frames / REFERENCE_FRAMES) ** power - 1e-9)


def register() -> None:
    """Idempotent: safe to call from every entry point."""
    if not OmegaConf.has_resolver("frames_scaled"):
        OmegaConf.register_new_resolver("frames_scaled", frames_scaled)
