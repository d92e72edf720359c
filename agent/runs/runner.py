"""Launch one round of training jobs as a single `python train.py --multirun` subprocess and collect results.

    python <code_dir>/train.py --multirun hydra/sweeper=mpm_inr_list hydra.sweeper.jobs_file=<round>/jobs.json
        hydra.sweeper.job_timeout_s=<per-run limit> hydra.sweep.dir=<study>/runs/round_0003
        hydra/launcher=<basic|joblib|submitit_local|submitit_slurm> hydra.launcher.<k>=<v> ...

Every job's run dir is fixed in advance (`hydra.sweep.subdir=node_0007` in its override list), so the agent reads
each job's `metrics.json` and `.agent_job.json` (written by the sweeper's job guard) while the round runs and
records each result as soon as the job has ended. Wall time is limited twice: per job inside the job (SIGALRM,
or submitit's `timeout_min`), and per round from outside (the whole process group is killed at the round
deadline; unfinished jobs become `timeout`). A job without a metrics.json is `crashed`, never assumed ok.

Each round runs in a fresh process (with batch=1, each training does), from `code_dir`, so code changes made
between rounds take effect. The child environment never contains ANTHROPIC_API_KEY, and nothing secret is put
on the command line. With `wrap` (code a policy modified: agent.codemod.sandbox) the multirun starts inside a
sandbox that may write only the round's sweep dir.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpm_inr.errors import UserError
from mpm_inr.threads import cpu_share

MARKER = ".agent_job.json"
LAUNCHERS = ("basic", "joblib", "submitit_local", "submitit_slurm")
SECRET_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
ROUND_ENV = "MPM_INR_AGENT_ROUND"
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")


@dataclass
class Job:
    node_id: int
    overrides: list[str]   # the complete, trusted override list for train.py (validated + agent-added)
    subdir: str            # run dir = sweep_dir / subdir


@dataclass
class JobResult:
    node_id: int
    status: str            # ok | diverged | failed | timeout | crashed
    error: str | None
    metrics: dict[str, Any]
    run_dir: str
    wandb_run_id: str | None = None


@dataclass
class LauncherSpec:
    """Which Hydra launcher runs a round's jobs, with its `hydra.launcher.*` parameters."""

    name: str = "basic"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in LAUNCHERS:
            raise UserError(f"unknown launcher '{self.name}'; choose one of {', '.join(LAUNCHERS)}")

    def parallel(self, n_jobs: int) -> int:
        """How many of the round's jobs run at once (for the round deadline)."""
        if self.name == "basic":
            return 1
        if self.name == "joblib":
            n = int(self.params.get("n_jobs") or n_jobs)
            return max(1, n if n > 0 else os.cpu_count() or 1)
        return max(1, min(n_jobs, int(self.params.get("array_parallelism") or n_jobs)))

    def cpu_threads_per_job(self, n_jobs: int, cores: int | None = None) -> int | None:
        """`trainer.cpu_threads` for each job of a round of n_jobs: this machine's cores split among the jobs
        that run on it at once (mpm_inr.threads.cpu_share), and no more than submitit_local's cpus_per_task.
        None for submitit_slurm, whose jobs run on other machines: `auto` there reads the job's own allocation
        (its CPU affinity)."""
        if self.name == "submitit_slurm":
            return None
        share = cpu_share(min(self.parallel(n_jobs), max(1, n_jobs)), cores)
        asked = self.params.get("cpus_per_task")
        return min(share, int(asked)) if self.name == "submitit_local" and asked else share


def plain_path(p: str | Path, what: str) -> str:
    """Absolute path usable verbatim inside a Hydra override (no quoting games)."""
    s = str(Path(p).resolve())
    if not _PLAIN_PATH.match(s):
        raise UserError(f"{what} path {s!r} has characters Hydra overrides cannot carry; use letters, digits, _ . - /")
    return s


def _hydra_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_hydra_value(x) for x in v) + "]"
    s = str(v)
    if not re.match(r"^[A-Za-z0-9_.:/+-]*$", s):
        raise UserError(f"launcher parameter value {s!r} is not a plain literal")
    return s


