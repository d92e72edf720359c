"""Build the optimizer, scheduler, logger and trainer groups with hydra.utils.instantiate.

Each group's YAML names its `_target_` (torch.optim.Adam, pytorch_lightning.Trainer, ...) beside a few keys of
our own that the target does not take (`OWN_KEYS`): those are read by our code and left out of the call. The
result is always a partial, so the caller passes what only exists at run time (parameter groups, the run dir,
callbacks) without Hydra copying those objects into a config.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate

#: keys of a group that are ours, not arguments of its `_target_`
OWN_KEYS: dict[str, tuple[str, ...]] = {
    "optimizer": ("name", "omega_lr"),  # the option's name; omega's own parameter group (optim.parameter_groups)
    "scheduler": ("name",),
    "logger": ("name",),
    "trainer": ("cpu_threads",),  # torch's CPU threads for the run (mpm_inr.threads)
}


def has_target(cfg: Mapping[str, Any]) -> bool:
    """Whether the group builds anything (logger=none has no `_target_`)."""
    return cfg.get("_target_") is not None


def partial_of(cfg: Mapping[str, Any], group: str) -> functools.partial:
    """The group's `_target_` as a partial over its own arguments (lists as plain lists)."""
    args = {k: v for k, v in cfg.items() if k not in OWN_KEYS[group] and k != "_partial_"}
    return instantiate(args, _partial_=True, _convert_="all")
