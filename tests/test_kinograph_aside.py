"""The kinograph reference computed beside the fit (mpm_inr.training.kinograph_aside): the reference the run would
compute, to the last digit, read from shared memory; nothing where it would not pay; the run's own where it fails."""

from __future__ import annotations

import numpy as np
import pytest

from mpm_inr.baselines.forked import can_fork
from mpm_inr.metrics import kinograph_reference, kinograph_ssim
from mpm_inr.training.kinograph_aside import KinographAside

needs_fork = pytest.mark.skipif(not can_fork(), reason="the reference's process needs Linux's fork")


def field(frames: int = 40, particles: int = 300, components: int = 3) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.normal(size=(frames, particles, components)).astype(np.float32)


@needs_fork
def test_the_reference_computed_beside_is_the_runs_own() -> None:
    gt = field()
    with KinographAside.start_for(gt) as aside:
        beside = aside.reference()
    here = kinograph_reference(gt)
    assert beside is not None and beside.shape == here.shape and beside.data_ranges == here.data_ranges
    for (u, uu), (v, vv) in zip(beside.filtered, here.filtered, strict=True):
        assert np.array_equal(u, v) and np.array_equal(uu, vv)
    pred = gt * 0.9 + 0.01
    assert kinograph_ssim(gt, pred, reference=beside) == kinograph_ssim(gt, pred, reference=here)


def test_no_process_where_the_reference_keeps_no_images() -> None:
    assert KinographAside.start_for(field(frames=8)) is None  # shorter than the SSIM window: ranges alone


@needs_fork
def test_a_process_that_fails_leaves_the_reference_to_the_run(monkeypatch) -> None:
    monkeypatch.setattr(KinographAside, "_fill", lambda self: 1 / 0)
    with KinographAside.start_for(field()) as aside:
        assert aside.reference() is None
