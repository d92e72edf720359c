"""Optimiser and LR schedule from plain settings, with separate groups for omega and latent codes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


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
    groups = parameter_groups(network, cfg["lr"], cfg.get("omega_lr", cfg["lr"]), latent_lr_mult)
    kwargs = {"betas": tuple(cfg.get("betas", (0.9, 0.999))), "eps": cfg.get("eps", 1e-8),
              "weight_decay": cfg.get("weight_decay", 0.0)}
    name = cfg["name"]
    if name == "adam":
        return torch.optim.Adam(groups, **kwargs)
    if name == "adamw":
        return torch.optim.AdamW(groups, **kwargs)
    raise ValueError(f"unknown optimizer {name!r}; valid: adam, adamw")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any], total_steps: int):
    """Per-optimiser-step schedule. cosine: CosineAnnealingLR(T_max=total_steps, eta_min=factor * lr) per group."""
    name = cfg["name"]
    if name == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if name == "cosine":
        floor = float(cfg.get("eta_min_factor", 0.01))

        def factor(step: int) -> float:
            progress = min(step, total_steps) / max(total_steps, 1)
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    raise ValueError(f"unknown scheduler {name!r}; valid: none, cosine")
