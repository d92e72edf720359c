"""The codec at the end of a training run (`outputs.codec=true`): run.py validates up front, then encodes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from mpm_inr.codec.encode import (
    SERIES_NEEDS_BILINEAR,
    CodecSettings,
    encode_model,
    refuse_positions,
)
from mpm_inr.data.window import FieldWindow
from mpm_inr.errors import ConfigError

DEFAULT_FILE = "model.mpmc"


def validate_codec_config(cfg: Mapping[str, Any]) -> None:
    """One ConfigError line, before any training, if `outputs.codec=true` cannot work with this config."""
    if not (cfg.get("outputs") or {}).get("codec", False):
        return
    settings = CodecSettings.from_config(cfg.get("codec"))
    refuse_positions(str(cfg["model"]["name"]))
    if settings.basis == "chebyshev" and cfg["model"].get("decoder") != "bilinear":
        raise ConfigError(SERIES_NEEDS_BILINEAR)


def encode_after_training(cfg: Mapping[str, Any], network: nn.Module, window: FieldWindow,
                          run_dir: str | Path) -> dict[str, Any]:
    """Write run_dir/<codec.file> from the trained network; returns metrics.json's `codec` entry (bytes, ratio
    from the file's size, R² recomputed from the decoded file, encode and decode seconds)."""
    codec = dict(cfg.get("codec") or {})
    path = Path(run_dir) / str(codec.get("file") or DEFAULT_FILE)
    return encode_model(network, cfg["model"], window, cfg["data"]["t_period"], path,
                        CodecSettings.from_config(codec))
