"""Shared fixtures: a small dataset generated once per session, and W&B kept offline."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import pytest

# Threads on a shared machine: OpenMP and OpenBLAS workers spin-wait, and on a busy 2-core machine (parallel
# subprocess tests, CI neighbours) two of them made a tiny matmul 30x slower than one. Training runs pin torch's
# threads themselves (trainer.cpu_threads, in-process and in train.py subprocesses alike), and so does generation
# (threads); what is left is pinned here: numpy/scipy's OpenBLAS in every process the tests start (children
# inherit the variable; OpenBLAS reads it at load), and torch in this process outside the runs (below).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HYDRA_FULL_ERROR", "0")
# a developer's warm server (python -m mpm_inr.warm start) must not run the tests' train.py commands: its code and
# environment are not the test's. Tests of the warm server give each of theirs a socket of its own.
os.environ["MPM_INR_WARM_SOCKET"] = "off"

import torch  # after OPENBLAS_NUM_THREADS, which OpenBLAS reads when torch loads numpy

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)  # the models, metrics and simulator tests that call torch directly, not through a run


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A data root holding discs_small seed 0 (generated once per test session, in seconds)."""
    from mpm_inr.bench.compose import compose_train_config
    from mpm_inr.data.generate import ensure_dataset

    root = tmp_path_factory.mktemp("data")
    cfg = compose_train_config(["scenario=discs_small"])
    ensure_dataset(cfg["scenario"], 0, root, device="cpu", progress=False)
    return root


@pytest.fixture
def tiny_train_overrides(data_root) -> list[str]:
    """Overrides that make any field x inr_type train in about a second on CPU."""
    return ["scenario=discs_small", f"data.root={data_root}", "data.n_training_frames=20", "trainer=cpu",
            "logger=none", "train.total_steps=20", "train.steps_per_call=10", "train.eval_every=10",
            "train.batch_size=1"]


@functools.cache
def _bwrap_unusable() -> str | None:
    """Why bubblewrap cannot confine this interpreter here (None: it can). Probed once, only if a test needs it."""
    from agent.codemod.sandbox import SandboxError, probe

    try:
        probe(sys.executable)
    except SandboxError as err:
        return str(err)
    return None


def pytest_collection_modifyitems(config, items):
    """Tests marked `bwrap` run modified code in the real sandbox: they skip, saying why, where bubblewrap cannot
    start (a user's machine without it, no user namespaces). CI installs it (.ci/run), so there they run."""
    marked = [item for item in items if item.get_closest_marker("bwrap")]
    why = _bwrap_unusable() if marked else None
    for item in marked if why else ():
        item.add_marker(pytest.mark.skip(reason=f"needs a working bubblewrap: {why}"))


@pytest.fixture
def interrupt_simulation(monkeypatch):
    """interrupt_simulation(n): the simulator's n-th step raises KeyboardInterrupt (Ctrl-C mid-generation)."""
    from mpm_inr.sim import MPMSimulator

    def arm(at_step: int) -> None:
        calls = {"n": 0}
        real_step = MPMSimulator.step

        def step(self):
            calls["n"] += 1
            if calls["n"] == at_step:
                raise KeyboardInterrupt
            return real_step(self)

        monkeypatch.setattr(MPMSimulator, "step", step)

    return arm
