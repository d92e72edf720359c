"""The W&B logger's run starts in a thread beside the fit (mpm_inr.training.loggers.BackgroundWandbLogger): logs
made before it exists are replayed in order, a failed start fails the run with its own error, and Lightning's fit
never waits for the start."""

from __future__ import annotations

import threading

import pytest

from mpm_inr.training.loggers import BackgroundWandbLogger, start_logger


class SlowStartLogger:
    """A stand-in for Lightning's WandbLogger: `experiment` (the start) blocks until `release`, then returns the
    run or raises `error`; every call is recorded with whether the run existed then."""

    name, version, save_dir = "project", None, "/nowhere"

    def __init__(self, error: BaseException | None = None) -> None:
        self.release, self.error, self.calls, self.run = threading.Event(), error, [], None

    @property
    def experiment(self):
        if self.run is None:
            self.release.wait(10)
            if self.error is not None:
                raise self.error
            self.run = "the run"
        return self.run

    def log_metrics(self, metrics, step=None):
        self.calls.append(("metrics", metrics, step, self.experiment))

    def log_hyperparams(self, params):
        self.calls.append(("hyperparams", params, None, self.experiment))

    def finalize(self, status):
        self.calls.append(("finalize", status, None, self.run))


def test_logs_before_the_run_exists_are_replayed_in_order() -> None:
    slow = SlowStartLogger()
    logger = BackgroundWandbLogger(slow)
    logger.start()
    logger.log_hyperparams({"lr": 1e-3})
    for step in range(3):  # the fit goes on: none of these waits for the start
        logger.log_metrics({"loss": float(step)}, step)
    logger.finalize("success")
    assert slow.calls == [] and slow.run is None
    slow.release.set()
    assert logger.run == "the run"
    assert [c[:3] for c in slow.calls] == [("hyperparams", {"lr": 1e-3}, None)] + [
        ("metrics", {"loss": float(s)}, s) for s in range(3)] + [("finalize", "success", None)]
    logger.log_metrics({"loss": 9.0}, 9)  # once it exists: straight through
    assert slow.calls[-1] == ("metrics", {"loss": 9.0}, 9, "the run")


def test_a_failed_start_raises_its_own_error_at_the_next_log() -> None:
    slow = SlowStartLogger(error=RuntimeError("api_key not configured"))
    logger = BackgroundWandbLogger(slow)
    logger.start()
    logger.log_metrics({"loss": 1.0}, 0)  # kept while the start runs
    slow.release.set()
    logger._starter.join(10)
    with pytest.raises(RuntimeError, match="api_key not configured"):
        logger.log_metrics({"loss": 2.0}, 1)
    with pytest.raises(RuntimeError, match="api_key not configured"):
        _ = logger.run
    assert slow.calls == []


def test_a_logger_never_started_starts_when_first_needed() -> None:
    slow = SlowStartLogger()
    slow.release.set()
    logger = BackgroundWandbLogger(slow)
    logger.log_metrics({"loss": 1.0}, 0)
    assert logger.run == "the run" and slow.calls == [("metrics", {"loss": 1.0}, 0, "the run")]


def test_lightning_sees_no_experiment_to_wait_for() -> None:
    """Lightning's fit reads `experiment` of every logger that has one at its set-up: this one has none."""
    assert not hasattr(BackgroundWandbLogger(SlowStartLogger()), "experiment")


def test_a_run_waits_for_the_w_and_b_start_before_its_fit() -> None:
    """start_logger returns with the run started: W&B's start shares the GIL with the training loop, so it must
    not overlap the training clock (it added ~0.9 s to 1-3 s fits)."""
    slow = SlowStartLogger()
    slow.release.set()
    logger = BackgroundWandbLogger(slow)
    start_logger(logger)
    assert not logger._starter.is_alive() and slow.run == "the run"
