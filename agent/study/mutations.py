"""The design document's mutation magnitudes per allow-listed key: what the heuristic policy proposes and what the
instruction file tells a policy (agent.study.instructions)."""

from __future__ import annotations

# (ordinary steps, extreme steps); a step is ("mul", f) or ("add", d)
MAGNITUDES: dict[str, tuple[tuple[tuple[str, float], ...], tuple[tuple[str, float], ...]]] = {
    "optimizer.lr": ((("mul", 2.0), ("mul", 0.5)), (("mul", 4.0), ("mul", 0.25))),
    "optimizer.omega_lr": ((("mul", 2.0), ("mul", 0.5)), (("mul", 4.0), ("mul", 0.25))),
    "model.hidden_dim": ((("mul", 2.0), ("mul", 0.5)), (("mul", 4.0), ("mul", 0.25))),
    "model.n_layers": ((("add", 1), ("add", -1)), (("add", 2), ("add", -2))),
    "model.omega": ((("add", 10.0), ("add", -10.0), ("mul", 1.5), ("mul", 1 / 1.5)), (("mul", 2.0), ("mul", 0.5))),
    "train.total_steps": ((("mul", 1.5), ("mul", 2.0)), (("mul", 4.0), ("mul", 0.25))),
    "data.t_period": ((("mul", 2.0), ("mul", 0.5)), (("mul", 4.0), ("mul", 0.25))),
    "data.xy_period": ((("mul", 2.0), ("mul", 0.5)), (("mul", 4.0), ("mul", 0.25))),
    "model.latent_dim": ((("mul", 2.0), ("mul", 0.5)), (("mul", 4.0), ("mul", 0.25))),
    "train.batch_size": ((("mul", 2.0), ("mul", 0.5)), (("mul", 4.0), ("mul", 0.25))),
    "model.n_levels": ((("add", 2), ("add", -2)), (("add", 4), ("add", -4))),
    "model.log2_table_size": ((("add", 1), ("add", -1)), (("add", 3), ("add", -3))),
    "model.features_per_level": ((("mul", 2.0), ("mul", 0.5)), (("mul", 4.0), ("mul", 0.25))),
    "train.grad_clip": ((("mul", 2.0), ("mul", 0.5)), (("mul", 10.0), ("mul", 0.1))),
}
