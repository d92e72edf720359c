"""`python -m mpm_inr.bench threads`: training time by torch CPU thread count, alone and beside a busy neighbour,
one job and a parallel round of several; the measurement behind `trainer.cpu_threads=auto` (mpm_inr.threads).

For each thread setting and each number of jobs at once, that many worker processes (mpm_inr.bench.threads_worker:
train.py's compose -> run_training path, each field's default recipe) start together, warm up, and then train
on the same `go`: first on the machine as it is ("idle"), then with one CPU-burning process per available core
("busy", a neighbour that never yields). Each figure comes with the machine's load: the 1-minute load average
at the start and the mean number of runnable threads while it ran (Linux /proc/loadavg; the jobs' own threads
included), since a machine shared with other work is never idle.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Self

import torch

from mpm_inr.bench.compose import compose_train_config
from mpm_inr.bench.threads_worker import PREFIX
from mpm_inr.data.generate import ensure_dataset
from mpm_inr.threads import AUTO_MAX_THREADS, auto_threads, available_cores

#: the variables that would pin the workers' threads behind the config's back
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
LOADS = ("idle", "busy")


@dataclass
class ThreadsSettings:
    threads: list[str] = dc_field(default_factory=lambda: ["1", "2", "default"])
    jobs: list[int] = dc_field(default_factory=lambda: [1, 2])
    loads: list[str] = dc_field(default_factory=lambda: list(LOADS))
    fields: list[str] = dc_field(default_factory=lambda: ["Jp", "C"])
    scenario: str = "discs_small"
    frames: int = 100
    root: str = "data"
    repeats: int = 1
    cap_s: float = 20.0  # training seconds per run at most (a capped run's time is a lower bound)

    def __post_init__(self) -> None:
        bad = [t for t in self.threads if t not in ("default", "auto") and not (t.isdigit() and int(t) >= 1)]
        if bad:
            raise ValueError(f"--threads takes positive integers, auto or default, got {', '.join(bad)}")
        if any(j < 1 for j in self.jobs) or not self.jobs:
            raise ValueError("--jobs takes positive integers")
        if [x for x in self.loads if x not in LOADS] or not self.loads:
            raise ValueError(f"--loads takes {' and/or '.join(LOADS)}")
        if self.repeats < 1:
            raise ValueError("--repeats must be >= 1")
        if not self.cap_s > 0:
            raise ValueError("--cap-s must be > 0")


def worker_env() -> dict[str, str]:
    """The workers' environment: no thread variables, so `default` is torch's own choice and the config rules."""
    return {k: v for k, v in os.environ.items() if k not in THREAD_ENV}


def torch_default_threads() -> int:
    """torch's own thread count in a fresh process (what `trainer.cpu_threads=null` gives)."""
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=worker_env(),
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def distinct_settings(requested: Sequence[str], default: int) -> list[str]:
    """The requested settings without repeats of one thread count (`default` and `auto` named by what they give)."""
    seen, out = set(), []
    for t in requested:
        n = default if t == "default" else auto_threads() if t == "auto" else int(t)
        if n not in seen:
            seen.add(n)
            out.append(t)
    return out


@contextmanager
def busy_neighbour(enabled: bool) -> Iterator[list[subprocess.Popen]]:
    """One CPU-burning process per available core for the duration of the block (stopped after, by pid)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(available_cores())] \
        if enabled else []
    try:
        time.sleep(1.0 if procs else 0.0)  # let them reach full speed
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait()


class RunnableSampler:
    """Mean runnable threads (the numerator of /proc/loadavg's 4th field) while a block runs; None off Linux."""

    def __init__(self, period_s: float = 0.2) -> None:
        self.period_s, self.samples = period_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.samples.append(int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]))
            except (OSError, IndexError, ValueError):
                return

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None


def _message(proc: subprocess.Popen) -> dict[str, Any]:
    """The worker's next protocol message (its other output is skipped)."""
    for line in proc.stdout:  # type: ignore[union-attr]
        if line.startswith(PREFIX):
            return json.loads(line[len(PREFIX):])
    raise RuntimeError(f"a benchmark worker exited (code {proc.wait()}) before answering; see threads_bench.log")


def measure(s: ThreadsSettings, threads: str, n_jobs: int, log: IO[str]) -> list[dict[str, Any]]:
    """Rounds of `n_jobs` workers with one thread setting: every load, `repeats` times each (workers' stderr to
    `log`)."""
    cmd = [sys.executable, "-m", "mpm_inr.bench.threads_worker", "--threads", threads, "--fields",
           ",".join(s.fields), "--scenario", s.scenario, "--root", s.root, "--frames", str(s.frames),
           "--cap-s", str(s.cap_s)]
    procs = [subprocess.Popen(cmd, env=worker_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                              text=True) for _ in range(n_jobs)]
    out = []
    try:
        ready = [_message(p) for p in procs]
        if not all(r["ready"] for r in ready):
            raise RuntimeError(f"warm-up failed: {next(r['error'] for r in ready if not r['ready'])}")
        for load in s.loads:
            for rep in range(s.repeats):
                with busy_neighbour(load == "busy"):
                    load1 = os.getloadavg()[0]
                    with RunnableSampler() as sampler:
                        t0 = time.perf_counter()
                        for p in procs:
                            p.stdin.write("go\n")  # type: ignore[union-attr]
                            p.stdin.flush()  # type: ignore[union-attr]
                        jobs = [_message(p)["runs"] for p in procs]
                        round_s = time.perf_counter() - t0
                out.append({"threads": threads, "jobs": n_jobs, "load": load, "repeat": rep, "load1_at_start": load1,
                            "mean_runnable": sampler.mean, "round_s": round_s, "per_job": jobs})
                print(summary_line(out[-1]), flush=True)
    finally:
        for p in procs:
            if p.stdin:
                p.stdin.close()
        for p in procs:
            p.wait()
    return out


