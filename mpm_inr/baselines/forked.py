"""`forked_map`: a function over many jobs in forked worker processes, for work that holds the GIL.

Why processes: pysz and zfpy hold the GIL while they compress (2 threads take the time of 1), so the baselines
of a long window use a run's cores only in processes. Why fork: the workers inherit the function with everything
it reaches (the window's memory map or array, the codec) instead of unpickling it; only the jobs (a few numbers)
and the results go through pipes.

The workers must not call torch (numpy and the codecs only): torch's OpenMP pool does not survive a fork. They
die with the process that forked them (PR_SET_PDEATHSIG: a kill -9 of a run leaves none behind; the agent's
process-group kill reaches them anyway), ignore Ctrl-C (the parent handles it), and are killed at once when the
parent stops early: an exception in a job or in the parent, or KeyboardInterrupt.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

Result = TypeVar("Result")

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_function: Callable[..., Any] | None = None  # a worker's function, inherited from the parent at the fork


def can_fork() -> bool:
    """Linux only: the fork start method and prctl's parent-death signal (elsewhere the work stays serial)."""
    return sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()


def _start_worker(function: Callable[..., Any], parent: int) -> None:
    """In a fresh worker: keep the function, die with the parent (also if it died before this line)."""
    global _function
    _function = function
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler, if it set one
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _run_job(*job: Any) -> Any:
    return _function(*job)  # type: ignore[misc]  # set by _start_worker


def _kill(executor: ProcessPoolExecutor) -> None:
    """Cancel the jobs not started and kill the workers now (what Python 3.14's terminate_workers does)."""
    processes = list((executor._processes or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.kill()
    for process in processes:
        process.join()


@contextlib.contextmanager
def _pool(function: Callable[..., Any], workers: int) -> Iterator[ProcessPoolExecutor]:
    executor = ProcessPoolExecutor(workers, multiprocessing.get_context("fork"), initializer=_start_worker,
                                   initargs=(function, os.getpid()))
    try:
        yield executor
    except BaseException:
        _kill(executor)
        raise
    executor.shutdown(wait=True)


def forked_map(function: Callable[..., Result], jobs: Sequence[tuple], workers: int) -> list[Result]:
    """[function(*job) for job in jobs], in min(workers, len(jobs)) forked processes, results in job order.

    Serial in this process when that is one process or the platform cannot fork (can_fork)."""
    workers = min(workers, len(jobs))
    if workers <= 1 or not can_fork():
        return [function(*job) for job in jobs]
    with _pool(function, workers) as executor:
        return list(executor.map(_run_job, *zip(*jobs, strict=True)))
