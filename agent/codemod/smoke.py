"""The smoke test of a change before it is committed: compile + import, then a few training steps.

Both stages run as subprocesses from the study's worktree (never in the agent's process, so a change cannot
crash or patch the agent), with the worktree first on PYTHONPATH, no secrets in the environment, no bytecode
written into the worktree, and a wall-clock limit after which the whole process group is killed. With `confine`
(the handler's bubblewrap sandbox, agent.codemod.sandbox) each stage runs confined: stage 1 writes nowhere, stage 2
only into its run dir. A confined stage whose output reports a write the sandbox refused ("Read-only file
system": e.g. a native writer that logs the error instead of raising it) fails too: a change that tries to
write outside its run dir is discarded, not merely neutralised.

1. import: every changed module compiles and imports, and is imported *from the worktree* (an import that
   resolved to another copy of the package would test the wrong code);
2. train: `python train.py <node config> <codemod.smoke.overrides>` (default: a few steps on discs_small on the
   CPU) must write a metrics.json with status ok and a finite R².
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.runs.runner import SECRET_ENV, plain_path

#: what the kernel says to a write outside a confined process's run dir (agent.codemod.sandbox)
_REFUSED = "Read-only file system"
#: (command, the one directory it may write or None) -> the command as it will run (e.g. inside a sandbox)
Confine = Callable[[list[str], Path | None], list[str]]

IMPORT_CHECK = r"""
import importlib, os, sys, traceback
root = os.path.realpath(sys.argv[1])
files, mods = sys.argv[2].split(",") if sys.argv[2] else [], sys.argv[3].split(",") if sys.argv[3] else []
try:
    for f in files:
        with open(os.path.join(root, f), encoding="utf-8") as fh:
            compile(fh.read(), f, "exec")
    for m in mods:
        mod = importlib.import_module(m)
        where = os.path.realpath(getattr(mod, "__file__", "") or "")
        if not where.startswith(root + os.sep):
            print(f"SMOKE: {m} was imported from {where}, not from the study worktree {root}")
            sys.exit(3)
except SyntaxError as e:
    print(f"SMOKE: SyntaxError: {e.msg} ({e.filename}, line {e.lineno})")
    sys.exit(2)
except BaseException as e:
    traceback.print_exc()
    print(f"SMOKE: {type(e).__name__}: {' '.join(str(e).split())[:300]}")
    sys.exit(2)
print("SMOKE: ok")
"""


@dataclass
class SmokeResult:
    ok: bool
    stage: str            # "import" | "train" | "" (all passed)
    reason: str
    seconds: float
    log: str              # path of the stage's log


def module_name(path: str) -> str | None:
    """`mpm_inr/models/siren.py` -> `mpm_inr.models.siren`; None for non-Python files."""
    if not path.endswith(".py"):
        return None
    parts = path[:-3].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) if parts else None


def smoke_env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(work)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("WANDB_MODE", "disabled")
    env.setdefault("HYDRA_FULL_ERROR", "1")
    return env


def _run(cmd: list[str], cwd: Path, log: Path, timeout_s: float) -> tuple[int | None, str]:
    """(return code or None on timeout, output tail) of a command run in its own process group."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as fh:
        fh.write(("$ " + " ".join(cmd) + "\n").encode())
        fh.flush()
        proc = subprocess.Popen(cmd, cwd=str(cwd), env=smoke_env(cwd), stdin=subprocess.DEVNULL, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc: int | None = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the group: Hydra / dataloader children included
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
    return rc, log.read_text(errors="replace")[-4000:]


def _refused_write(log: Path) -> str | None:
    """The last line of a confined stage's log that reports a write the sandbox refused (None: none)."""
    hits = [ln.strip() for ln in log.read_text(errors="replace").splitlines()[1:] if _REFUSED in ln]
    return hits[-1][:300] if hits else None


def _reason(tail: str) -> str:
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("SMOKE: "):
            return ln[len("SMOKE: "):]
    for ln in reversed(lines[-60:]):
        if "Error" in ln or "error" in ln or "Exception" in ln:
            return ln[:300]
    return lines[-1][:300] if lines else "no output"


def run_smoke(work: Path, changed: Sequence[str], train_overrides: Sequence[str] | None, *, log_dir: Path,
              timeout_s: float, python: str = sys.executable, confine: Confine | None = None) -> SmokeResult:
    """Run the smoke test of the change in `work` (see module docstring); `train_overrides` None skips stage 2."""
    def wrapped(cmd: list[str], write: Path | None) -> list[str]:
        return confine(cmd, write) if confine else cmd

    t0 = time.time()
    files = [p for p in changed if p.endswith(".py") and (work / p).exists()]
    mods = [m for m in (module_name(p) for p in files) if m]
    log = log_dir / "import.log"
    cmd = [python, "-c", IMPORT_CHECK, str(work), ",".join(files), ",".join(mods)]
    rc, tail = _run(wrapped(cmd, None), work, log, timeout_s)
    refused = _refused_write(log) if confine else None
    if rc != 0 or refused:
        why = f"timed out after {timeout_s:g} s" if rc is None else _reason(tail) if rc != 0 else \
            f"the change wrote outside its run dir, which the sandbox refused: {refused}"
        return SmokeResult(False, "import", why, time.time() - t0, str(log))
    if train_overrides is None:
        return SmokeResult(True, "", "", time.time() - t0, str(log))
    run_dir = log_dir / "run"
    log = log_dir / "train.log"
    left = max(1.0, timeout_s - (time.time() - t0))
    cmd = [python, str(work / "train.py"), *train_overrides, f"hydra.run.dir={plain_path(run_dir, 'smoke run dir')}"]
    run_dir.mkdir(parents=True, exist_ok=True)
    rc, tail = _run(wrapped(cmd, run_dir), work, log, left)
    metrics = _read(run_dir / "metrics.json")
    if rc is None:
        return SmokeResult(False, "train", f"timed out after {timeout_s:g} s", time.time() - t0, str(log))
    refused = _refused_write(log) if confine else None
    if refused:
        return SmokeResult(False, "train", f"the change wrote outside its run dir, which the sandbox refused: "
                                           f"{refused}", time.time() - t0, str(log))
    if metrics is None:
        return SmokeResult(False, "train", f"no metrics.json (exit code {rc}): {_reason(tail)}", time.time() - t0,
                           str(log))
    r2 = metrics.get("final_r2")
    if metrics.get("status") != "ok":
        return SmokeResult(False, "train", f"status {metrics.get('status')}: {metrics.get('error') or _reason(tail)}",
                           time.time() - t0, str(log))
    if not isinstance(r2, (int, float)) or isinstance(r2, bool) or not math.isfinite(r2):
        return SmokeResult(False, "train", f"final_r2 is {r2!r}", time.time() - t0, str(log))
    return SmokeResult(True, "", "", time.time() - t0, str(log))


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
