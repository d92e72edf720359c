"""Range checks on a training config, before any data is generated or any step is taken."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mpm_inr.errors import ConfigError
from mpm_inr.models.registry import INR_TYPES
from mpm_inr.threads import AUTO, check_threads

_POSITIVE_MODEL_INTS = ("hidden_dim", "n_layers", "latent_dim", "decoder_hidden", "n_levels", "features_per_level",
                        "base_resolution", "group_embedding_dim")


def _check(cond: bool, key: str, value: Any, rule: str) -> None:
    if not cond:
        raise ConfigError(f"{key}={value} is out of range: {rule}")


def _finite_positive(key: str, value: Any) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    _check(ok, key, value, "must be a finite number > 0")


def validate_train_config(cfg: Mapping[str, Any]) -> None:
    """Raise ConfigError (one line) for anything that would make the run meaningless or crash later."""
    model, opt, data, train = cfg["model"], cfg["optimizer"], cfg["data"], cfg["train"]
    for key, seed in (("seed", cfg.get("seed", 0)), ("data.seed", data.get("seed", 0))):
        if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**32):
            raise ConfigError(f"{key}={seed}: seed must be a non-negative integer below 2**32")
    if model["name"] not in INR_TYPES:
        raise ConfigError(f"unknown inr_type {model['name']!r}; valid: {', '.join(sorted(INR_TYPES))}")
    _finite_positive("optimizer.lr", opt["lr"])
    _finite_positive("optimizer.omega_lr", opt.get("omega_lr", opt["lr"]))
    _check(opt.get("weight_decay", 0) >= 0, "optimizer.weight_decay", opt.get("weight_decay"), "must be >= 0")
    for key in _POSITIVE_MODEL_INTS:
        if key in model:
            v = model[key]
            _check(isinstance(v, int) and not isinstance(v, bool) and v > 0, f"model.{key}", v, "must be an integer > 0")
    for key in ("omega", "per_level_scale", "latent_init_std", "latent_lr_mult", "time_scale"):
        if key in model:
            _finite_positive(f"model.{key}", model[key])
    if "log2_table_size" in model:
        _check(isinstance(model["log2_table_size"], int) and 8 <= model["log2_table_size"] <= 24,
               "model.log2_table_size", model["log2_table_size"], "must be an integer in [8, 24]")
    if "decoder" in model:
        _check(model["decoder"] in ("bilinear", "mlp"), "model.decoder", model["decoder"], "valid: bilinear, mlp")
    for key in ("shared_codes", "basis_groups"):
        if key in model:
            _check(model[key] in ("none", "material", "object"), f"model.{key}", model[key],
                   "valid: none, material, object")
    if "codes" in model:
        _check(model["codes"] in ("learned", "solved"), "model.codes", model["codes"], "valid: learned, solved")
        if model["codes"] == "solved":
            _check(model.get("decoder", "bilinear") == "bilinear" and model.get("shared_codes", "none") == "none",
                   "model.codes", "solved",
                   "needs model.decoder=bilinear and model.shared_codes=none; otherwise set model.codes=learned")
            _check(train["sampler"] == "full" and train["loss"] == "mse", "model.codes", "solved",
                   "needs train.sampler=full and train.loss=mse (the codes are solved from every training point); "
                   "otherwise set model.codes=learned")
    _finite_positive("data.xy_period", data["xy_period"])
    _finite_positive("data.t_period", data["t_period"])
    ntf = data["n_training_frames"]
    _check(isinstance(ntf, int) and ntf >= 2, "data.n_training_frames", ntf, "must be an integer >= 2")
    he = data["holdout_every"]
    _check(isinstance(he, int) and (he == 0 or 2 <= he <= ntf // 2), "data.holdout_every", he,
           "must be 0 (off) or an integer in [2, n_training_frames/2]")
    for key in ("total_steps", "batch_size", "steps_per_call", "eval_every", "eval_points"):
        v = train[key]
        _check(isinstance(v, int) and not isinstance(v, bool) and v > 0, f"train.{key}", v, "must be an integer > 0")
    _check(train["batch_size"] <= ntf, "train.batch_size", train["batch_size"],
           f"frames per step cannot exceed data.n_training_frames={ntf}")
    _check(train["grad_clip"] >= 0, "train.grad_clip", train["grad_clip"], "must be >= 0 (0 = off)")
    _check(train["loss"] in ("mse", "huber"), "train.loss", train["loss"], "valid: mse, huber")
    _check(train["sampler"] in ("points", "frames", "full"), "train.sampler", train["sampler"],
           "valid: points, frames, full")
    if train["sampler"] == "full" and not INR_TYPES[model["name"]].time_grid:
        raise ConfigError(f"train.sampler=full needs a time-only inr_type (lagrangian, siren_t), not {model['name']}; "
                          f"use train.sampler=points")
    sf = train.get("step_frames", "auto")
    _check(sf in ("auto", "all") or (isinstance(sf, int) and not isinstance(sf, bool) and sf > 0),
           "train.step_frames", sf, "must be auto, all or an integer > 0")
    if train.get("target_r2") is not None:
        _check(0 < train["target_r2"] < 1, "train.target_r2", train["target_r2"], "must be in (0, 1)")
    if train.get("max_time_s") is not None:
        _finite_positive("train.max_time_s", train["max_time_s"])
    _check(cfg["scheduler"]["name"] in ("none", "cosine"), "scheduler", cfg["scheduler"]["name"], "valid: none, cosine")
    _check(opt["name"] in ("adam", "adamw"), "optimizer", opt["name"], "valid: adam, adamw")
    check_threads((cfg.get("trainer") or {}).get("cpu_threads", AUTO), "trainer.cpu_threads", allow_auto=True)


def validate_against_dataset(cfg: Mapping[str, Any], n_frames: int) -> None:
    ntf = cfg["data"]["n_training_frames"]
    if ntf > n_frames:
        raise ConfigError(f"data.n_training_frames={ntf} exceeds the dataset's {n_frames} frames; use at most {n_frames}")
