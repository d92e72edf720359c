"""Progress bar in optimiser steps (not Lightning calls), with steps/s and the latest R² estimate."""

from __future__ import annotations

import sys

import pytorch_lightning as pl
from tqdm.auto import tqdm


class StepProgress(pl.Callback):
    def __init__(self, total_steps: int, enabled: bool = True) -> None:
        self.total_steps, self.enabled = total_steps, enabled
        self.bar: tqdm | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        if self.enabled:
            self.bar = tqdm(total=self.total_steps, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.bar is None:
            return
        self.bar.update(pl_module.steps_done - self.bar.n)
        if pl_module.r2_estimate is not None:
            self.bar.set_postfix(r2_est=f"{pl_module.r2_estimate:.5f}", refresh=False)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    on_exception = lambda self, trainer, pl_module, exc: self.on_train_end(trainer, pl_module)
