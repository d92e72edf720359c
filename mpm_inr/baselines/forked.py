"""`ForkedPool`: a function over batches of jobs in forked worker processes, for work that holds the GIL.

Why processes: pysz and zfpy hold the GIL while they compress (2 threads take the time of 1), so the baselines
of a long window use a run's cores only in processes. Why fork: the workers inherit the function with everything
it reaches (the window's memory map or array, the codec) instead of unpickling it; only the jobs (a few numbers)
and the results go through pipes.

The workers must not call torch (numpy and the codecs only): torch's OpenMP pool does not survive a fork. They
die with the process that forked them (PR_SET_PDEATHSIG: a kill -9 of a run leaves none behind; the agent's
process-group kill reaches them anyway), ignore Ctrl-C (the parent handles it), and are killed at once when the
parent stops early: an exception in a job or in the parent, or KeyboardInterrupt.

`ForkedTask` is the same kind of process for one call whose result goes to disk (a run's baselines computed
beside its fit) or into a `shared_array` made before the fork: started now, waited for or killed later.
"""

from __future__ import annotations

import ctypes
import mmap
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Self, TypeVar

import numpy as np

Result = TypeVar("Result")

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_function: Callable[..., Any] | None = None  # a worker's function, inherited from the parent at the fork


def can_fork() -> bool:
    """Linux only: the fork start method and prctl's parent-death signal (elsewhere the work stays serial)."""
    return sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()


def shared_array(shape: tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
    """A zeroed array in anonymous shared memory: what a process forked after it writes there, its parent reads,
    with no copy through a pipe."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    return np.frombuffer(mmap.mmap(-1, max(size, 1)), dtype=dtype, count=size // dtype.itemsize).reshape(shape)


def _start_worker(function: Callable[..., Any], parent: int) -> None:
    """In a fresh worker: keep the function, die with the parent (also if it died before this line)."""
    global _function
    _function = function
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler, if it set one
    die_with_parent(parent, signal.SIGKILL)


def die_with_parent(parent: int, signum: int) -> None:
    """In a forked process (Linux): get `signum` when the process that forked it ends; exit now if it already
    has (it died before this line)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent:
        os._exit(1)


def _run_task(function: Callable[[], Any], parent: int) -> None:
    """A ForkedTask's process: the call, then an exit that skips the parent's inherited exit handlers and stdio
    buffers (their lines were the parent's to print); a failure is only its exit code."""
    _start_worker(function, parent)
    try:
        function()
    except BaseException:  # noqa: BLE001 - the parent redoes whatever the task did not store
        os._exit(1)
    os._exit(0)


def _run_job(*job: Any) -> Any:
    return _function(*job)  # type: ignore[misc]  # set by _start_worker


class ForkedPool:
    """function(*job) over batches of jobs in `workers` forked processes, results in job order. The processes
    are forked at the first batch of more than one job and serve every later batch until `close` (a search's
    points pay one fork, not one each). One process, a single job or a platform that cannot fork: in this process.

    `function` is inherited at the fork, never pickled: it must not change after the first batch. A batch that
    fails (an exception in a job, KeyboardInterrupt in the parent) kills the processes at once; the next batch
    forks new ones. Use as a context manager, or call close(): idle processes are left otherwise (they still die
    with this process)."""

    def __init__(self, function: Callable[..., Result], workers: int) -> None:
        self.function, self.workers = function, workers
        self._executor: ProcessPoolExecutor | None = None

    def map(self, jobs: Sequence[tuple]) -> list[Result]:
        if min(self.workers, len(jobs)) <= 1 or not can_fork():
            return [self.function(*job) for job in jobs]
        if self._executor is None:
            self._executor = ProcessPoolExecutor(self.workers, multiprocessing.get_context("fork"),
                                                 initializer=_start_worker, initargs=(self.function, os.getpid()))
        try:
            return list(self._executor.map(_run_job, *zip(*jobs, strict=True)))
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        """Cancel the jobs not started and kill the processes now (Python 3.14's terminate_workers)."""
        if self._executor is None:
            return
        processes = list((self._executor._processes or {}).values())
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = None
        for process in processes:
            process.kill()
        for process in processes:
            process.join()

    def close(self) -> None:
        """End the processes (idle between batches: at once) and wait for them."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        if error_type is None:
            self.close()
        else:
            self.kill()


class ForkedTask:
    """function() in one forked process, beside this one, for work that stores its result (a cache file): the
    parent `wait`s for it before reading that result, or `kill`s it. The process dies with this one and ignores
    Ctrl-C, as a ForkedPool's; a failure is its exit code, nothing printed (what it did not store, the parent
    computes). Use as a context manager: leaving the block kills a task still running."""

    def __init__(self, function: Callable[[], Any]) -> None:
        self.function = function
        self._process: multiprocessing.process.BaseProcess | None = None

    def start(self) -> Self:
        self._process = multiprocessing.get_context("fork").Process(target=_run_task,
                                                                    args=(self.function, os.getpid()), daemon=True)
        self._process.start()
        return self

    def wait(self) -> int | None:
        """Block until the task ends; its exit code (0: done; None: never started)."""
        if self._process is None:
            return None
        self._process.join()
        return self._process.exitcode

    def running(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def kill(self) -> None:
        if self._process is not None and self._process.exitcode is None:
            self._process.kill()
            self._process.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.kill()
