"""The identity of a training config: the hash of its *resolved* values on the allow-listed keys.

Two override lists that train the same thing must count as the same config, or a policy that spells out a
default (`optimizer.lr=1e-4` when the trainer's lr already is 1e-4) re-runs the same training. So identity is not a
hash of override strings: it is a hash of what the trainer's config resolves to, on every allow-listed key
(agent.runs.overrides.ALLOWED), with the study's `train_overrides` under the node's overrides (agent.runs.overrides.
merge_train) and each value in a canonical form by its kind (so `30` and `30.0` are equal omegas).

This module is the one place that defines it; the loop's duplicate gate, the heuristic, the Claude reply check and
`StudyView.failed_hashes` all call it through `StudyView.config_id` / `ConfigIdentity`. A config that does not
compose has no resolved values: its identity is the hash of its override list (agent.runs.overrides.config_hash).

Speed: composing takes ~0.2 s. The allow-listed plain keys a node sets (`optimizer.lr=...`) are applied by Hydra
after all defaults, so a node's resolved values are its config skeleton's (everything but those keys: group
choices, train_overrides) overlaid with them. The skeleton is composed once per distinct skeleton (a handful per
study), not once per candidate; the full composition is the fallback when the skeleton's allow-listed values are
interpolations (then a plain override could change another key) or a key is missing from it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from agent.runs.overrides import ALLOWED, as_dict, config_hash, merge_train
from agent.runs.trainconf import ComposeError, compose_train, has_key, value

#: keys that name a config group in the trainer's conf/ (their value is the option's `name`)
GROUP_KEYS = ("field", "inr_type", "optimizer", "scheduler")
#: where a group key's resolved name lives in the composed config (agent.runs.trainconf.value)
_GROUP_NODE = {"field": "field", "inr_type": "model", "optimizer": "optimizer", "scheduler": "scheduler"}


def resolved_hash(values: Mapping[str, str]) -> str:
    """Hash of resolved canonical values (absent keys left out), 16 hex digits like config_hash."""
    canon = json.dumps({k: values[k] for k in sorted(values)}, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def canon(key: str, v: Any) -> str | None:
    """One value in a canonical string form by the key's kind, whatever its range (a trainer default may lie
    outside the allow-list's range, e.g. a preset's lr): 30 and 30.0 and "3e1" are one omega."""
    if v is None:
        return None
    kind = ALLOWED[key].kind
    if isinstance(v, str):
        v = v.strip()
    if kind == "bool":
        if isinstance(v, bool) or (isinstance(v, str) and v.lower() in ("true", "false")):
            return str(v).lower()
        return str(v)
    if kind in ("int", "float") or (kind == "choice" and all(isinstance(c, int) for c in ALLOWED[key].choices)):
        try:
            x = float(v) if not isinstance(v, bool) else None
        except (TypeError, ValueError):
            x = None
        if x is None or not math.isfinite(x):
            return str(v)
        if kind == "float":
            return repr(x)
        return str(int(x)) if x.is_integer() else repr(x)
    return str(v)


def _split(item: str) -> tuple[str, str]:
    key, _, val = item.partition("=")
    return key, val


def _canon_values(cfg: DictConfig) -> dict[str, str]:
    """Canonical resolved values of the allow-listed keys present in cfg (a key that is absent or does not
    resolve is left out)."""
    out: dict[str, str] = {}
    for key in ALLOWED:
        c = canon(key, value(cfg, key))  # value() gives None for what does not resolve
        if c is not None:
            out[key] = c
    return out


def _interpolated(cfg: DictConfig) -> bool:
    """Whether an allow-listed value is an interpolation (it could follow another key a node overrides)."""
    for key in ALLOWED:
        path = f"{_GROUP_NODE[key]}.name" if key in _GROUP_NODE else key
        parent, _, leaf = path.rpartition(".")
        node = OmegaConf.select(cfg, parent, throw_on_missing=False) if parent else cfg
        if isinstance(node, DictConfig) and leaf in node and OmegaConf.is_interpolation(node, leaf):
            return True
    return False


class ConfigIdentity:
    """`identity(overrides) -> str` for one study (its trainer code dir and train_overrides); cached per tuple."""

    def __init__(self, code_dir: str | Path, train_overrides: Sequence[str] = ()):
        self.code_dir = Path(code_dir)
        self.train_overrides = [str(o) for o in train_overrides]
        self._ids: dict[tuple[str, ...], str] = {}
        self._skeletons: dict[tuple[str, ...], tuple[dict[str, str], DictConfig] | None] = {}

    def __call__(self, overrides: Sequence[str]) -> str:
        key = tuple(overrides)
        h = self._ids.get(key)
        if h is None:
            vals = self.values(overrides)
            h = resolved_hash(vals) if vals is not None else config_hash(overrides)
            self._ids[key] = h
        return h

    def values(self, overrides: Sequence[str]) -> dict[str, str] | None:
        """The resolved canonical allow-listed values of a node's overrides (None: it does not compose)."""
        node = as_dict(o for o in overrides if "=" in o)
        plain = {k: v for k, v in node.items() if k in ALLOWED and k not in GROUP_KEYS}
        skeleton = [o for o in merge_train(self.train_overrides, list(overrides)) if _split(o)[0] not in plain]
        skel = self._skeleton(tuple(skeleton))
        if skel is not None:
            vals, cfg = skel
            if all(has_key(cfg, k) for k in plain):
                out = dict(vals)
                out.update({k: str(canon(k, v)) for k, v in plain.items()})
                return out
        return self.values_composed(overrides)

    def values_composed(self, overrides: Sequence[str]) -> dict[str, str] | None:
        """The same values from the full composition (the reference the skeleton shortcut must equal)."""
        try:
            cfg = compose_train(self.code_dir, merge_train(self.train_overrides, list(overrides)))
        except ComposeError:
            return None
        return _canon_values(cfg)

    def _skeleton(self, skeleton: tuple[str, ...]) -> tuple[dict[str, str], DictConfig] | None:
        if skeleton not in self._skeletons:
            entry = None
            try:
                cfg = compose_train(self.code_dir, skeleton)
            except ComposeError:
                cfg = None
            if cfg is not None and not _interpolated(cfg):
                entry = (_canon_values(cfg), cfg)
            self._skeletons[skeleton] = entry
        return self._skeletons[skeleton]


def identity_of(identity: Any, overrides: Sequence[str]) -> str:
    """`identity(overrides)` when a study identity is given, else the override-list hash (synthetic views)."""
    return identity(overrides) if identity is not None else config_hash(overrides)
