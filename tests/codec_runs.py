"""Tiny discs_small trainings the codec tests encode: about a second each on a CPU."""

from __future__ import annotations

from pathlib import Path

from mpm_inr.bench.compose import compose_train_config
from mpm_inr.training.run import run_training

TINY = ["scenario=discs_small", "data.n_training_frames=20", "trainer=cpu", "logger=none", "train.total_steps=20",
        "train.steps_per_call=10", "train.eval_every=10", "train.batch_size=1", "outputs.plot=false"]


def train_tiny(data_root: Path, run_dir: Path, *extra: str) -> tuple[dict, dict]:
    """(config, metrics) of a tiny run into `run_dir` with `extra` overrides."""
    overrides = TINY + [f"data.root={data_root}", *extra]
    cfg = compose_train_config(overrides)
    return cfg, run_training(cfg, run_dir, overrides, progress=False)
