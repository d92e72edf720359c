"""Validation of the training overrides a policy proposes, before anything runs.

A policy (possibly an LLM) is untrusted input that ends up on a `python train.py` command line. Only keys on an
allow-list pass, each with a type and a range taken from the design document (`landscape_study.md`); values must
be plain literals. Hydra syntax beyond `key=value` (`+key`, `~key`, `++key`, `${...}` interpolations, sweeps `a,b`,
functions `choice(...)`, lists), `hydra.*`, `_target_`, shell metacharacters, NaN/inf and huge values are all
rejected with a reason. The output is a canonical list of `key=value` strings (sorted by key, shortest round-trip
float repr), so that equal configs hash equally.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mpm_inr.config.choices import INR_TYPES as DECLARED_INR_TYPES
from mpm_inr.config.fields import FIELD_NAMES
from mpm_inr.config.params import PARAMS
from mpm_inr.errors import UserError

#: the design document's n_training_frames progression (48 -> 100 -> ... -> 10000)
FRAMES_PROGRESSION: tuple[int, ...] = (48, 100, 200, 500, 1000, 2000, 5000, 10000)
FIELDS: tuple[str, ...] = FIELD_NAMES
INR_TYPES: tuple[str, ...] = DECLARED_INR_TYPES


class OverrideError(UserError):
    """A proposed override is not allowed; `reasons` lists every problem found."""

    def __init__(self, reasons: Sequence[str]):
        self.reasons = list(reasons)
        super().__init__("; ".join(self.reasons))


@dataclass(frozen=True)
class Spec:
    """Type and allowed values of one key. kind: float | int | bool | choice."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] = ()  #: a choice's values; a numeric key's named values besides the range (auto, all)
    doc: str = ""

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        named = "".join(f" or {c}" for c in self.choices)
        return f"{self.kind} in [{_fmt(self.lo)}, {_fmt(self.hi)}]{named}"


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return repr(x) if not x.is_integer() or abs(x) < 1e6 else f"{x:.0e}"
    return str(x)


def _declared(key: str) -> Spec:
    """The allow-list entry of `key` from its one declaration (mpm_inr.config.params): a numeric key's range is
    the declared exploration range `search`, which brackets every value our presets use (tests check it)."""
    p = PARAMS[key]
    if p.kind in ("int", "float"):
        return Spec(p.kind, p.search[0], p.search[1], choices=p.choices, doc=p.doc)
    return Spec(p.kind, choices=p.choices, doc=p.doc)


#: the allow-list (docs/contracts.md, Contract 2): which keys a policy may set; types, ranges and docs are
#: declared once in mpm_inr.config.params. int/float bounds are inclusive.
ALLOWED: dict[str, Spec] = {
    **{key: _declared(key) for key in (
        "optimizer.lr", "optimizer.omega_lr", "model.hidden_dim", "model.n_layers", "model.omega", "model.learn_omega",
        "model.latent_dim", "model.decoder", "model.basis_groups", "model.codes", "model.time_scale", "model.n_levels",
        "model.features_per_level", "model.log2_table_size", "model.base_resolution", "model.per_level_scale",
        "data.xy_period", "data.t_period", "train.batch_size", "train.total_steps", "train.grad_clip", "train.loss",
        "train.step_frames", "seed")},
    "data.n_training_frames": Spec("choice", choices=FRAMES_PROGRESSION,
                                   doc="window length, on the design document's frame progression"),
    **{group: _declared(f"{key}.name") for group, key in (
        ("scheduler", "scheduler"), ("optimizer", "optimizer"), ("inr_type", "model"), ("field", "field"))},
}

_KEY_RE = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$", re.IGNORECASE)
_NUM_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?$")
_WORD_RE = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")
_MAX_LEN = 200


