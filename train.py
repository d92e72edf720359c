"""Train one INR on one MPM field: `python train.py field=Jp inr_type=siren_txy optimizer=adam ...`."""

from __future__ import annotations

import sys

from mpm_inr.warm.client import hand_off

if __name__ == "__main__":  # before Hydra is imported (0.1 s): a warm server (python -m mpm_inr.warm start) that
    handed = hand_off(sys.argv[1:], __file__)  # listens runs the whole command in a fork of itself
    if handed is not None:
        sys.exit(handed)

# the imports a run needs come after the hand-off, which does not need them
from collections.abc import Mapping
from typing import Any

import hydra
from omegaconf import DictConfig

from mpm_inr.cli import exit_on_interrupt, run_command, run_hydra_task

CONFIG_PATH, CONFIG_NAME = "conf", "train"


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> float | None:
    """Returns final_r2 so Hydra sweepers can optimise it (None for a failed job of a sweep: see run_hydra_task)."""
    from mpm_inr.training.run import run_training

    return run_hydra_task(cfg, run_training)


def validate(cfg: Mapping[str, Any]) -> None:
    """The run's range checks, imported here so a typo in a group option is reported before torch is loaded."""
    from mpm_inr.training.validate import validate_train_config

    validate_train_config(cfg)


if __name__ == "__main__":
    with exit_on_interrupt("this run has no metrics.json, and a dataset it was generating was not kept"):
        sys.exit(run_command(main, CONFIG_PATH, CONFIG_NAME, validate=validate))
