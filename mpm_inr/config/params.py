"""Every single-key rule of the training config, declared once: its kind, valid range or choices, a one-line
doc, and the range the exploration agent may search (`search`, inside the valid range).

`check_params` applies them (one-line ConfigError naming the key, the value and the rule); rules that span
several keys stay in mpm_inr.training.validate. The agent's allow-list (agent/overrides.py) derives its types,
ranges and docs from `PARAMS`, so the two can never disagree about a value our own presets use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mpm_inr.config import choices
from mpm_inr.config.fields import FIELD_NAMES
from mpm_inr.errors import ConfigError


@dataclass(frozen=True)
class Param:
    """Type and valid values of one dotted key. kind: int | float | bool | choice."""

    kind: str
    doc: str
    lo: float | None = None  #: lower bound (None: unbounded)
    hi: float | None = None  #: upper bound (None: unbounded)
    open_lo: bool = False  #: the lower bound itself is invalid (> lo, not >= lo)
    open_hi: bool = False  #: the upper bound itself is invalid
    choices: tuple[Any, ...] = ()  #: valid values of a choice; of a numeric key, named values besides the numbers
    optional: bool = False  #: null is valid (off)
    search: tuple[float, float] | None = None  #: the agent's exploration range (numeric keys it may propose)
    rule: str | None = None  #: the rule as the error states it, where the generated one says less
    label: str | None = None  #: the name the user sets (a group option: `scheduler`, not `scheduler.name`)

    def describe(self) -> str:
        """The rule in words, as the one-line error states it."""
        if self.rule:
            return self.rule
        if self.kind == "choice":
            return "valid: " + ", ".join(str(c) for c in self.choices)
        if self.kind == "bool":
            return "must be true or false"
        what = "an integer" if self.kind == "int" else "a finite number"
        if self.lo is not None and self.hi is not None:
            left, right = "(" if self.open_lo else "[", ")" if self.open_hi else "]"
            return f"must be {what} in {left}{_fmt(self.lo)}, {_fmt(self.hi)}{right}"
        if self.lo is not None:
            return f"must be {what} {'>' if self.open_lo else '>='} {_fmt(self.lo)}"
        return f"must be {what}"

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.kind == "choice":
            return value in self.choices and not isinstance(value, bool)
        if self.kind == "bool":
            return isinstance(value, bool)
        if isinstance(value, str) and value in self.choices:
            return True
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.lo is not None and (value < self.lo or (self.open_lo and value == self.lo)):
            return False
        return self.hi is None or not (value > self.hi or (self.open_hi and value == self.hi))


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


_SEED = "the seed must be a non-negative integer below 2**32"


def _positive_int(doc: str, search: tuple[float, float] | None = None) -> Param:
    return Param("int", doc, lo=0, open_lo=True, search=search)


def _positive(doc: str, search: tuple[float, float] | None = None, optional: bool = False) -> Param:
    return Param("float", doc, lo=0, open_lo=True, search=search, optional=optional)


def _choice(doc: str, values: tuple[Any, ...], label: str | None = None) -> Param:
    return Param("choice", doc, choices=values, label=label)


#: dotted key -> rule. Model keys apply to the inr_types whose conf/inr_type/*.yaml has them.
PARAMS: dict[str, Param] = {
    "seed": Param("int", "training seed (initialisation, batch sampling)", lo=0, hi=2**32 - 1, rule=_SEED,
                  search=(0, 2**31 - 1)),
    "field.name": _choice("MPM field to fit (config group field)", FIELD_NAMES, label="field"),
    "model.name": _choice("INR architecture (config group inr_type)", choices.INR_TYPES, label="inr_type"),
    "optimizer.name": _choice("optimiser (config group optimizer)", choices.OPTIMIZERS, label="optimizer"),
    "scheduler.name": _choice("LR schedule (config group scheduler)", choices.SCHEDULERS, label="scheduler"),
    "logger.name": _choice("experiment logger (config group logger)", choices.LOGGERS, label="logger"),
    "accuracy.name": _choice("the R² asked of the run (config group accuracy)", choices.ACCURACIES,
                             label="accuracy"),
    "accuracy.r2": Param("float", "the R² the accuracy option asks (null: none)", lo=0, hi=1, open_lo=True,
                         open_hi=True, optional=True),
    # --- optimizer
    "optimizer.lr": _positive("learning rate (learning_rate_NNR_f)", search=(1e-7, 1e-1)),
    "optimizer.omega_lr": _positive("learning rate of omega when model.learn_omega", search=(1e-8, 1e-3)),
    "optimizer.weight_decay": Param("float", "weight decay (AdamW: decoupled)", lo=0),
    "optimizer.eps": _positive("Adam's denominator epsilon"),
    # --- scheduler
    "scheduler.eta_min_factor": Param("float", "cosine: the final lr as a fraction of the initial one", lo=0, hi=1),
    # --- model (per inr_type)
    "model.hidden_dim": _positive_int("SIREN / MLP width (hidden_dim_nnr_f)", search=(64, 2048)),
    "model.n_layers": _positive_int("layers; SIRENs count every sine layer (n_layers_nnr_f + 1)", search=(2, 6)),
    "model.omega": _positive("SIREN frequency (omega_f)", search=(1.0, 100.0)),
    "model.learn_omega": Param("bool", "learn omega (omega_f_learning), at optimizer.omega_lr"),
    "model.head_init": _choice("SIREN head initialisation", choices.HEAD_INITS),
    "model.bias_init": _choice("SIREN sine-layer bias initialisation", choices.BIAS_INITS),
    "model.latent_dim": _positive_int("lagrangian per-particle latent size K", search=(1, 1024)),
    "model.decoder": _choice("lagrangian decoder", choices.DECODERS),
    "model.decoder_hidden": _positive_int("lagrangian mlp decoder width"),
    "model.latent_init_std": _positive("lagrangian initial code spread"),
    "model.latent_lr_mult": _positive("lagrangian learned codes' lr as a multiple of optimizer.lr"),
    "model.shared_codes": _choice("lagrangian: a shared code per group as a prior", choices.GROUPINGS),
    "model.basis_groups": _choice("lagrangian: one temporal basis per material / object", choices.GROUPINGS),
    "model.group_embedding_dim": _positive_int("lagrangian per-group embedding size the basis sees"),
    "model.time_scale": _positive("lagrangian: t multiplier before the basis (long windows)", search=(0.1, 100.0)),
    "model.codes": _choice("lagrangian: codes by the optimiser, or solved by least squares each step",
                           choices.CODES_MODES),
    "model.n_levels": _positive_int("ngp hash-grid levels", search=(1, 32)),
    "model.features_per_level": _positive_int("ngp features per level", search=(1, 8)),
    "model.log2_table_size": Param("int", "ngp log2 hash-table size", lo=8, hi=24, search=(10, 24)),
    "model.base_resolution": _positive_int("ngp coarsest resolution", search=(2, 512)),
    "model.per_level_scale": _positive("ngp resolution growth per level", search=(1.05, 4.0)),
    # --- data
    "data.seed": Param("int", "dataset (simulation) seed", lo=0, hi=2**32 - 1, rule=_SEED),
    "data.n_training_frames": Param("int", "window length, centred at n_frames//2", lo=2),
    "data.normalize": Param("bool", "z-score targets per component; false = the reference's raw MSE"),
    "data.xy_period": _positive("spatial period (nnr_f_xy_period)", search=(0.01, 100.0)),
    "data.t_period": _positive("temporal period (nnr_f_T_period)", search=(0.01, 100.0)),
    "data.generate_if_missing": Param("bool", "generate the dataset on first use"),
    # --- train
    "train.total_steps": _positive_int("optimiser steps", search=(10, 2_000_000)),
    "train.batch_size": _positive_int("frames' worth of points per step", search=(1, 32)),
    "train.sampler": _choice("points, whole frames, or every training point each step", choices.SAMPLERS),
    "train.steps_per_call": _positive_int("optimiser steps per Lightning training_step"),
    "train.grad_clip": Param("float", "gradient clipping max-norm, 0 = off", lo=0, rule="must be >= 0 (0 = off)",
                             search=(0.0, 100.0)),
    "train.loss": _choice("training loss", choices.LOSSES),
    "train.eval_every": _positive_int("steps between R² estimates"),
    "train.eval_points": _positive_int("points in the periodic R² estimate"),
    "train.target_r2": Param("float", "early stop at this R² estimate (null: off)", lo=0, hi=1, open_lo=True,
                             open_hi=True, optional=True),
    "train.compile": Param("bool", "torch.compile each step's loss"),
    "train.max_time_s": _positive("stop training after this many seconds (null: off)", optional=True),
    "train.step_frames": Param("int", "frames one full-sampler step reads: auto (all up to 1000, then 100), all, N",
                               lo=0, open_lo=True, choices=("auto", "all"), search=(10, 2000),
                               rule="must be auto, all or an integer > 0"),
    # --- outputs
    "outputs.save_predictions": Param("bool", "write predictions.npy"),
    "outputs.plot": Param("bool", "write field.png"),
    "outputs.checkpoint": Param("bool", "write checkpoints/last.ckpt"),
    "outputs.baselines": Param("bool", "SVD, SZ3 and ZFP on the same window, in bytes"),
    "outputs.svd": Param("bool", "the run's own SVD baseline (false: skip it on very long windows)"),
    "outputs.codec": Param("bool", "write the model as one file of bytes (mpm_inr.codec)"),
    "outputs.beside_fit": Param("choice", "plot and the window's baseline tables beside the fit: auto (a core to "
                                "spare), always, never", choices=("auto", "always", "never")),
}


def _select(cfg: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def check_value(key: str, value: Any) -> None:
    """ConfigError (one line) if `value` breaks the declared rule of `key`."""
    param = PARAMS[key]
    if not param.accepts(value):
        raise ConfigError(f"{param.label or key}={value} is out of range: {param.describe()}")


def check_params(cfg: Mapping[str, Any]) -> None:
    """Every declared key present in `cfg` against its rule, in declaration order."""
    for key in PARAMS:
        present, value = _select(cfg, key)
        if present:
            check_value(key, value)
