"""Device-resident batch sampling: random (frame, particle) points across the whole window.

The reference drew one whole frame per step; drawing points uniformly over frames x particles decorrelates a
batch and lets one step see every part of the window. All draws use a torch.Generator on the data's device,
so the loop never touches numpy or the host.
"""

from __future__ import annotations

import torch
from torch import Tensor


class PointSampler:
    """Draws `n_points` (frame, particle) pairs per call, uniformly over train_frames x particles.

    mode='frames' draws `frames_per_step` whole frames instead (the reference recipe).
    """

    def __init__(self, train_frames: Tensor, n_particles: int, n_points: int, mode: str = "points",
                 frames_per_step: int = 1, seed: int = 0) -> None:
        if mode not in ("points", "frames"):
            raise ValueError(f"unknown sampler mode {mode!r}; valid: points, frames")
        self.train_frames = train_frames
        self.n_particles = n_particles
        self.n_points = n_points
        self.mode = mode
        self.frames_per_step = frames_per_step
        self.generator = torch.Generator(device=train_frames.device)
        self.generator.manual_seed(seed)
        self._all_particles = torch.arange(n_particles, device=train_frames.device)

    def sample(self) -> tuple[Tensor, Tensor]:
        device, g = self.train_frames.device, self.generator
        n_train = self.train_frames.numel()
        if self.mode == "points":
            frame_pick = torch.randint(n_train, (self.n_points,), generator=g, device=device)
            particle_idx = torch.randint(self.n_particles, (self.n_points,), generator=g, device=device)
            return self.train_frames[frame_pick], particle_idx
        frame_pick = torch.randint(n_train, (self.frames_per_step,), generator=g, device=device)
        frame_idx = self.train_frames[frame_pick].repeat_interleave(self.n_particles)
        return frame_idx, self._all_particles.repeat(self.frames_per_step)


class FrameCycle:
    """`per_step` distinct window positions per call, cycling through a fresh random permutation of the window:
    every frame is visited once per `n_frames / per_step` steps, so no frame's statistics grow older than that."""

    def __init__(self, n_frames: int, per_step: int, seed: int = 0, device: torch.device | str = "cpu") -> None:
        if not 0 < per_step <= n_frames:
            raise ValueError(f"frames per step must be in [1, {n_frames}], got {per_step}")
        self.n_frames, self.per_step = n_frames, per_step
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        self._queue = torch.empty(0, dtype=torch.long, device=device)

    def sample(self) -> Tensor:
        """The next positions, sorted (frames in time order read the window's memory in order)."""
        if self._queue.numel() < self.per_step:  # the rest of this permutation, then the next one; the leftovers
            head = self._queue                     # go last in the next, so no step repeats a frame
            perm = torch.randperm(self.n_frames, generator=self.generator, device=head.device)
            seen = torch.isin(perm, head)
            self._queue = torch.cat((head, perm[~seen], perm[seen]))
        picked, self._queue = self._queue[:self.per_step], self._queue[self.per_step:]
        return torch.sort(picked).values

