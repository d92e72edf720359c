"""Checks on a training config, before any data is generated or any step is taken.

Single-key rules (types, ranges, choices) are declared once in mpm_inr.config (`params.PARAMS`, the schemas);
what stays here are the rules that span several keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mpm_inr.config.params import check_params
from mpm_inr.config.schema import check_types
from mpm_inr.errors import ConfigError
from mpm_inr.models.registry import INR_TYPES
from mpm_inr.threads import AUTO, check_threads


def _check(cond: bool, key: str, value: Any, rule: str) -> None:
    if not cond:
        raise ConfigError(f"{key}={value} is out of range: {rule}")


def validate_train_config(cfg: Mapping[str, Any]) -> None:
    """Raise ConfigError (one line) for anything that would make the run meaningless or crash later."""
    check_params(cfg)
    check_types(cfg)
    model, data, train = cfg["model"], cfg["data"], cfg["train"]
    if model.get("codes") == "solved":
        _check(model.get("decoder", "bilinear") == "bilinear" and model.get("shared_codes", "none") == "none",
               "model.codes", "solved",
               "needs model.decoder=bilinear and model.shared_codes=none; otherwise set model.codes=learned")
        _check(train["sampler"] == "full" and train["loss"] == "mse", "model.codes", "solved",
               "needs train.sampler=full and train.loss=mse (the codes are solved from every training point); "
               "otherwise set model.codes=learned")
    ntf = data["n_training_frames"]
    he = data["holdout_every"]
    _check(isinstance(he, int) and (he == 0 or 2 <= he <= ntf // 2), "data.holdout_every", he,
           "must be 0 (off) or an integer in [2, n_training_frames/2]")
    _check(train["batch_size"] <= ntf, "train.batch_size", train["batch_size"],
           f"frames per step cannot exceed data.n_training_frames={ntf}")
    if train["sampler"] == "full" and not INR_TYPES[model["name"]].time_grid:
        raise ConfigError(f"train.sampler=full needs a time-only inr_type (lagrangian, siren_t), not {model['name']}; "
                          f"use train.sampler=points")
    check_threads(cfg["trainer"].get("cpu_threads", AUTO), "trainer.cpu_threads", allow_auto=True)


def validate_against_dataset(cfg: Mapping[str, Any], n_frames: int) -> None:
    ntf = cfg["data"]["n_training_frames"]
    if ntf > n_frames:
        raise ConfigError(f"data.n_training_frames={ntf} exceeds the dataset's {n_frames} frames; use at most {n_frames}")
