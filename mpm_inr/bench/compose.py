"""Compose the training config from conf/ without a Hydra run (for benchmarks, notebooks and tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose_train_config(overrides: list[str], run_dir: str | None = None) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        # ${hydra:...} only resolves inside a Hydra run; point the logger at the given directory instead.
        if "save_dir" in cfg.logger:
            cfg.logger.save_dir = run_dir or "."
        cfg.pop("hydra", None)
    return OmegaConf.to_container(cfg, resolve=True)
