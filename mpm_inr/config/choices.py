"""Every closed set of option names in the training config, declared once.

Config-group choices must equal the files in conf/<group>/ (tests/test_configs.py checks it); value choices are
what `params.PARAMS` accepts for a key, what the models check, and what the agent may propose.
"""

from __future__ import annotations

# --- config groups (conf/<group>/<name>.yaml) --------------------------------------------------------------
#: conf/inr_type/ (mpm_inr.models.registry.INR_TYPES holds one network per name)
INR_TYPES: tuple[str, ...] = ("siren_t", "siren_txy", "siren_id", "ngp", "lagrangian")
#: conf/optimizer/ (each a torch.optim class as `_target_`)
OPTIMIZERS: tuple[str, ...] = ("adam", "adamw")
#: conf/scheduler/ (per-optimiser-step LR schedules of mpm_inr.training.optim)
SCHEDULERS: tuple[str, ...] = ("none", "cosine")
#: conf/logger/
LOGGERS: tuple[str, ...] = ("wandb", "csv", "none")
#: conf/trainer/ (pl.Trainer with the accelerator each name says)
TRAINERS: tuple[str, ...] = ("auto", "cpu", "gpu")
#: conf/accuracy/ (none: the presets' sizing, the codec keeps the model's accuracy; r2_<digits>: R² 0.<digits>
#: asked of the codec file and of the training, via conf/accuracy_preset/ where a preset needs more for it)
ACCURACIES: tuple[str, ...] = ("none", "r2_0995", "r2_0999")

# --- values of single keys ---------------------------------------------------------------------------------
#: train.sampler: uniform points, whole frames (the reference's recipe), or every training point each step
SAMPLERS: tuple[str, ...] = ("points", "frames", "full")
#: train.loss
LOSSES: tuple[str, ...] = ("mse", "huber")
#: model.decoder (lagrangian): <z_i, g(t)>, or an MLP on [z_i, g(t)]
DECODERS: tuple[str, ...] = ("bilinear", "mlp")
#: model.shared_codes and model.basis_groups (lagrangian): which particles share a code prior / a basis
GROUPINGS: tuple[str, ...] = ("none", "material", "object")
#: model.codes (lagrangian): trained by the optimiser, or solved by least squares every step
CODES_MODES: tuple[str, ...] = ("learned", "solved")
#: model.head_init (siren_txy, siren_id)
HEAD_INITS: tuple[str, ...] = ("hidden", "reference")
#: model.bias_init (siren_txy, siren_id)
BIAS_INITS: tuple[str, ...] = ("weight_bound", "fan_in")
