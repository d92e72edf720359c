"""CPU threads: the one place that validates a thread setting, resolves `auto`, and pins it for a block, torch's
and the BLAS numpy and scipy call (OpenBLAS or MKL, through threadpoolctl) alike.

Why pin at all: torch starts one OpenMP worker per core, and those workers spin-wait on each other at every op.
When another process holds a core (a neighbour, or the other jobs of a parallel round) every op waits for the
descheduled worker, and a run that takes 1-2 s alone takes 10-35x longer. One thread per job loses at most the
parallel speed-up; see `python -m mpm_inr.bench threads` and docs/benchmarks/threads_*.md for the measurement
behind `AUTO_MAX_THREADS`. NumPy's OpenBLAS does the same with its own pool, one thread per core whatever torch
was told: the codec's least-squares fits (C, 100 frames, seed 0, R² 0.999) took 7.5 s with 2 BLAS threads beside
a neighbour on the 2-core VM, 2.6 s with 1.

Used by training (`trainer.cpu_threads`), dataset generation (`threads`), the simulator benchmark, and the agent's
launchers, which give each job of a parallel round its share of the cores (`cpu_share`); the classical baselines
size their worker processes by it (`process_workers`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from threadpoolctl import threadpool_info, threadpool_limits

from mpm_inr.errors import ConfigError

AUTO = "auto"
#: `auto` uses at most this many threads, whatever the machine. Measured on discs_small (Jp, C default recipes) on
#: the shared 2-core VM (docs/benchmarks/threads_cpu_discs_small_2026-12-03.md): 2 threads took 3-6x longer per
#: step than 1 beside the other work of the machine, 21-27x beside a CPU burner per core, 18-63x in a round of 2
#: jobs. Near idle (threads_cpu_discs_small_2026-12-03_near_idle.md) 2 threads gained 20 % on C with the machine
#: to itself, nothing on Jp, and lost 2.3-6.1x beside a burner or in a round of 2. The gain is small and rare, the
#: loss large and common; raise this only on a measurement of a quiet, larger machine
#: (`python -m mpm_inr.bench threads --threads 1,2,4,8`).
AUTO_MAX_THREADS = 1


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask: what taskset, cgroups or SLURM left it), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity API on this platform
        return max(1, os.cpu_count() or 1)


def others_running(samples: int = 5, interval_s: float = 0.01) -> float:
    """How many cores other work is using now: the runnable tasks (/proc/stat `procs_running`, less the thread
    reading it), averaged over a few samples 10 ms apart. Not the load average: it still counts a run that ended
    seconds ago (back-to-back `train.py` commands read ~0.9 on an idle machine). 0 where /proc is not there."""
    load = LoadSamples()
    for k in range(samples):
        load.take()
        if k + 1 < samples:
            time.sleep(interval_s)
    return load.mean() or 0.0


class LoadSamples:
    """`others_running`'s samples taken by a run at the steps of its set-up (`take`) instead of 10 ms apart with
    sleeps between them: the sleeps were 40 ms of a one-second run's critical path, and the steps spread the
    samples over more time (70-100 ms before the fit)."""

    def __init__(self) -> None:
        self._counts: list[int] = []

    def take(self) -> None:
        try:
            with open("/proc/stat") as stat:
                running = next((int(line.split()[1]) for line in stat if line.startswith("procs_running ")), None)
        except (OSError, ValueError):
            return
        if running is not None:
            self._counts.append(running - 1)

    def mean(self) -> float | None:
        """The mean of the samples taken; None before any (or where /proc is not there)."""
        return sum(self._counts) / len(self._counts) if self._counts else None


def core_to_spare(threads: int, cores: int | None = None, busy: float | None = None) -> bool:
    """Whether work beside a run's `threads` would get a core of its own: the cores (affinity mask) less the run's
    threads and what others run now leave at least one, with half a core of margin.
    A process beside the fit on a core someone else holds slows the fit itself (measured: a cold C fit 3.7 ->
    11.3 s with a neighbour's bench on the second core), so a busy machine keeps the work in the run."""
    cores = available_cores() if cores is None else cores
    busy = others_running() if busy is None else busy
    return cores - threads - busy >= 0.5


def auto_threads(cores: int | None = None) -> int:
    """The `auto` rule: min(cores available, AUTO_MAX_THREADS), at least 1."""
    return max(1, min(available_cores() if cores is None else cores, AUTO_MAX_THREADS))


def check_threads(value: Any, key: str = "threads", allow_auto: bool = False) -> int | str | None:
    """A thread setting: a positive integer, null (leave torch's setting), or `auto` where allowed.

    An integer above the cores available is refused: extra threads only wait on each other (oversubscription),
    and a config that asks for them is a mistake for this machine, not a preference.
    """
    if value is None or (allow_auto and value == AUTO):
        return value
    cores = available_cores()
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= cores:
        choices = f"{AUTO}, " if allow_auto else ""
        raise ConfigError(f"{key}={value!r} is out of range: use {choices}null or an integer in [1, {cores}] "
                          f"(the cores available here)")
    return value


def resolve_threads(value: int | str | None) -> int | None:
    """The thread count a checked setting asks for (None: leave torch's setting as it is)."""
    return auto_threads() if value == AUTO else value  # type: ignore[return-value]


def threads_in_use() -> dict[str, int]:
    """Torch's intra-op and inter-op thread counts right now, and the most threads a BLAS library loaded in this
    process would use (what metrics.json records)."""
    import torch

    return {"cpu_threads": torch.get_num_threads(), "cpu_interop_threads": torch.get_num_interop_threads(),
            "blas_threads": blas_threads()}


def blas_threads() -> int:
    """The largest thread pool of the BLAS libraries loaded in this process (numpy's, scipy's), 1 if none is."""
    return max((pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"), default=1)


def process_workers() -> int:
    """Worker processes for CPU work outside torch that holds the GIL (the classical baselines' codecs): as many
    as the torch CPU threads this process runs with, so a job of a parallel round pinned to its share of the cores
    stays in one process, and a run given 2 threads (or the baselines' table command, at torch's default) uses 2."""
    return threads_in_use()["cpu_threads"]


def _set_interop(n: int) -> None:
    """Inter-op threads (torch.jit.fork and friends) can be set once per process, before any parallel work: a
    later request (the next job of a sequential multirun) keeps the first setting, which metrics.json records."""
    import torch

    if torch.get_num_interop_threads() != n:
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(n)


@contextlib.contextmanager
def pinned_threads(n: int | None) -> Iterator[None]:
    """Run a block with n torch CPU threads and at most n BLAS threads (None: both unchanged), restoring both
    after. The BLAS libraries loaded when the block starts are limited through threadpoolctl; one loaded inside
    it (scipy's at the first scipy.linalg import) sizes its pool from the environment when it loads, so the
    block sets `BLAS_THREAD_VARIABLES` to n as well (restored after; that library keeps n threads).

    The inter-op count is set too where torch still allows it (see `_set_interop`); it cannot be restored.
    """
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    _set_interop(n)
    try:
        with threadpool_limits(limits=n, user_api="blas"), _environment(dict.fromkeys(BLAS_THREAD_VARIABLES, str(n))):
            yield
    finally:
        torch.set_num_threads(before)


#: the variables a BLAS library reads its pool size from as it loads (OpenBLAS, numpy's and scipy's bundled
#: builds among them, MKL, BLIS); not OMP_NUM_THREADS, which torch read at its import and a process started
#: inside the block (a warm server, a train.py) would take as its torch default
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Environment variables set for a block and put back as they were after it (unset where they were)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def cpu_share(parallel_jobs: int, cores: int | None = None) -> int:
    """Threads for each of `parallel_jobs` jobs running at once on this machine: its cores split evenly, at
    least 1, and never more than `auto` would take alone."""
    cores = available_cores() if cores is None else cores
    return max(1, min(cores // max(1, parallel_jobs), auto_threads(cores)))
