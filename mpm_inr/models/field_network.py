"""The base class of every registry network: the optional capabilities the training step, the cost model and the
codec ask a network for, each with what a network without it does.

A new network overrides what it supports; callers call the method, never probe for it with `getattr`, so what a
network can do is read from its class, and a misspelt override is a visible extra method rather than a silent
fallback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from mpm_inr.errors import ConfigError


class FieldNetwork(nn.Module):
    """Query points in, the field's components out; `forward(coords, particle_idx)` is each subclass's own."""

    #: the prediction is <z_i, g(t)>, linear in each particle's code, so the codec transform-codes the codes
    #: (`mpm_inr.codec.encode`); otherwise it quantises the weights
    linear_in_codes: bool = False
    #: the per-particle labels of the NetworkContext ("material", "object") the outputs depend on: a codec file
    #: stores only those (a network that reads none need not carry 9 000 labels). Conservative default: both
    particle_labels: frozenset[str] = frozenset(("material", "object"))

    # --- cost estimates (mpm_inr.training.cost), from the model config alone ---------------------------------------

    @staticmethod
    def flop_costs(model: Mapping[str, Any], in_dim: int, n_components: int) -> tuple[float, float] | None:
        """(FLOPs that depend on t alone, FLOPs per point) of one forward evaluation; None: no cost model, so the
        run trains but records no `flops_per_step` and the time model skips it."""
        return None

    @staticmethod
    def t_evals_per_frame(model: Mapping[str, Any], group_sizes: Mapping[str, Sequence[int]]) -> int:
        """Evaluations of the t-only part per frame on the whole-window path: one unless the network splits it."""
        return 1

    # --- the Gram form of the MSE: whole-window steps that never decode a point -----------------------------------

    @staticmethod
    def has_gram_form(model: Mapping[str, Any]) -> bool:
        """Whether `dense_sse` can compute the MSE of this config without decoding points."""
        return False

    @classmethod
    def gram_flops(cls, model: Mapping[str, Any], n_frames: int, n_components: int, n_particles: int,
                   group_sizes: Mapping[str, Sequence[int]], sampled: bool = False) -> float:
        """Forward FLOPs of `dense_sse` (sampled: `sampled_sse` on n_frames frames) beyond the t-only part; a network whose `has_gram_form` can be true
        gives them, and one that does not has no cost model on that path."""
        raise ConfigError(f"no cost model for the Gram-form step of {cls.__name__}: it has no gram_flops")

    def pack_targets(self, targets: Tensor) -> Tensor | None:
        """The targets (F, N, C) in the layout `dense_sse` multiplies by; None: no Gram form (steps decode)."""
        return None

    def sampled_sse(self, t_frames: Tensor, positions: Tensor, packed_targets: Tensor, targets_sq: Tensor,
                    statistics: Any) -> Tensor:
        """The Gram-form SSE over a sample of the window's frames; only networks with a Gram form have it."""
        raise ConfigError(f"{type(self).__name__} has no Gram form, so no Gram-form step on sampled frames")

    def code_statistics(self, n_frames: int) -> Any:
        """Whole-window statistics the codes are solved from when a step sees only some frames
        (`mpm_inr.models.code_statistics.CodeStatistics`); None: the network's codes need none."""
        return None

    def loss_targets(self, packed_targets: Tensor) -> Tensor:
        """What `dense_sse` multiplies by in training steps: the packed targets, unless the network has a smaller
        equivalent (solved codes)."""
        return packed_targets

    def refresh_codes(self, t_frames: Tensor, packed_targets: Tensor) -> None:
        """Store the codes solved for the current basis; a network that learns its codes has nothing to do."""
