"""Lightning loggers from the `logger` config group (wandb, offline by default; csv; none), built by
hydra.utils.instantiate from the option's `_target_`."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mpm_inr.config.build import has_target, partial_of

#: the token of a wandb-core service a warm server offers the runs it forks (mpm_inr.warm.wandb_service)
SHARED_SERVICE_ENV = "MPM_INR_WANDB_SERVICE"


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
    if mode == "offline":
        attach_shared_service()
    from pytorch_lightning.loggers import WandbLogger

    logger = WandbLogger(project=project, name=run_name or default_name, group=group, job_type=job_type,
                         tags=[str(t) for t in (tags or [])], save_dir=save_dir, mode=mode, config=config,
                         reinit="finish_previous", settings={"x_save_requirements": False})  # saved at its end
    # Lightning 2.6 always passes anonymous=None, which wandb >= 0.2x answers with a deprecation line on every
    # run ("The anonymous setting has no effect"); the setting is unset when omitted, so omit it
    if logger._wandb_init.get("anonymous") is None:
        logger._wandb_init.pop("anonymous", None)
    return logger


@functools.cache
def installed_requirements() -> str:
    """The installed distributions as requirements.txt lines (`name==version`, sorted), what W&B records of a
    run's environment. W&B read them at every run's start (0.06 s on the 2-core VM); here once per process, and
    by a warm server before it forks its runs (a package install or upgrade stops the server)."""
    lines = set()
    for dist in importlib.metadata.distributions():
        with contextlib.suppress(KeyError, UnicodeDecodeError, TypeError):  # a distribution with broken metadata
            lines.add(f"{dist.metadata['Name']}=={dist.version}")
    return "".join(f"{line}\n" for line in sorted(lines, key=str.lower))


def attach_shared_service() -> None:
    """Have this process's W&B runs use the service a warm server offers, instead of starting one (0.2-0.3 s): an
    offline run's only, as an online one's service must start with its caller's environment (proxies, hosts), never
    over a WANDB_SERVICE the process was given, and not to a service whose socket is gone (a stale variable)."""
    token = os.environ.get(SHARED_SERVICE_ENV)
    if token and "WANDB_SERVICE" not in os.environ and service_listening(token):
        os.environ["WANDB_SERVICE"] = token


def service_listening(token: str) -> bool:
    """Whether a wandb-core token (`<version>-<pid>-unix-<socket path>`) names a socket that exists; a token of
    another kind (TCP) is taken as listening."""
    parts = token.split("-", 3)
    if len(parts) == 4 and parts[2] == "unix":
        return Path(parts[3]).is_socket()
    return True


def finish_logger(logger, summary: Mapping[str, Any], image_path: str | None) -> str | None:
    """Log the final summary (and the field plot) and close the run, so multiruns never share a W&B run."""
    if logger is None:
        return None
    from pytorch_lightning.loggers import WandbLogger

    # The phases done so far (all but the outputs, which include this call) as scalars a dashboard can plot.
    phases = {f"time_{k}": v for k, v in (summary.get("timings") or {}).items()}
    if isinstance(logger, WandbLogger):
        import wandb

        run = logger.experiment
        run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool, list))})
        run.summary.update(phases)
        provenance = summary.get("dataset_provenance")
        fingerprint = provenance.get("fingerprint") if isinstance(provenance, Mapping) else None
        if fingerprint:  # which bytes the run saw, as a config key so dashboards can group and filter by it
            run.summary["dataset_fingerprint"] = fingerprint
            run.config.update({"data.fingerprint": fingerprint[:16]}, allow_val_change=True)
        if image_path and os.path.exists(image_path):
            run.log({"field_plot": wandb.Image(image_path)})
        requirements = Path(run.dir) / "requirements.txt"
        requirements.write_text(installed_requirements())
        run.save(str(requirements), base_path=run.dir, policy="end")
        run_id = run.id
        run.finish()
        return run_id
    scalars = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    logger.log_metrics({**scalars, **phases})
    logger.finalize("success")
    return None