def _spec_table(limits: Mapping[str, Sequence[float]] | None,
                progression: Sequence[int] | None) -> dict[str, Spec]:
    """The allow-list, with per-study limits applied. Limits may only tighten a range, never widen it."""
    table = dict(ALLOWED)
    if progression is not None:
        frames = tuple(int(f) for f in progression)
        if not frames or any(f <= 0 for f in frames) or list(frames) != sorted(set(frames)):
            raise UserError(f"frames progression must be increasing positive integers, got {list(progression)}")
        table["data.n_training_frames"] = Spec("choice", choices=frames, doc=ALLOWED["data.n_training_frames"].doc)
    for key, bounds in (limits or {}).items():
        spec = table.get(key)
        if spec is None or spec.kind not in ("int", "float"):
            raise UserError(f"limits: '{key}' is not a numeric allow-listed key")
        lo, hi = float(bounds[0]), float(bounds[1])
        lo, hi = max(lo, float(spec.lo)), min(hi, float(spec.hi))  # tighten only
        if lo > hi:
            raise UserError(f"limits: range for '{key}' is empty after intersecting with [{spec.lo}, {spec.hi}]")
        if spec.kind == "int":
            lo, hi = math.ceil(lo), math.floor(hi)
        table[key] = Spec(spec.kind, lo, hi, choices=spec.choices, doc=spec.doc)
    return table


@dataclass
class Validator:
    """Validates override proposals against the allow-list (optionally tightened per study)."""

    limits: Mapping[str, Sequence[float]] | None = None
    progression: Sequence[int] | None = None
    specs: dict[str, Spec] = field(init=False)

    def __post_init__(self) -> None:
        self.specs = _spec_table(self.limits, self.progression)

    def normalise(self, overrides: Mapping[str, Any] | Iterable[str]) -> list[str]:
        """Canonical sorted `key=value` list, or OverrideError listing every rejected entry."""
        pairs: list[tuple[Any, Any]] = []
        reasons: list[str] = []
        if isinstance(overrides, Mapping):
            pairs = list(overrides.items())
        elif isinstance(overrides, (str, bytes)):
            reasons.append("overrides must be a mapping or a list of key=value strings, not a single string")
        else:
            try:
                items = list(overrides)
            except TypeError:
                raise OverrideError([f"overrides must be a mapping or a list, got {type(overrides).__name__}"]) from None
            for item in items:
                try:
                    pairs.append(_split(item))
                except ValueError as e:
                    reasons.append(str(e))
        out: dict[str, str] = {}
        for key, value in pairs:
            try:
                k = self._check_key(key)
                v = self._check_value(k, value)
            except ValueError as e:
                reasons.append(str(e))
                continue
            if k in out and out[k] != v:
                reasons.append(f"{k}: given twice with different values")
            out[k] = v
        if reasons:
            raise OverrideError(reasons)
        return [f"{k}={out[k]}" for k in sorted(out)]

    def canon(self, key: str, value: Any) -> str | None:
        """The canonical string of one value (None when absent); unvalidatable values are shown as str()."""
        if value is None:
            return None
        try:
            return self._check_value(key, value) if key in self.specs else str(value)
        except ValueError:
            return str(value)

    def _check_key(self, key: Any) -> str:
        if not isinstance(key, str):
            raise ValueError(f"key {_show(key)}: not a string")  # noqa: TRY004 - normalise() catches ValueError
        if len(key) > 80:
            raise ValueError(f"key {_show(key)}: too long")
        if key.startswith(("+", "~")):
            raise ValueError(f"{_show(key)}: '+', '++' and '~' override syntax is not allowed")
        if not _KEY_RE.match(key):
            raise ValueError(f"key {_show(key)}: not a plain dotted name")
        parts = key.split(".")
        if parts[0] == "hydra":
            raise ValueError(f"{key}: hydra.* keys are not allowed")
        if any(p.startswith("_") and p.endswith("_") for p in parts):
            raise ValueError(f"{key}: special keys (_target_, _partial_, ...) are not allowed")
        if key not in self.specs:
            raise ValueError(f"{key}: unknown key (allowed: {', '.join(sorted(self.specs))})")
        return key

    def _check_value(self, key: str, value: Any) -> str:
        spec = self.specs[key]
        if isinstance(value, str):
            if len(value) > _MAX_LEN:
                raise ValueError(f"{key}: value too long")
            if "${" in value or "$" in value:
                raise ValueError(f"{key}={_show(value)}: interpolations are not allowed")
            if not _WORD_RE.match(value):
                raise ValueError(f"{key}={_show(value)}: only plain literals are allowed")
        if spec.kind == "bool":
            return _as_bool(key, value)
        if spec.kind == "choice":
            return _as_choice(key, value, spec)
        if isinstance(value, str) and value in spec.choices:  # a numeric key's named value (step_frames=auto)
            return value
        x = _as_number(key, value, integer=spec.kind == "int")
        if not (spec.lo <= x <= spec.hi):
            raise ValueError(f"{key}={_fmt(x)}: out of range, must be {spec.describe()}")
        return str(int(x)) if spec.kind == "int" else repr(float(x))