def _field_runs(result: dict[str, Any], field: str) -> list[dict[str, Any]]:
    return [r for job in result["per_job"] for r in job if r["field"] == field and r["training_time_s"] is not None]


def _field_times(result: dict[str, Any], field: str) -> list[float]:
    return [r["training_time_s"] for r in _field_runs(result, field)]


def _time_cell(run: dict[str, Any]) -> str:
    t = run["training_time_s"]
    return f"≥{t:.1f} ({run['steps']}/{run['planned_steps']} steps)" if run["capped"] else f"{t:.2f}"


def ms_per_step(result: dict[str, Any], field: str) -> float | None:
    """Mean training milliseconds per step of a field over the round's jobs: comparable across rows even when
    the cap cut a run short."""
    runs = [r for r in _field_runs(result, field) if r["steps"]]
    return statistics.fmean(1e3 * r["training_time_s"] / r["steps"] for r in runs) if runs else None


def summary_line(r: dict[str, Any]) -> str:
    times = " ".join(f"{f}={statistics.fmean(ts):.2f}s" for f in dict.fromkeys(x["field"] for x in r["per_job"][0])
                     if (ts := _field_times(r, f)))
    return (f"threads={r['threads']} jobs={r['jobs']} load={r['load']}: training {times}; round {r['round_s']:.1f} s "
            f"(load1 {r['load1_at_start']:.2f})")


def _got(r: dict[str, Any]) -> str:
    runs = [x for job in r["per_job"] for x in job]
    got = {(x["cpu_threads"], x["cpu_interop_threads"]) for x in runs}
    return ", ".join(f"{a}/{b}" for a, b in sorted(got, key=str))


def markdown(results: dict[str, Any]) -> str:
    fields = results["settings"]["fields"]
    lines = [f"# Threads benchmark — {results['machine']} — torch {results['torch']} — {results['date']}", "",
             (f"`{results['command']}`: scenario `{results['settings']['scenario']}`, "
              f"{results['settings']['frames']} frames, each field's default recipe, dataset seed 0. "
              f"{results['cores']} cores available; torch's default is {results['torch_default_threads']} "
              f"threads; `auto` gives {results['auto_threads']} (AUTO_MAX_THREADS={results['auto_max_threads']})."),
             "",
             ("Training time is the run's optimisation loop (metrics.json `training_time`), one figure per job of the "
              "round; round is the wall time from `go` until the last job finished every field. Training stops at "
              f"{results['settings']['cap_s']:g} s (`--cap-s`, checked once per Lightning call of 50 steps): a "
              "capped time (≥, with the steps done) is a lower bound, so the slowdown is per step: ms/step against "
              "the same field's with 1 job and 1 thread under the same load. busy = one "
              "CPU-burning process per core beside the jobs. load1 = 1-minute load average at the start (it lags); "
              "runnable = mean runnable threads during the round, the jobs' own threads included."), "",
             ("| load | jobs at once | threads asked | got (intra/inter-op) | "
              + " | ".join(f"{f} training [s]" for f in fields)
              + " | round [s] | ms/step (" + ", ".join(fields) + ") | slowdown per step | load1 | runnable |"),
             "|---|---|---|---|" + "---|" * len(fields) + "---|---|---|---|---|"]
    base = {r["load"]: r for r in results["results"] if r["threads"] == "1" and r["jobs"] == 1}
    for r in sorted(results["results"], key=lambda r: (LOADS.index(r["load"]), r["jobs"], r["repeat"])):
        cells = []
        for f in fields:
            runs = _field_runs(r, f)
            cells.append(" / ".join(_time_cell(x) for x in runs) if runs else "failed")
        ref = base.get(r["load"])
        ms = [ms_per_step(r, f) for f in fields]
        ref_ms = [ms_per_step(ref, f) if ref else None for f in fields]
        slow = ", ".join(f"{a / b:.1f}x" if a and b else "-" for a, b in zip(ms, ref_ms))
        runnable = "-" if r["mean_runnable"] is None else f"{r['mean_runnable']:.1f}"
        lines.append(f"| {r['load']} | {r['jobs']} | {r['threads']} | {_got(r)} | " + " | ".join(cells)
                     + f" | {r['round_s']:.1f} | " + ", ".join("-" if m is None else f"{m:.1f}" for m in ms)
                     + f" | {slow} | {r['load1_at_start']:.2f} | {runnable} |")
    return "\n".join(lines) + "\n"


def machine() -> str:
    return f"cpu ({platform.processor() or platform.machine()}, {available_cores()} cores available)"


def run(s: ThreadsSettings, out_dir: str, command: str) -> dict[str, Any]:
    # the dataset first, once, so the workers never race to generate it
    ensure_dataset(compose_train_config([f"scenario={s.scenario}"])["scenario"], 0, s.root, progress=False, threads=1)
    default = torch_default_threads()
    results: dict[str, Any] = {
        "machine": machine(), "cores": available_cores(), "torch": torch.__version__, "command": command,
        "torch_default_threads": default, "auto_threads": auto_threads(), "auto_max_threads": AUTO_MAX_THREADS,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "settings": asdict(s), "results": []}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "threads_bench.log", "w") as log:
        for threads in distinct_settings(s.threads, default):
            for n_jobs in s.jobs:
                results["results"] += measure(s, threads, n_jobs, log)
                (out / "threads_bench.json").write_text(json.dumps(results, indent=2))
                (out / "threads_bench.md").write_text(markdown(results))
    print(markdown(results))
    return results
