"""Test helper: SIGKILL an agent process mid-round, at chosen delays, the way a crashed node or an impatient user
would. Shared by the resume tests of plain studies and of planned studies."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from agent.study.journal import Journal


def launched(study_dir: Path) -> int:
    """How many `launched` events the study's journal holds (0 before it exists)."""
    try:
        return sum(e["event"] == "launched" for e in Journal(study_dir).read())
    except FileNotFoundError:
        return 0


def kill_after_launches(cmd: Sequence[str], study_dir: Path, delays: Sequence[float], cwd: Path) -> int:
    """Start `cmd` once per delay; as soon as it launches a new round, wait `delay` seconds and SIGKILL it.
    Returns how many runs were killed (a run that ended by itself before its kill is not counted)."""
    kills = 0
    for delay in delays:
        before = launched(study_dir)
        p = subprocess.Popen(list(cmd), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.time()
        while p.poll() is None and launched(study_dir) == before and time.time() - t0 < 60:
            time.sleep(0.05)
        time.sleep(delay)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.wait()
    return kills
