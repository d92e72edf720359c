"""LightningDataModule that serves a field window.

The window lives on the device inside the module (sampling happens there), so the dataloader only paces
training: one item per Lightning `training_step`, each of which runs `steps_per_call` optimiser steps.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from mpm_inr.data.window import FieldWindow
from mpm_inr.data.window_cache import get_window


class FieldWindowDataModule(pl.LightningDataModule):
    def __init__(self, dataset_path: Path, field: str, n_training_frames: int, holdout_every: int, normalize: bool,
                 total_steps: int, steps_per_call: int) -> None:
        super().__init__()
        self.dataset_path = Path(dataset_path)
        self.field, self.n_training_frames = field, n_training_frames
        self.holdout_every, self.normalize = holdout_every, normalize
        self.n_calls = math.ceil(total_steps / steps_per_call)
        self.window: FieldWindow | None = None

    def prepare_window(self) -> FieldWindow:
        """The window, from the process's window cache: a multirun's later jobs on the same files reuse it."""
        if self.window is None:
            self.window = get_window(self.dataset_path, self.field, self.n_training_frames, self.holdout_every,
                                     self.normalize)
        return self.window

    def setup(self, stage: str | None = None) -> None:
        self.prepare_window()

    def train_dataloader(self) -> DataLoader:
        return DataLoader(range(self.n_calls), batch_size=None, shuffle=False, num_workers=0)