def child_env(code_dirs: Sequence[str | Path], token: str) -> dict[str, str]:
    """The environment of a round: secrets removed, code dirs first on PYTHONPATH, a round token for cleanup."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    paths = [str(Path(d).resolve()) for d in code_dirs]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env[ROUND_ENV] = token
    env.setdefault("HYDRA_FULL_ERROR", "1")
    return env


@dataclass
class RoundRunner:
    """Runs one round; see the module docstring."""

    code_dir: Path
    launcher: LauncherSpec
    per_run_s: float
    grace_s: float = 120.0
    python: str = sys.executable
    agent_dir: Path = Path(__file__).resolve().parents[2]
    poll_s: float = 0.2
    last_pid: int | None = None  # process (group) id of the latest multirun, for tests and diagnostics
    wrap: Callable[[list[str], Path], list[str]] | None = None  # (command, sweep dir) -> the confined command

    def command(self, jobs_file: Path, sweep_dir: Path, n_jobs: int) -> list[str]:
        cmd = [self.python, str(Path(self.code_dir) / "train.py"), "--multirun",
               "hydra/sweeper=mpm_inr_list",
               f"hydra.sweeper.jobs_file={plain_path(jobs_file, 'jobs file')}",
               f"hydra.sweeper.job_timeout_s={float(self.per_run_s):g}",
               f"hydra.sweep.dir={plain_path(sweep_dir, 'sweep dir')}",
               f"hydra/launcher={self.launcher.name}"]
        params = dict(self.launcher.params)
        if self.launcher.name == "joblib":
            params.setdefault("n_jobs", n_jobs)
        if self.launcher.name.startswith("submitit"):
            params.setdefault("timeout_min", math.ceil(self.per_run_s / 60.0) + 1)
        for k, v in sorted(params.items()):
            if not re.match(r"^[a-z_][a-z0-9_]*$", k):
                raise UserError(f"launcher parameter name {k!r} is not a plain identifier")
            cmd.append(f"hydra.launcher.{k}={_hydra_value(v)}")
        return cmd

    def deadline_s(self, n_jobs: int) -> float:
        waves = math.ceil(n_jobs / self.launcher.parallel(n_jobs))
        return self.per_run_s * waves + self.grace_s

    def run(self, sweep_dir: Path, jobs: Sequence[Job],
            on_launch: Callable[[dict[str, Any]], None] | None = None,
            on_done: Callable[[JobResult], None] | None = None) -> list[JobResult]:
        """Run the jobs; `on_launch(info)` fires just before each multirun process starts, `on_done(result)` once
        per job as soon as it ended.

        Jobs that never started because a sibling took the whole multirun down (possible with the basic launcher,
        where all jobs share one process: a SIGKILL or an out-of-memory kill of one ends the rest) are launched
        once more in a second multirun; they never ran, so nothing is duplicated.
        """
        sweep_dir = Path(sweep_dir)
        results: dict[int, JobResult] = {}
        todo = list(jobs)
        for attempt in (1, 2):
            done, never = self._run_once(sweep_dir, todo, attempt, on_launch, on_done, last=attempt == 2)
            results.update(done)
            if not never:
                break
            todo = never
        return [results[j.node_id] for j in jobs]

    def _run_once(self, sweep_dir: Path, jobs: Sequence[Job], attempt: int,
                  on_launch: Callable[[dict[str, Any]], None] | None,
                  on_done: Callable[[JobResult], None] | None, last: bool) -> tuple[dict[int, JobResult], list[Job]]:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        jobs_file = sweep_dir / ("jobs.json" if attempt == 1 else f"jobs_{attempt}.json")
        tmp = jobs_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([j.overrides + [f"hydra.sweep.subdir={j.subdir}"] for j in jobs], indent=1))
        os.replace(tmp, jobs_file)
        cmd = self.command(jobs_file, sweep_dir, len(jobs))
        if self.wrap is not None:
            cmd = self.wrap(cmd, sweep_dir)
        token = uuid.uuid4().hex
        log_path = sweep_dir / "multirun.log"
        if on_launch:  # BEFORE the process exists: a restarted agent can then always find (and stop) it by token
            on_launch({"token": token, "jobs_file": str(jobs_file), "attempt": attempt,
                       "node_ids": [j.node_id for j in jobs],
                       "run_dirs": {j.node_id: str(sweep_dir / j.subdir) for j in jobs}, "command": cmd,
                       "deadline_s": self.deadline_s(len(jobs))})
        with open(log_path, "ab") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            proc = subprocess.Popen(cmd, cwd=str(self.code_dir), env=child_env([self.code_dir, self.agent_dir], token),
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.last_pid = proc.pid
        deadline = time.time() + self.deadline_s(len(jobs))
        pending = {j.node_id: j for j in jobs}
        results: dict[int, JobResult] = {}
        never: list[Job] = []
        killed = False

        def collect(final: bool) -> None:
            for nid, job in list(pending.items()):
                run_dir = sweep_dir / job.subdir
                marker = read_json(run_dir / MARKER)
                if not final and not (marker and "ended" in marker):
                    continue
                del pending[nid]
                if final and not last and not killed and marker is None and not (run_dir / "metrics.json").exists():
                    never.append(job)
                    continue
                res = classify(nid, run_dir, marker, killed=killed, rc=proc.returncode, log_path=log_path)
                results[nid] = res
                if on_done:
                    on_done(res)

        while True:
            collect(final=False)
            rc = proc.poll()
            if rc is not None and (not pending or not group_alive(proc.pid)):
                break
            if time.time() > deadline:
                kill_group(proc.pid, token, proc=proc)
                killed = True
                proc.wait()
                break
            time.sleep(self.poll_s)
        if not killed and group_alive(proc.pid):  # leftovers after the sweeper exited: never leave orphans
            kill_group(proc.pid, token, proc=proc)
        collect(final=True)
        return results, never


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _last_error_line(log_path: Path) -> str:
    try:
        lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    for ln in reversed(lines[-200:]):
        if "error" in ln.lower() or "Error" in ln or "Killed" in ln:
            return ln[:300]
    return lines[-1][:300] if lines else ""


def classify(node_id: int, run_dir: Path, marker: dict[str, Any] | None, *, killed: bool, rc: int | None,
             log_path: Path) -> JobResult:
    """One job's outcome from its metrics.json and guard marker (see module docstring for the rules)."""
    metrics = read_json(run_dir / "metrics.json")
    rd = str(run_dir)
    if marker and marker.get("outcome") == "timeout":
        return JobResult(node_id, "timeout", marker.get("error"), metrics or {}, rd,
                         (metrics or {}).get("wandb_run_id"))
    if metrics is not None:
        status = metrics.get("status")
        err = metrics.get("error")
        if status not in ("ok", "diverged", "failed"):
            return JobResult(node_id, "crashed", f"metrics.json has unknown status {status!r}", metrics, rd)
        if status == "ok":
            r2 = metrics.get("final_r2")
            if not isinstance(r2, (int, float)) or isinstance(r2, bool) or not math.isfinite(r2):
                status, err = "failed", f"metrics.json says ok but final_r2 is {r2!r}"
        return JobResult(node_id, status, err, metrics, rd, metrics.get("wandb_run_id"))
    started = bool(marker and "started" in marker)
    ended = bool(marker and "ended" in marker)
    if killed and started and not ended:
        return JobResult(node_id, "timeout", "killed at the round deadline", {}, rd)
    if not started:
        why = "killed at the round deadline before it started" if killed else f"never started (multirun exit code {rc})"
        tail = _last_error_line(log_path)  # the multirun itself failed: its log says why
        why += f"; log: {tail}" if tail else ""
    elif not ended:
        why = "the process died (killed by a signal, or out of memory)"
    else:
        why = (marker or {}).get("error") or "the job ended without writing it"
    return JobResult(node_id, "crashed", f"no metrics.json: {why}"[:500], {}, rd)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _round_pids(token: str) -> list[int]:
    """Processes (Linux /proc) whose environment carries this round's token: the round's whole tree."""
    needle = f"{ROUND_ENV}={token}".encode()
    pids = []
    proc = Path("/proc")
    if not proc.is_dir():
        return pids
    for d in proc.iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            env = (d / "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            pids.append(int(d.name))
    return pids


def kill_group(pgid: int | None, token: str | None, grace_s: float = 5.0,
               proc: subprocess.Popen | None = None) -> None:
    """SIGTERM then SIGKILL the round's process group and any process carrying its token (escaped children).
    `proc` (the group leader, our child) is reaped while waiting, so its zombie does not count as alive."""
    def send(sig: int) -> None:
        if pgid is not None:
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in _round_pids(token) if token else []:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    send(signal.SIGTERM)
    end = time.time() + grace_s
    while time.time() < end:
        if proc is not None:
            proc.poll()
        alive = (pgid is not None and group_alive(pgid)) or bool(token and _round_pids(token))
        if not alive:
            return
        time.sleep(0.1)
    send(signal.SIGKILL)


def round_alive(token: str | None) -> bool:
    return bool(token and _round_pids(token))
