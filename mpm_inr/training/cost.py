"""FLOPs of one optimiser step, by the path the step takes: the work term of the agent's training-time model.

A proxy, not a profile: 2 FLOPs per multiply-add of the linear layers and of the Gram products, a nominal cost per
activation, and backward counted as twice the forward. The time model's fit absorbs the scale; what matters is
that the proxy grows with every size knob the way the real cost does, on each path a step can take:

- `sampler=points|frames`: batch_size x n_particles query points per step, each a whole network evaluation;
- `sampler=full`: every training point per step. Types whose network sees only t (siren_t, lagrangian) run the
  trunk once per frame (and per basis group) and decode per point;
- `sampler=full`, MSE, bilinear latent codes (the lagrangian presets): the Gram form never decodes points. Its
  cost is the basis per frame and group plus K x (frames·components) x rows products per group, where rows is
  the padded group size, or frames·components Cholesky rows when the codes are solved and a group has at least
  twice that many particles (`LatentCodeField.loss_targets`).

A point-count proxy charges the Gram path for a network evaluation per point. On lagrangian CPU runs that left
the time model at fit R² 0.1; this one fits the same runs at 0.95.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpm_inr.errors import ConfigError

#: nominal FLOPs of one sine / ReLU / SiLU evaluation (the fit's scale absorbs the exact value)
ACT_FLOPS = 8.0
#: forward + backward, in forwards
STEP_FACTOR = 3.0


@dataclass(frozen=True)
class DataShape:
    """The facts about the training window that the cost depends on."""

    n_frames: int  # training frames
    n_particles: int
    n_components: int
    group_sizes: Mapping[str, Sequence[int]] = field(default_factory=dict)  # 'material' / 'object' -> particles

    @classmethod
    def of_particles(cls, n_frames: int, n_components: int, material: Any, object_id: Any) -> DataShape:
        """The shape of a window from its per-particle material and object ids (numpy arrays or CPU tensors)."""
        ids = {"material": np.asarray(material), "object": np.asarray(object_id)}
        groups = {kind: [int(c) for c in np.bincount(v.astype(np.int64)) if c > 0] for kind, v in ids.items()}
        return cls(int(n_frames), int(ids["object"].shape[0]), int(n_components), groups)


def _dense(n_in: int, n_out: int, act: bool = True) -> float:
    return 2.0 * n_in * n_out + n_out + (ACT_FLOPS * n_out if act else 0.0)


def _trunk(n_in: int, width: int, depth: int) -> float:
    """A SIREN trunk: `depth` sine layers of `width` (first from n_in)."""
    return _dense(n_in, width) + (depth - 1) * _dense(width, width)


def _int(model: Mapping[str, Any], key: str, inr_type: str) -> int:
    v = model.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise ConfigError(f"inr_type={inr_type} needs a numeric model.{key} to estimate its cost, got {v!r}")
    return int(v)


def _embedding(model: Mapping[str, Any], inr_type: str) -> int:
    """Input width the lagrangian basis gets beside t: the group embedding when bases are per group."""
    return 0 if model.get("basis_groups", "none") == "none" else _int(model, "group_embedding_dim", inr_type)


def split_costs(inr_type: str, model: Mapping[str, Any], n_components: int) -> tuple[float, float]:
    """(FLOPs that depend on t alone, FLOPs per point) of one forward evaluation. The first part runs once per
    frame on the `sampler=full` path of types whose network sees only t; every other type has it 0."""
    if inr_type in ("siren_txy", "siren_id"):
        h, n = _int(model, "hidden_dim", inr_type), _int(model, "n_layers", inr_type)
        return 0.0, _trunk(3 if inr_type == "siren_txy" else 2, h, n) + _dense(h, n_components, act=False)
    if inr_type == "siren_t":
        h, n = _int(model, "hidden_dim", inr_type), _int(model, "n_layers", inr_type)
        return _trunk(1, h, n), 2.0 * h * n_components + n_components  # per-particle head row
    if inr_type == "lagrangian":
        h, n, k = (_int(model, key, inr_type) for key in ("hidden_dim", "n_layers", "latent_dim"))
        trunk = _trunk(1 + _embedding(model, inr_type), h, n)
        if model.get("decoder", "bilinear") == "mlp":
            dh = _int(model, "decoder_hidden", inr_type)
            return trunk, _dense(h + k, dh) + _dense(dh, n_components, act=False)
        return trunk + _dense(h, k * n_components, act=False), 2.0 * k * n_components
    if inr_type == "ngp":
        levels, feats = _int(model, "n_levels", inr_type), _int(model, "features_per_level", inr_type)
        h, n = _int(model, "hidden_dim", inr_type), _int(model, "n_layers", inr_type)
        d = 3
        # per level: 2^d corner indices (d mults + d xors), weights (d mults), feature blend (2 F per corner)
        encoding = levels * 2 ** d * (3.0 * d + 2.0 * feats)
        width, mlp = levels * feats, 0.0
        for _ in range(n):
            mlp += _dense(width, h)
            width = h
        return 0.0, encoding + mlp + _dense(width, n_components, act=False)
    raise ConfigError(f"no cost model for inr_type {inr_type!r}; known: siren_t, siren_txy, siren_id, lagrangian, ngp")


def flops_per_point(inr_type: str, model: Mapping[str, Any], n_components: int) -> float:
    """Forward FLOPs of one query point evaluated on its own (the points and frames samplers)."""
    return sum(split_costs(inr_type, model, n_components))


def _basis_group_sizes(model: Mapping[str, Any], shape: DataShape) -> Sequence[int]:
    kind = model.get("basis_groups", "none")
    if kind == "none":
        return (shape.n_particles,)
    sizes = shape.group_sizes.get(kind)
    if not sizes:
        raise ConfigError(f"the cost of model.basis_groups={kind} needs the {kind} group sizes of the window")
    return sizes


def _gram_forward(model: Mapping[str, Any], shape: DataShape, per_frame: float) -> float:
    """The Gram-form MSE (`LatentCodeField.dense_sse`): basis per frame and group, then per group the K x K basis
    Gram, the two K x values x rows products, the codes' K x K Gram and, for solved codes, the K x K solve."""
    k = _int(model, "latent_dim", "lagrangian")
    sizes = _basis_group_sizes(model, shape)
    values = shape.n_frames * shape.n_components
    solved = model.get("codes", "learned") == "solved"
    rows = max(sizes)  # groups are padded to the largest
    if solved and rows >= 2 * values:
        rows = values
    per_group = 2.0 * k * k * values + 4.0 * k * values * rows + 2.0 * k * k * rows + (k ** 3 if solved else 0.0)
    return shape.n_frames * len(sizes) * per_frame + len(sizes) * per_group


def step_flops(inr_type: str, model: Mapping[str, Any], train: Mapping[str, Any], shape: DataShape) -> float:
    """FLOPs of one optimiser step (forward and backward) on the path `train.sampler` / `train.loss` select.

    model: the model config without the `model.` prefix (with `name` or not); train: the `train` config."""
    per_frame, per_point = split_costs(inr_type, model, shape.n_components)
    if train.get("sampler") != "full":
        batch = train.get("batch_size")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigError(f"train.batch_size must be a positive integer to estimate the cost, got {batch!r}")
        return STEP_FACTOR * batch * shape.n_particles * (per_frame + per_point)
    gram = (inr_type == "lagrangian" and model.get("decoder", "bilinear") == "bilinear"
            and train.get("loss", "mse") == "mse")
    if gram:
        return STEP_FACTOR * _gram_forward(model, shape, per_frame)
    trunks = len(_basis_group_sizes(model, shape)) if inr_type == "lagrangian" else 1
    return STEP_FACTOR * shape.n_frames * (trunks * per_frame + shape.n_particles * per_point)
