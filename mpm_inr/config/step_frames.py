"""How many frames a `train.sampler=full` step reads: the one rule behind `train.step_frames` (auto | all | N).

Torch-free, so the cost model (and the agent's time model through it) can follow the rule without loading torch.
"""

from __future__ import annotations

from mpm_inr.errors import ConfigError

#: `train.step_frames=auto`: windows up to this many training frames take the dense step (every frame). At 1000
#: frames on discs_3types seed 0 the dense step still wins (F 0.25 vs 0.22-0.37 s/step, S 0.69 vs 0.53 s, one
#: thread under load 6; R² 0.99986 vs 0.99969 on F, 0.99775 vs 0.99690 on S); beyond it its products grow as
#: frames² (Cholesky rows) or frames x particles: 14-78 s per step at 10 000 frames on S
AUTO_DENSE_MAX_FRAMES = 1000
#: `train.step_frames=auto` beyond that: frames per step, so a step costs what a dense step on them costs
AUTO_STEP_FRAMES = 100


def resolve_step_frames(value: int | str, n_train_frames: int) -> int | None:
    """Frames per `sampler=full` step from `train.step_frames` (auto | all | N); None: every training frame.
    auto keeps short windows on the dense step, whose numbers the presets were tuned on, and caps longer ones at
    AUTO_STEP_FRAMES, so a step's cost stops growing with the window."""
    if value == "all":
        return None
    if value == "auto":
        return None if n_train_frames <= AUTO_DENSE_MAX_FRAMES else AUTO_STEP_FRAMES
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"train.step_frames must be auto, all or an integer >= 1, got {value!r}")
    return None if value >= n_train_frames else value
