"""Lightning loggers from the `logger` config group (wandb, offline by default; csv; none), built by
hydra.utils.instantiate from the option's `_target_`.

W&B's run starts before the fit and outside its training clock (`start_logger`); `BackgroundWandbLogger` can
start it in a thread and keeps the logs made meanwhile in order.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from pytorch_lightning.loggers import Logger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from mpm_inr.config.build import has_target, partial_of


def build_logger(cfg: Mapping[str, Any], run_dir: str, run_name: str, flat_config: dict[str, Any]):
    """The logger group's `_target_` (CSVLogger, wandb_logger) writing to the run dir; None for logger=none."""
    if not has_target(cfg):
        return None
    make = partial_of({**cfg, "save_dir": run_dir}, "logger")
    run_time = {"default_name": run_name, "config": flat_config}  # given to a target that takes them (ours)
    accepted = inspect.signature(make).parameters
    return make(**{k: v for k, v in run_time.items() if k in accepted})


def wandb_logger(save_dir: str, default_name: str, config: dict[str, Any], project: str = "mpm-inr",
                 mode: str = "offline", group: str | None = None, job_type: str | None = None,
                 tags: list[str] | None = None, run_name: str | None = None):
    """Lightning's WandbLogger as we run it: WANDB_MODE wins over `mode` (disabled: no logger), the run named
    <field>_<inr_type> unless run_name says otherwise, the run's flat config attached."""
    mode = os.environ.get("WANDB_MODE") or mode
    if mode == "disabled":
        return None
    logger = WandbLogger(project=project, name=run_name or default_name, group=group, job_type=job_type,
                         tags=[str(t) for t in (tags or [])], save_dir=save_dir, mode=mode, config=config,
                         reinit="finish_previous")
    # Lightning 2.6 always passes anonymous=None, which wandb >= 0.2x answers with a deprecation line on every
    # run ("The anonymous setting has no effect"); the setting is unset when omitted, so omit it
    if logger._wandb_init.get("anonymous") is None:
        logger._wandb_init.pop("anonymous", None)
    return BackgroundWandbLogger(logger)


class BackgroundWandbLogger(Logger):
    """Lightning's WandbLogger behind a logger whose W&B run starts in a thread (`start`), so that the fit need not
    wait for it: Lightning's fit reads `experiment` of any logger that has one at its set-up, which would wait for
    the start, so this logger has none; the run is `run`, for `finish_logger`.

    Until the run exists, `log_metrics`, `log_hyperparams` and `finalize` are kept in order and replayed in that
    order at the first call after it exists (at the latest when `run` is read), so no line is lost. A start that
    failed raises its own exception at that call, as `wandb.init` inside the fit did: the run fails with the same
    error, at most one log later. Only the thread that built the logger logs through it; the start thread only
    creates the run. Never started, the run starts when first needed, as Lightning's logger does."""

    def __init__(self, wandb_logger: WandbLogger) -> None:
        super().__init__()
        self.wandb = wandb_logger
        self._deferred: list[tuple[Callable[..., None], tuple]] = []
        self._start_error: BaseException | None = None
        self._starter = threading.Thread(target=self._start_run, name="wandb-start", daemon=True)

    def start(self) -> None:
        self._starter.start()

    def wait_started(self) -> None:
        """Wait for the start (raising its error) and replay what was kept meanwhile."""
        self._await_run()

    def _start_run(self) -> None:
        try:
            _ = self.wandb.experiment  # Lightning's own start: wandb.init and the step metric
        except BaseException as err:  # noqa: BLE001 - raised in the logging thread by _await_run
            self._start_error = err

    def _await_run(self) -> None:
        """Wait for the start, raise its error, then replay what was kept (calls made meanwhile see an empty list)."""
        if self._starter.ident is not None:
            self._starter.join()
        if self._start_error is not None:
            raise self._start_error
        kept, self._deferred = self._deferred, []
        for call, args in kept:
            call(*args)

    def _call(self, call: Callable[..., None], *args: Any) -> None:
        if self._starter.is_alive():
            self._deferred.append((call, args))
            return
        self._await_run()
        call(*args)

    @property
    def run(self):
        """The W&B run, once started, with every kept call replayed."""
        self._await_run()
        return self.wandb.experiment

    @property
    def name(self) -> str | None:
        return self.wandb.name

    @property
    def version(self) -> str | None:
        return self.wandb.version

    @property
    def save_dir(self) -> str | None:
        return self.wandb.save_dir

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._call(self.wandb.log_metrics, dict(metrics), step)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self._call(self.wandb.log_hyperparams, params)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self._call(self.wandb.finalize, status)


def start_logger(logger: Logger | None) -> None:
    """Start the logger's run now (W&B) and wait for it, before the fit; the others start when first used.
    Not beside the fit: W&B's start is Python work that shares the GIL with the training loop, and measured on
    the 2-core VM it added ~0.9 s to the training time of a 1-3 s fit (C 2.63 -> 3.49 s, F 0.60 -> 1.44 s),
    about what it saved in wall time. Training time is a result of the study, so the start waits here, outside
    the training clock (a failed start raises its own error here)."""
    if isinstance(logger, BackgroundWandbLogger):
        logger.start()
        logger.wait_started()


def finish_logger(logger, summary: Mapping[str, Any], image_path: str | None) -> str | None:
    """Log the final summary (and the field plot) and close the run, so multiruns never share a W&B run."""
    if logger is None:
        return None
    # The phases done so far (all but the outputs, which include this call) as scalars a dashboard can plot.
    phases = {f"time_{k}": v for k, v in (summary.get("timings") or {}).items()}
    if isinstance(logger, BackgroundWandbLogger):
        import wandb

        run = logger.run
        run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool, list))})
        run.summary.update(phases)
        provenance = summary.get("dataset_provenance")
        fingerprint = provenance.get("fingerprint") if isinstance(provenance, Mapping) else None
        if fingerprint:  # which bytes the run saw, as a config key so dashboards can group and filter by it
            run.summary["dataset_fingerprint"] = fingerprint
            run.config.update({"data.fingerprint": fingerprint[:16]}, allow_val_change=True)
        if image_path and os.path.exists(image_path):
            run.log({"field_plot": wandb.Image(image_path)})
        run_id = run.id
        run.finish()
        return run_id
    scalars = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    logger.log_metrics({**scalars, **phases})
    logger.finalize("success")
    return None
