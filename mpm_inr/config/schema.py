"""Dataclass schemas of the training config, one per config group (per option where the options differ), each
field with a one-line doc, registered in Hydra's ConfigStore under `schema/...`.

They validate a composed config (`check_types`) rather than serve as its base: conf/*.yaml stay the one place
for default values (every schema field is MISSING), composing stays as fast as before, and a study's exported
code dir composes without this package. Values are checked where they resolve: interpolations (the presets'
`${frames_scaled:...}`) are left to `params.check_params`, which reads them resolved.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mpm_inr.errors import ConfigError

# Optional[...] rather than `X | None`: OmegaConf reads these annotations at runtime (Python 3.11 typing).
# ruff: noqa: UP045


@dataclass
class FieldConfig:
    name: str = MISSING  #: the field (mpm_inr.config.fields.FIELDS)
    description: str = MISSING  #: one line for plots and W&B
    components: list[str] = MISSING  #: component names; their count is C
    units: str = MISSING  #: units of the values


@dataclass
class DataConfig:
    root: str = MISSING  #: datasets live in <root>/<scenario>_seed<k>/
    seed: int = MISSING  #: dataset (simulation) seed
    n_training_frames: int = MISSING  #: window length, centred at n_frames//2
    holdout_every: int = MISSING  #: k > 0: every k-th frame of the window is held out
    normalize: bool = MISSING  #: z-score targets per component
    xy_period: float = MISSING  #: divides the normalised x, y
    t_period: float = MISSING  #: divides the normalised t
    generate_if_missing: bool = MISSING  #: generate the dataset on first use


@dataclass
class TrainLoopConfig:
    total_steps: int = MISSING  #: optimiser steps
    batch_size: int = MISSING  #: frames' worth of points per step
    sampler: str = MISSING  #: points | frames | full (choices.SAMPLERS)
    steps_per_call: int = MISSING  #: optimiser steps per Lightning training_step
    grad_clip: float = MISSING  #: gradient clipping max-norm, 0 = off
    loss: str = MISSING  #: mse | huber
    eval_every: int = MISSING  #: steps between R² estimates
    eval_points: int = MISSING  #: points in the periodic R² estimate
    target_r2: Optional[float] = MISSING  #: early stop at this R² estimate
    compile: bool = MISSING  #: torch.compile each step's loss
    tf32: Any = MISSING  #: auto | true | false: TF32 matmuls on CUDA
    max_time_s: Optional[float] = MISSING  #: stop training after this many seconds
    step_frames: Any = MISSING  #: auto | all | N: frames one full-sampler step reads (long windows sample)


@dataclass
class OutputsConfig:
    save_predictions: bool = MISSING  #: write predictions.npy
    plot: bool = MISSING  #: write field.png
    checkpoint: bool = MISSING  #: write checkpoints/last.ckpt
    baselines: bool = MISSING  #: SVD, SZ3, ZFP on the same window, in bytes
    svd: bool = MISSING  #: the run's own SVD baseline (its T x T eigenproblem dominates 10 000 frames)
    codec: bool = MISSING  #: write the model as one file of bytes
    beside_fit: str = MISSING  #: auto | always | never: plot and cold baselines in processes beside the fit


@dataclass
class CodecConfig:
    target_r2: Optional[float] = MISSING  #: decoded R² to reach; null keeps the model's accuracy
    max_error_growth: float = MISSING  #: the file's 1 - R² may exceed the model's by this fraction
    weight_bits: list[int] = MISSING  #: candidate network weight precisions
    basis: str = MISSING  #: a bilinear basis as its network, a Chebyshev series in t, or the smaller (auto)
    components: str = MISSING  #: also try a file that codes each particle's components apart (both, shared, auto)
    file: str = MISSING  #: file name in the run dir


@dataclass
class AccuracyConfig:
    name: str = MISSING  #: the option (choices.ACCURACIES)
    r2: Optional[float] = MISSING  #: the R² asked (null: none asked)


@dataclass
class StudyConfig:
    name: Optional[str] = MISSING  #: the agent's study
    node_id: Optional[int] = MISSING  #: node of the study tree
    parent_id: Optional[int] = MISSING  #: its parent
    block: Optional[int] = MISSING  #: block number
    iteration: Optional[int] = MISSING  #: iteration in the block
    strategy: Optional[str] = MISSING  #: the policy's strategy name


# --- model, one per inr_type ------------------------------------------------------------------------------
@dataclass
class SirenModel:
    name: str = MISSING  #: the inr_type
    hidden_dim: int = MISSING  #: width
    n_layers: int = MISSING  #: sine layers (n_layers_nnr_f + 1)
    omega: float = MISSING  #: frequency omega_f
    learn_omega: bool = MISSING  #: learn omega at optimizer.omega_lr


@dataclass
class PointSirenModel(SirenModel):
    head_init: str = MISSING  #: reference | hidden
    bias_init: str = MISSING  #: fan_in | weight_bound


@dataclass
class NgpModel:
    name: str = MISSING  #: ngp
    n_levels: int = MISSING  #: hash-grid levels
    features_per_level: int = MISSING  #: features per level
    log2_table_size: int = MISSING  #: log2 hash-table size
    base_resolution: int = MISSING  #: coarsest resolution
    per_level_scale: float = MISSING  #: resolution growth per level
    hidden_dim: int = MISSING  #: MLP width
    n_layers: int = MISSING  #: MLP layers


@dataclass
class LagrangianModel(SirenModel):
    latent_dim: int = MISSING  #: per-particle code size K
    decoder: str = MISSING  #: bilinear | mlp
    decoder_hidden: int = MISSING  #: mlp decoder width
    latent_init_std: float = MISSING  #: initial code spread
    latent_lr_mult: float = MISSING  #: learned codes' lr multiple
    shared_codes: str = MISSING  #: none | material | object
    basis_groups: str = MISSING  #: none | material | object
    group_embedding_dim: int = MISSING  #: per-group embedding size
    time_scale: float = MISSING  #: t multiplier before the basis
    codes: str = MISSING  #: learned | solved


MODEL_SCHEMAS: dict[str, type] = {"siren_t": SirenModel, "siren_id": PointSirenModel, "siren_txy": PointSirenModel,
                                  "ngp": NgpModel, "lagrangian": LagrangianModel}


# --- groups built by hydra.utils.instantiate (mpm_inr.config.build) ---------------------------------------
@dataclass
class OptimizerConfig:
    _target_: str = MISSING  #: the torch.optim class
    _partial_: bool = MISSING  #: true: called later with the parameter groups
    name: str = MISSING  #: the option (choices.OPTIMIZERS); ours, not passed to torch
    lr: float = MISSING  #: learning rate of the network (learning_rate_NNR_f)
    omega_lr: float = MISSING  #: learning rate of omega; ours: its own parameter group
    weight_decay: float = MISSING  #: weight decay
    betas: list[float] = MISSING  #: Adam's betas
    eps: float = MISSING  #: Adam's epsilon


@dataclass
class ConstantScheduler:
    _target_: str = MISSING  #: mpm_inr.training.optim.constant_schedule
    _partial_: bool = MISSING  #: true: called with the optimiser and total_steps
    name: str = MISSING  #: none


@dataclass
class CosineScheduler(ConstantScheduler):
    eta_min_factor: float = MISSING  #: final lr as a fraction of the initial one


SCHEDULER_SCHEMAS: dict[str, type] = {"none": ConstantScheduler, "cosine": CosineScheduler}


@dataclass
class TrainerConfig:
    _target_: str = MISSING  #: pytorch_lightning.Trainer
    accelerator: str = MISSING  #: auto | cpu | gpu (auto: cuda when available)
    devices: Any = MISSING  #: devices per run (one: the engine keeps the data on one device)
    precision: Any = MISSING  #: Lightning precision; 32-true: the engine's own TF32 rule applies
    max_epochs: int = MISSING  #: one epoch = the whole run (the data module yields total_steps / steps_per_call)
    enable_checkpointing: bool = MISSING  #: Lightning's callback; ours writes checkpoints/last.ckpt
    enable_progress_bar: bool = MISSING  #: Lightning's bar; ours is a StepProgress callback
    enable_model_summary: bool = MISSING  #: Lightning's table at fit start
    num_sanity_val_steps: int = MISSING  #: no validation loop
    log_every_n_steps: int = MISSING  #: every training_step call is logged
    cpu_threads: Any = MISSING  #: ours: auto | an integer | null (mpm_inr.threads)


@dataclass
class NoLogger:
    name: str = MISSING  #: none


@dataclass
class CsvLoggerConfig(NoLogger):
    _target_: str = MISSING  #: pytorch_lightning.loggers.CSVLogger
    _partial_: bool = MISSING  #: true: called with the run dir
    save_dir: str = MISSING  #: replaced by the run dir
    version: str = MISSING  #: "" : files straight in <save_dir>/<name>


@dataclass
class WandbLoggerConfig(NoLogger):
    _target_: str = MISSING  #: mpm_inr.training.loggers.wandb_logger
    _partial_: bool = MISSING  #: true: called with the run dir, name and flat config
    project: str = MISSING  #: W&B project
    mode: str = MISSING  #: offline | online | disabled (WANDB_MODE wins)
    group: Optional[str] = MISSING  #: W&B group (the study)
    job_type: Optional[str] = MISSING  #: W&B job type (the field)
    tags: list[str] = MISSING  #: W&B tags
    run_name: Optional[str] = MISSING  #: null: <field>_<inr_type>
    save_dir: str = MISSING  #: replaced by the run dir


LOGGER_SCHEMAS: dict[str, type] = {"none": NoLogger, "csv": CsvLoggerConfig, "wandb": WandbLoggerConfig}


@dataclass
class TrainConfig:
    seed: int = MISSING  #: training seed
    field: FieldConfig = MISSING  #: config group field
    data: DataConfig = MISSING  #: the window
    train: TrainLoopConfig = MISSING  #: the optimisation loop
    outputs: OutputsConfig = MISSING  #: what a run writes
    codec: CodecConfig = MISSING  #: how outputs.codec encodes
    accuracy: AccuracyConfig = MISSING  #: config group accuracy: the R² asked of the run
    study: StudyConfig = MISSING  #: set by the agent
    optimizer: OptimizerConfig = MISSING  #: config group optimizer
    trainer: TrainerConfig = MISSING  #: config group trainer
    scenario: Any = MISSING  #: config group scenario (checked by mpm_inr.sim)
    model: Any = MISSING  #: config group inr_type (MODEL_SCHEMAS)
    scheduler: Any = MISSING  #: config group scheduler (SCHEDULER_SCHEMAS)
    logger: Any = MISSING  #: config group logger (LOGGER_SCHEMAS)
    debug: Any = None  #: fault-injection hooks tests add (+debug.inject_nonfinite_step)


def register() -> None:
    """Store every schema in Hydra's ConfigStore (schema/train, schema/model/<inr_type>, ...). Idempotent."""
    cs = ConfigStore.instance()
    cs.store(group="schema", name="train", node=TrainConfig)
    for group, table in (("model", MODEL_SCHEMAS), ("scheduler", SCHEDULER_SCHEMAS), ("logger", LOGGER_SCHEMAS)):
        for name, node in table.items():
            cs.store(group=f"schema/{group}", name=name, node=node)


