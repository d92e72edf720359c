"""Compose conf/ outside a Hydra run: the one composer of the training config, used by train.py's pre-check
(mpm_inr.cli), benchmarks and tests (mpm_inr.bench.compose) and the agent (agent/trainconf.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from mpm_inr.confres import register as register_resolvers

register_resolvers()  # on import: Hydra's own compose in train.py (@hydra.main) needs them too

#: this repository's conf/
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose(config_name: str, overrides: Sequence[str], conf_dir: str | Path | None = None,
            hydra_node: bool = False) -> DictConfig:
    """`config_name` of `conf_dir` (default: this repo's conf/) with `overrides`, interpolations unresolved.

    Hydra's global state is cleared before and after, so it works beside (and inside) any other composition.
    Hydra's own exceptions propagate: each caller words them for its users."""
    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(conf_dir or CONF_DIR).resolve()), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=hydra_node)
    finally:
        GlobalHydra.instance().clear()


def compose_train(overrides: Sequence[str], conf_dir: str | Path | None = None,
                  hydra_node: bool = False) -> DictConfig:
    """The training config (conf/train.yaml) for these overrides."""
    return compose("train", overrides, conf_dir, hydra_node)