def _split(item: Any) -> tuple[str, str]:
    if not isinstance(item, str):
        raise ValueError(f"override {_show(item)}: not a string")  # noqa: TRY004 - normalise() catches ValueError
    if len(item) > _MAX_LEN:
        raise ValueError(f"override {_show(item)}: too long")
    if item.startswith(("+", "~")):
        raise ValueError(f"{_show(item)}: '+', '++' and '~' override syntax is not allowed")
    if "=" not in item:
        raise ValueError(f"override {_show(item)}: expected key=value")
    key, value = item.split("=", 1)
    return key, value


def _as_bool(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower()
    raise ValueError(f"{key}={_show(value)}: must be true or false")


def _as_choice(key: str, value: Any, spec: Spec) -> str:
    for c in spec.choices:
        if isinstance(c, int) and not isinstance(value, bool):
            try:
                if _as_number(key, value, integer=True) == c:
                    return str(c)
            except ValueError:
                continue
        elif isinstance(value, str) and value == c:
            return c
    raise ValueError(f"{key}={_show(value)}: must be {spec.describe()}")


def _as_number(key: str, value: Any, *, integer: bool) -> float | int:
    if isinstance(value, bool):
        raise ValueError(f"{key}={_show(value)}: a boolean is not a number")  # noqa: TRY004 - normalise() catches ValueError
    if isinstance(value, str):
        if not _NUM_RE.match(value):
            raise ValueError(f"{key}={_show(value)}: not a plain number")
        x = float(value)
    elif isinstance(value, numbers.Real):
        x = float(value)
    else:
        raise ValueError(f"{key}={_show(value)}: not a number")  # noqa: TRY004 - normalise() catches ValueError
    if not math.isfinite(x):
        raise ValueError(f"{key}={_show(value)}: NaN and infinity are not allowed")
    if abs(x) > 1e12:
        raise ValueError(f"{key}={_show(value)}: value too large")
    if integer:
        if not float(x).is_integer():
            raise ValueError(f"{key}={_show(value)}: must be an integer")
        return int(x)
    return x


def _show(x: Any) -> str:
    """A short, printable, one-line rendering of untrusted input for reasons."""
    s = repr(x)
    return s if len(s) <= 60 else s[:57] + "..."


#: what a block fixes: they change only at a block-end decision, never in a proposal within the block
BLOCK_KEYS = ("field", "data.n_training_frames")


def block_key_error(changes: Iterable[str], block: int) -> str | None:
    """Why normalised `changes` may not run within `block` (they change a BLOCK_KEYS key), None if they may: the
    loop's gate and the Claude policy's reply check give the same reason, so the model can repair its reply."""
    changed = [key for key in as_dict(changes) if key in BLOCK_KEYS]
    if not changed:
        return None
    return f"{changed[0]} changes only between blocks (block-end decision), not within block {block}"


def as_dict(overrides: Iterable[str]) -> dict[str, str]:
    """`["a=1", "b=x"]` -> `{"a": "1", "b": "x"}` (for already-normalised lists)."""
    return dict(o.split("=", 1) for o in overrides)


def merge(base: Iterable[str], changes: Iterable[str]) -> list[str]:
    """Later keys win; result sorted by key (the canonical form)."""
    d = as_dict(base)
    d.update(as_dict(changes))
    return [f"{k}={d[k]}" for k in sorted(d)]


def merge_train(train_overrides: Iterable[str], node_overrides: Sequence[str]) -> list[str]:
    """A study's base training overrides then a node's; a node key replaces a base key (Hydra rejects duplicates)."""
    node = as_dict(node_overrides)
    return [o for o in train_overrides if o.split("=", 1)[0] not in node] + list(node_overrides)


def diff(parent: Iterable[str], child: Iterable[str]) -> dict[str, tuple[str | None, str | None]]:
    """Keys whose value differs between two override lists: key -> (parent value, child value)."""
    a, b = as_dict(parent), as_dict(child)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def config_hash(overrides: Iterable[str]) -> str:
    """Hash of a canonical override list (same keys and values). Not a config's identity: a spelled-out default
    and an absent key differ here; agent.study.identity resolves them (and falls back to this for configs that do not
    compose)."""
    canon = "\n".join(sorted(overrides))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]
