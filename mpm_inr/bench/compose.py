"""Compose the training config from conf/ without a Hydra run (for benchmarks, notebooks and tests), resolved
into the plain dict `run_training` takes."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf, open_dict

from mpm_inr.config.compose import CONF_DIR, compose_train

__all__ = ["CONF_DIR", "compose_train_config"]


def compose_train_config(overrides: list[str], run_dir: str | None = None) -> dict[str, Any]:
    cfg = compose_train(overrides)
    with open_dict(cfg):
        # ${hydra:...} only resolves inside a Hydra run; point the logger at the given directory instead.
        if "save_dir" in cfg.logger:
            cfg.logger.save_dir = run_dir or "."
        cfg.pop("hydra", None)
    return OmegaConf.to_container(cfg, resolve=True)
