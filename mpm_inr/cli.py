"""Shared entry-point behaviour: user errors as one line, divergence as a non-zero exit for single runs only."""

from __future__ import annotations

import sys
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from mpm_inr.errors import UserError


def is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_hydra_task(cfg: DictConfig, task: Callable[..., dict[str, Any]]) -> float:
    """Run a training task inside Hydra; a failing job of a --multirun never stops its siblings."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    plain = OmegaConf.to_container(cfg, resolve=True)
    multirun = is_multirun()
    try:
        metrics = task(plain, hc.runtime.output_dir, list(hc.overrides.task))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        if multirun:
            return float("nan")
        sys.exit(err.exit_code)
    except Exception as err:  # recorded in metrics.json + traceback.txt by the task
        if multirun:
            print(f"error: job failed: {type(err).__name__}: {err}", file=sys.stderr)
            return float("nan")
        raise
    if metrics.get("status") != "ok":
        print(f"error: run {metrics.get('status')}: {metrics.get('error')}", file=sys.stderr)
        if not multirun:
            sys.exit(1)
        return float("nan")
    return float(metrics["final_r2"])
