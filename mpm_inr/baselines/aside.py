"""A window's baselines computed beside a run's fit, in a forked process (forked.py: it dies with the run).

What the process computes does not depend on the run's result (WindowBaselines.warm): first what every query of
the run reads that is known before its fit (the matched size at the run's bytes), then the matched accuracy at the design
document's thresholds, then the rest of the window's full tables (`full_tables`, each point stored as it comes):
the runs of a window fill its tables a fit at a time, until no run's query at any R² of the band compresses
(about 500 compressions, 12 s, for a 4-component 100-frame window). It stores them in the window's cache, which the
run's `report` re-reads under the window's compute lock. When the fit ends, `fit_ended` stops a process that is
on the tables (after the fit the run's evaluation and figure need both cores); when the run reaches its
baselines, `settle` waits for the first part only and stops the process if it is still on the rest: a run never
waits for points it may not need. The process runs the codecs in itself (no worker processes) and never calls
torch.
"""

from __future__ import annotations

import multiprocessing
from typing import Self

from mpm_inr.baselines.compare import WindowBaselines
from mpm_inr.baselines.forked import ForkedTask, can_fork

_POLL_S = 0.02  # how often `settle` looks whether the process ended without reaching its first part


class BaselinesAside:
    """The process warming one window's baselines for one run."""

    def __init__(self, baselines: WindowBaselines, model_bytes: int | None) -> None:
        self.baselines, self.model_bytes = baselines, model_bytes
        context = multiprocessing.get_context("fork")
        self.essentials, self.tabling = context.Event(), context.Event()
        self.task = ForkedTask(self._warm)

    @classmethod
    def start_for(cls, baselines: WindowBaselines, model_bytes: int | None) -> BaselinesAside | None:
        """A started process; None where nothing would be stored or gained: no cache, a window whose tables are
        full, no fork on this platform."""
        if not ((baselines.needs_warming() or baselines.needs_tables()) and can_fork()):
            return None
        aside = cls(baselines, model_bytes)
        aside.task.start()
        return aside

    def _warm(self) -> None:
        self.baselines.workers = 1  # in the forked process: process_workers would read torch's threads
        self.baselines.warm(model_bytes=self.model_bytes, essentials_stored=self.essentials.set)
        self.tabling.set()
        self.baselines.full_tables(store_each=True)

    def fit_ended(self) -> None:
        """Stop the process if it is on the full tables: what it stored stays, and the next run goes on."""
        if self.tabling.is_set():
            self.task.kill()

    def settle(self) -> None:
        """Wait until the points every query of the run reads are stored (or the process ended), then stop the
        process if it is still on the thresholds."""
        while not self.essentials.wait(_POLL_S) and self.task.running():
            pass
        self.task.kill()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.task.kill()
