"""Compose the trainer's config (conf/train.yaml of a code dir) without running it.

The agent never imports the trainer, but it reads its config: to know a parent's current value before mutating
it (lr x2 needs the lr), to check that a proposal composes (Hydra would reject it inside the job otherwise), and
to know which logger keys exist (group/tags are passed only to a logger that has them).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mpm_inr.config.compose import compose_train as _compose_train_config
from mpm_inr.confres import register as _register_conf_resolvers

_register_conf_resolvers()  # conf/ uses them; they belong to the config contract, not to the trainer


class ComposeError(ValueError):
    """The overrides do not compose into a valid trainer config (message is one line)."""


@lru_cache(maxsize=512)
def _compose(conf_dir: str, overrides: tuple[str, ...]) -> DictConfig:
    try:
        return _compose_train_config(overrides, conf_dir)
    except Exception as e:  # noqa: BLE001 - hydra raises several unrelated types for bad overrides
        raise ComposeError(" ".join(str(e).split())[:300]) from None


def compose_train(code_dir: str | Path, overrides: Sequence[str]) -> DictConfig:
    """The trainer's composed config (interpolations unresolved) for these overrides."""
    conf_dir = str((Path(code_dir) / "conf").resolve())
    if not (Path(conf_dir) / "train.yaml").exists():
        raise ComposeError(f"{conf_dir}/train.yaml not found")
    return _compose(conf_dir, tuple(overrides))


def value(cfg: DictConfig, key: str) -> Any:
    """A resolved value by dotted key; config groups (field, inr_type, optimizer, scheduler) give their name."""
    groups = {"field": "field.name", "inr_type": "model.name", "optimizer": "optimizer.name",
              "scheduler": "scheduler.name"}
    try:
        v = OmegaConf.select(cfg, groups.get(key, key), throw_on_missing=False)
    except Exception:  # noqa: BLE001 - a key that does not select or resolve has no value
        return None
    return OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) else v


def has_key(cfg: DictConfig, key: str) -> bool:
    node = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return False
        node = node._get_node(part)  # no resolution
    return True
