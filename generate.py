"""Generate an MPM dataset: `python generate.py scenario=discs_3types seed=0 [device=cuda] [root=data]`."""

import sys
from collections.abc import Mapping
from typing import Any

import hydra
from omegaconf import DictConfig

from mpm_inr.cli import exit_on_interrupt, run_command
from mpm_inr.errors import UserError

CONFIG_PATH, CONFIG_NAME = "conf", "generate"


@hydra.main(config_path=CONFIG_PATH, config_name=CONFIG_NAME, version_base="1.3")
def main(cfg: DictConfig) -> None:
    from mpm_inr.data.generate import generate_from_config

    try:
        generate_from_config(cfg)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)


def validate(cfg: Mapping[str, Any]) -> None:
    """The generator's range checks on the composed config, before Hydra makes a run dir."""
    from mpm_inr.data.generate import validate_generate_config

    validate_generate_config(cfg)


if __name__ == "__main__":
    with exit_on_interrupt("no dataset was written (a partly written one is removed); run the command again"):
        run_command(main, CONFIG_PATH, CONFIG_NAME, validate=validate)
