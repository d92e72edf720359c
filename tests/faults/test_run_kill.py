"""A single train.py run killed -9 mid-fit: the processes it forked beside its fit (a cold window's baselines,
the field plot: mpm_inr.training.run._start_asides) die with it, none is left holding a core."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mpm_inr.threads import available_cores

from .harness import REPO, base_env, kill9, spawn, wait_for

pytestmark = [pytest.mark.slow]


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.update(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):  # a thread that ended after the listing
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(sys.platform != "linux" or available_cores() < 2,
                    reason="processes beside the fit: forked on Linux only, and only where the run leaves a core free")
def test_kill9_of_a_run_kills_its_processes_beside_the_fit(data_root, tmp_path, fault_row) -> None:
    run = spawn([sys.executable, str(REPO / "train.py"), "scenario=discs_small", f"data.root={data_root}",
                 "data.n_training_frames=44", "field=C", "trainer=cpu", "logger=none", "train.total_steps=1000000",
                 "trainer.cpu_threads=1", "outputs.beside_fit=always", f"hydra.run.dir={tmp_path / 'run'}"],
                base_env(PYTHONPATH=str(REPO)), tmp_path / "train.log", cwd=tmp_path)
    seen = wait_for(lambda: len(_children(run.pid)) >= 2 or run.poll() is not None, timeout=120)
    beside = _children(run.pid)
    kill9(run)
    gone = wait_for(lambda: not any(_alive(pid) for pid in beside), timeout=10)
    ok = seen and len(beside) >= 2 and gone
    fault_row("train.py killed -9 mid-fit: its baselines and plot processes die with it", trials=1, survived=int(ok),
              notes=f"{len(beside)} processes beside the fit, {sum(map(_alive, beside))} left")
    assert ok, (beside, (tmp_path / "train.log").read_text()[-2000:])
