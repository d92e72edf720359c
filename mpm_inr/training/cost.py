"""FLOPs of one optimiser step, by the path the step takes: the work term of the agent's training-time model.

A proxy, not a profile: 2 FLOPs per multiply-add of the linear layers and of the Gram products, a nominal cost per
activation (mpm_inr.models.flops), and backward counted as twice the forward. Each network class estimates its
own forward cost (`flop_costs`, and for the lagrangian codes `t_evals_per_frame` and `gram_flops`: the
capabilities of `mpm_inr.models.field_network.FieldNetwork`), so a new inr_type brings its cost with it; this
module only follows the path a step takes. The time model's fit absorbs the scale; what matters is that the
proxy grows with every size knob the way the real cost does, on each path:

- `sampler=points|frames`: batch_size x n_particles query points per step, each a whole network evaluation;
- `sampler=full`: every training point per step. Types whose network sees only t (siren_t, lagrangian) run the
  trunk once per frame (and per basis group) and decode per point;
- `sampler=full`, MSE, bilinear latent codes (the lagrangian presets): the Gram form never decodes points. Its
  cost is the basis per frame and group plus K x (frames·components) x rows products per group, where rows is
  the padded group size, or frames·components Cholesky rows when the codes are solved and a group has at least
  twice that many particles (`LatentCodeField.loss_targets`);
- `train.step_frames` below the window (`auto` beyond 1000 frames): the same on the sampled frames only, plus, for
  solved codes, renewing their statistics and solving every particle's code (`LatentCodeField.sampled_sse`).

A point-count proxy charges the Gram path for a network evaluation per point. On lagrangian CPU runs that left
the time model at fit R² 0.1; this one fits the same runs at 0.95.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpm_inr.config.step_frames import resolve_step_frames
from mpm_inr.errors import ConfigError

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


def split_costs(inr_type: str, model: Mapping[str, Any], n_components: int) -> tuple[float, float]:
    """(FLOPs that depend on t alone, FLOPs per point) of one forward evaluation, from the network's own
    `flop_costs`. The first part runs once per frame on the `sampler=full` path of types whose network sees only t
    (and is 0 for the others)."""
    from mpm_inr.models.registry import get_inr_type

    spec = get_inr_type(inr_type)
    costs = spec.network.flop_costs(model, spec.in_dim, n_components)
    if costs is None:
        raise ConfigError(f"no cost model for inr_type {inr_type!r}: its network has no flop_costs")
    return costs


def flops_per_point(inr_type: str, model: Mapping[str, Any], n_components: int) -> float:
    """Forward FLOPs of one query point evaluated on its own (the points and frames samplers)."""
    return sum(split_costs(inr_type, model, n_components))


def step_path(inr_type: str, model: Mapping[str, Any], train: Mapping[str, Any]) -> str:
    """Which path a step takes: 'points' (sampled query points), 'gram' (every point, the Gram-form MSE of
    bilinear codes) or 'full' (every point, decoded). The cost per FLOP differs between paths."""
    from mpm_inr.models.registry import get_inr_type

    if train.get("sampler") != "full":
        return "points"
    gram = train.get("loss", "mse") == "mse" and get_inr_type(inr_type).network.has_gram_form(model)
    return "gram" if gram else "full"


def step_flops(inr_type: str, model: Mapping[str, Any], train: Mapping[str, Any], shape: DataShape) -> float:
    """FLOPs of one optimiser step (forward and backward) on the path `train.sampler` / `train.loss` select.

    model: the model config without the `model.` prefix (with `name` or not); train: the `train` config."""
    from mpm_inr.models.registry import get_inr_type

    network = get_inr_type(inr_type).network
    per_t, per_point = split_costs(inr_type, model, shape.n_components)
    path = step_path(inr_type, model, train)
    if path == "points":
        batch = train.get("batch_size")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigError(f"train.batch_size must be a positive integer to estimate the cost, got {batch!r}")
        return STEP_FACTOR * batch * shape.n_particles * (per_t + per_point)
    evals = network.t_evals_per_frame(model, shape.group_sizes)
    step_frames = resolve_step_frames(train.get("step_frames", "auto"), shape.n_frames)
    n_frames = shape.n_frames if step_frames is None else step_frames  # train.step_frames: a sample of the window
    if path == "gram":  # the basis per frame and group, then Gram products; never a decoded point
        extra = network.gram_flops(model, n_frames, shape.n_components, shape.n_particles, shape.group_sizes,
                                   sampled=step_frames is not None)
        return STEP_FACTOR * (n_frames * evals * per_t + extra)
    return STEP_FACTOR * n_frames * (evals * per_t + shape.n_particles * per_point)
