"""The explore config's checks that run before anything else: a bad value is a one-line ConfigError, never a
study that stops at once, never stops, or silently ignores a setting."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.runs.overrides import FIELDS
from mpm_inr.errors import ConfigError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def split_kv(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for o in items:
        if "=" not in o:
            raise ConfigError(f"train_overrides entry {o!r} is not key=value")
        k, v = o.split("=", 1)
        out[k] = v
    return out


def check_config(c: Mapping[str, Any]) -> None:
    """Name, field, block sizes, seed, ucb_c, timeout and budget of the composed explore config."""
    name = c.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"name={name!r}: a study name is 1-64 letters, digits, '_' or '-'")
    if c.get("field") not in FIELDS:
        raise ConfigError(f"field={c.get('field')!r}: choose one of {', '.join(FIELDS)}")
    for key in ("n_blocks", "n_iter_block", "batch"):
        v = c.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{key}={v!r}: must be a positive integer")
    seed = c.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed={seed!r}: the policy seed must be a non-negative integer")
    uc = c.get("ucb_c")
    if not isinstance(uc, (int, float)) or not 0 < float(uc) <= 10:
        raise ConfigError(f"ucb_c={uc!r}: must be a number in (0, 10] (the design document uses 0.5-3.0)")
    t = c.get("timeout") or {}
    if not float(t.get("per_run_s", 1)) > 0:
        raise ConfigError("timeout.per_run_s must be > 0")
    check_budget(c)


def check_budget(c: Mapping[str, Any]) -> None:
    """A negative, NaN or zero cap would stop the study at once or never: refuse it before anything runs."""
    budget = c.get("budget") or {}
    if not isinstance(budget, Mapping):
        raise ConfigError(f"budget={budget!r}: must be a mapping, e.g. budget.max_usd=5")
    usd, its = budget.get("max_usd"), budget.get("max_iterations")
    if usd is not None and (isinstance(usd, bool) or not isinstance(usd, (int, float))
                            or not math.isfinite(usd) or usd <= 0):
        raise ConfigError(f"budget.max_usd={usd!r}: must be a positive number of dollars, or null for no cap")
    if its is not None and (isinstance(its, bool) or not isinstance(its, int) or its < 1):
        raise ConfigError(f"budget.max_iterations={its!r}: must be a positive integer (training runs), or null "
                          f"for no cap")


def check_train_overrides(c: Mapping[str, Any], code_dir: Path, train_overrides: Sequence[str]) -> None:
    """train_overrides go under every node's overrides, so a bad group option there could hide behind a
    node's own (field=Q under field=Jp) and a key the study sets itself would never take effect."""
    conf = code_dir / "conf"
    for o in train_overrides:
        key, _, val = o.partition("=")
        key = key.lstrip("+")
        if not re.match(r"^[A-Za-z0-9_]+$", key) or not (conf / key).is_dir():
            continue  # a plain key, or Hydra syntax the composition itself checks
        options = sorted(p.stem for p in (conf / key).glob("*.yaml"))
        if val not in options:
            raise ConfigError(f"train_overrides: {key}={val} is not an option of the trainer's '{key}' group; "
                              f"choose one of {', '.join(options)}")
    own = {"field": "field", "data.n_training_frames": "n_training_frames"}
    if c.get("inr_type"):
        own["inr_type"] = "inr_type"
    own.update({str(k): f"start={{{k}: ...}}" for k in (c.get("start") or {})})
    for o in train_overrides:
        key = o.split("=", 1)[0].lstrip("+")
        if key in own:
            opt = own[key]
            raise ConfigError(f"train_overrides: {o} would be replaced by the study's own {key} in every run; "
                              f"set it with the explore option {opt if '=' in opt else opt + '=...'} instead")
