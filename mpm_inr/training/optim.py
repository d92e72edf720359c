"""Optimiser and LR schedule from the optimizer / scheduler config groups, with separate parameter groups for
omega and latent codes. Each group's `_target_` is built by hydra.utils.instantiate (mpm_inr.config.build)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mpm_inr.config.build import partial_of


def parameter_groups(network: nn.Module, lr: float, omega_lr: float, latent_lr_mult: float) -> list[dict]:
    """omega gets learning_rate_omega_f; per-particle latents get lr * latent_lr_mult; the rest get lr."""
    groups: dict[str, list[nn.Parameter]] = {"omega": [], "latents": [], "main": []}
    for name, param in network.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "omega":
            groups["omega"].append(param)
        elif leaf.startswith("latents"):
            groups["latents"].append(param)
        else:
            groups["main"].append(param)
    rates = {"omega": omega_lr, "latents": lr * latent_lr_mult, "main": lr}
    return [{"params": p, "lr": rates[k], "name": k} for k, p in groups.items() if p]


def build_optimizer(network: nn.Module, cfg: Mapping[str, Any], latent_lr_mult: float = 1.0) -> torch.optim.Optimizer:
    """The optimizer group's `_target_` (torch.optim.Adam, ...) over our parameter groups."""
    groups = parameter_groups(network, cfg["lr"], cfg.get("omega_lr", cfg["lr"]), latent_lr_mult)
    make = partial_of(cfg, "optimizer")
    return make(groups)


def constant_schedule(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """scheduler=none: the configured learning rates throughout."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int,
                    eta_min_factor: float = 0.01) -> torch.optim.lr_scheduler.LambdaLR:
    """scheduler=cosine: per optimiser step from lr down to eta_min_factor * lr at total_steps, per group. A closed
    form (not torch's recursive CosineAnnealingLR), so a resumed or re-run schedule gives the same rates."""
    floor = float(eta_min_factor)

    def factor(step: int) -> float:
        progress = min(step, total_steps) / max(total_steps, 1)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any], total_steps: int):
    """The scheduler group's `_target_` (constant_schedule, cosine_schedule) for this optimiser and run length."""
    return partial_of(cfg, "scheduler")(optimizer, total_steps=total_steps)
