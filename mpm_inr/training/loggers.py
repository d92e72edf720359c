"""Lightning loggers from the `logger` config group: wandb (offline by default), csv, none."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from mpm_inr.errors import ConfigError


def build_logger(cfg: Mapping[str, Any], run_dir: str, run_name: str, flat_config: dict[str, Any]):
    name = cfg["name"]
    if name == "none":
        return None
    if name == "csv":
        from pytorch_lightning.loggers import CSVLogger

        return CSVLogger(save_dir=run_dir, name="csv", version="")
    if name == "wandb":
        mode = os.environ.get("WANDB_MODE") or cfg.get("mode", "offline")
        if mode == "disabled":
            return None
        from pytorch_lightning.loggers import WandbLogger

        tags = [str(t) for t in (cfg.get("tags") or [])]
        logger = WandbLogger(project=cfg.get("project", "mpm-inr"), name=cfg.get("run_name") or run_name,
                             group=cfg.get("group"), job_type=cfg.get("job_type"), tags=tags, save_dir=run_dir,
                             mode=mode, config=flat_config, reinit="finish_previous")
        # Lightning 2.6 always passes anonymous=None, which wandb >= 0.2x answers with a deprecation line on every
        # run ("The anonymous setting has no effect"); the setting is unset when omitted, so omit it
        if logger._wandb_init.get("anonymous") is None:
            logger._wandb_init.pop("anonymous", None)
        return logger
    raise ConfigError(f"unknown logger {name!r}; valid: wandb, csv, none")


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
        run_id = run.id
        run.finish()
        return run_id
    scalars = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    logger.log_metrics({**scalars, **phases})
    logger.finalize("success")
    return None
