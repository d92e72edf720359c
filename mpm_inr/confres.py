"""OmegaConf resolvers used by conf/ (part of the config contract: whoever composes conf/ registers them).

`${frames_scaled:BASE,${data.n_training_frames}}` scales a per-field default tuned at 100 frames to a longer
window. Measured on an H200 (discs_3types): the latent size K an MPM field needs grows roughly with the square
root of the window (S: K 16 at 100 frames, 32 at 400, 48 at 1000 for R² ≥ 0.995), and so do the steps.
"""

from __future__ import annotations

import math

from omegaconf import OmegaConf

REFERENCE_FRAMES = 100


def frames_scaled(base: int, frames: int) -> int:
    """base at <= 100 frames, base * sqrt(frames / 100) (rounded up) beyond."""
    base, frames = int(base), int(frames)
    if frames <= REFERENCE_FRAMES:
        return base
    return math.ceil(base * math.sqrt(frames / REFERENCE_FRAMES))


def register() -> None:
    """Idempotent: safe to call from every entry point."""
    if not OmegaConf.has_resolver("frames_scaled"):
        OmegaConf.register_new_resolver("frames_scaled", frames_scaled)
