"""Start a warm server in the background and wait until it answers: for `python -m mpm_inr.warm start` and for
the benchmark, which serves its commands from a private one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mpm_inr.warm.client import request
from mpm_inr.warm.protocol import REPO, SOCKET_ENV

START_TIMEOUT_S = 180.0  # the imports take 3-5 s on an idle 2-core machine; a loaded one can take far longer


class WarmStartError(RuntimeError):
    """The server exited or did not answer while starting (the message has its log's last lines)."""


def launch(path: Path, idle_s: float, log: Path, environ: Mapping[str, str] | None = None,
           timeout_s: float = START_TIMEOUT_S) -> tuple[subprocess.Popen, dict[str, Any]]:
    """`python -m mpm_inr.warm serve` on `path`, in its own session (a Ctrl-C in this terminal does not reach it),
    its output appended to `log`, in `environ` (default: this process's), which its callers' must match; the
    process and its status once it answers."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "mpm_inr.warm", "serve", "--idle", str(idle_s)],
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                   env={**(os.environ if environ is None else environ), SOCKET_ENV: str(path)}, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = request({"op": "status"}, path)
        if status is not None:
            return process, status
        if process.poll() is not None:
            tail = " ".join(log.read_text(errors="replace").strip().splitlines()[-2:])
            raise WarmStartError(f"the warm server exited {process.returncode} while starting: {tail} (log: {log})")
        time.sleep(0.1)
    process.terminate()
    raise WarmStartError(f"the warm server did not answer within {timeout_s:.0f} s (log: {log})")