register()

#: the config-group keys whose schema depends on the option chosen
_PER_OPTION: dict[str, dict[str, type]] = {"model": MODEL_SCHEMAS, "scheduler": SCHEDULER_SCHEMAS,
                                           "logger": LOGGER_SCHEMAS}


def check_types(cfg: Mapping[str, Any] | DictConfig) -> None:
    """ConfigError (one line) for a key the schema does not have, a missing key, or a value of the wrong type."""
    raw = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else dict(cfg)
    raw.pop("hydra", None)
    schema = OmegaConf.structured(TrainConfig)
    for key, table in _PER_OPTION.items():
        name = (raw.get(key) or {}).get("name")
        if name in table:  # an unknown option: params.check_params names the valid ones
            schema[key] = OmegaConf.structured(table[name])
    try:
        merged = OmegaConf.merge(schema, raw)
    except OmegaConfBaseException as err:
        raise ConfigError(_one_line(err)) from None
    missing = next(_missing_keys(merged), None)
    if missing is not None:
        raise ConfigError(f"{missing} is missing from the config; conf/ must set it")


def _missing_keys(node: DictConfig, prefix: str = "") -> Iterator[str]:
    """Keys still `???` after the merge, found without resolving anything (OmegaConf.missing_keys resolves
    interpolations, and ${hydra:...} only resolves inside a Hydra run)."""
    for key in node:
        child = node._get_node(key)
        if child._is_missing():
            yield f"{prefix}{key}"
        elif isinstance(child, DictConfig) and not child._is_interpolation() and not child._is_none():
            yield from _missing_keys(child, f"{prefix}{key}.")


def _one_line(err: OmegaConfBaseException) -> str:
    """OmegaConf's message without its full_key / object_type lines, naming the user's dotted key."""
    key = getattr(err, "full_key", None) or getattr(err, "key", None)
    msg = " ".join(str(err).split("full_key:")[0].split())
    if " not in " in msg:  # "Key 'x' not in 'Y'"
        return f"{key} is not a key of this config ({msg}); see the keys with --cfg job"
    return f"{key} has the wrong type: {msg}"
