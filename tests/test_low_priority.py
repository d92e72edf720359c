"""LowPriorityCall: a call made in a thread of raised niceness, its value or its exception handed back."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest

from mpm_inr.metrics import evaluate_all
from mpm_inr.training.low_priority import NICENESS, LowPriorityCall


def test_the_value_comes_back_and_only_the_thread_is_niced() -> None:
    seen = {}

    def work() -> int:
        seen["niceness"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return 42

    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert LowPriorityCall(work).result() == 42
    if sys.platform == "linux":
        assert seen["niceness"] >= NICENESS  # (a process niced beyond it keeps its own)
    assert os.getpriority(os.PRIO_PROCESS, 0) == mine  # the caller keeps its priority


def test_an_exception_is_raised_by_result() -> None:
    def fails() -> None:
        raise ValueError("no score")

    call = LowPriorityCall(fails)
    with pytest.raises(ValueError, match="no score"):
        call.result()


def test_a_deferred_kinograph_ssim_is_the_same_number() -> None:
    rng = np.random.default_rng(3)
    gt = rng.normal(size=(20, 60, 2)).astype(np.float32)
    pred = gt + 0.1 * rng.normal(size=gt.shape).astype(np.float32)
    positions = rng.uniform(size=(60, 2))
    now = evaluate_all(gt, pred, positions, n_params=10)
    later = evaluate_all(gt, pred, positions, n_params=10, defer=LowPriorityCall)
    assert isinstance(later["kinograph_ssim"], LowPriorityCall)
    later["kinograph_ssim"] = later["kinograph_ssim"].result()
    assert later == now
