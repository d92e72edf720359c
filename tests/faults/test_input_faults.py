"""Inputs that are right but unusual, through the real entry points: a dataset on a read-only mount must train
(nothing needs writing), and a plain run of train.py or generate.py must print no warning a user has to read.

The read-only case needs a real read-only file system: as root, chmod stops nothing, so the dataset is bind-mounted
read-only in a private mount namespace (`unshare -m`), which needs root; elsewhere the test is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mpm_inr.data import ensure_dataset

from .harness import REPO, base_env

pytestmark = [pytest.mark.slow]
N_FRAMES = 40
TINY_RUN = ["scenario=discs_small", f"scenario.n_frames={N_FRAMES}", "field=F", "data.n_training_frames=20",
            "trainer=cpu", "logger=none", "train.total_steps=20", "train.steps_per_call=10", "train.eval_every=10",
            "outputs.plot=false", "outputs.checkpoint=false"]
# what Python prints for a warning (`<file>:<line>: FutureWarning: ...`), or a library's own deprecation notice
WARNING_LINE = re.compile(r"\b\w*Warning\b|deprecat", re.IGNORECASE)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from mpm_inr.bench.compose import compose_train_config

    sc = compose_train_config(["scenario=discs_small"])["scenario"]
    sc["n_frames"] = N_FRAMES
    return ensure_dataset(sc, 0, tmp_path_factory.mktemp("data"), progress=False)


def _can_bind_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "true"], check=False, capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_bind_mount(), reason="needs root and unshare -m for a read-only bind mount")
def test_train_on_a_dataset_on_a_read_only_mount(dataset, tmp_path, fault_row):
    mount, run_dir = tmp_path / "ro", tmp_path / "run"
    mount.mkdir()
    train = [sys.executable, str(REPO / "train.py"), *TINY_RUN, f"data.root={mount}", f"hydra.run.dir={run_dir}"]
    script = (f"mount --bind {shlex.quote(str(dataset.parent))} {shlex.quote(str(mount))} && "
              f"mount -o remount,bind,ro {shlex.quote(str(mount))} && "
              f"! touch {shlex.quote(str(mount / 'probe'))} 2>/dev/null && exec {shlex.join(train)}")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], check=False, cwd=tmp_path, env=base_env(), capture_output=True,
                       text=True, timeout=300)
    m = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").exists() else {}
    ok = r.returncode == 0 and m.get("status") == "ok"
    last = r.stderr.strip().splitlines()[-1:] if not ok else []
    fault_row("train.py on a dataset on a read-only mount", trials=1, survived=int(ok),
              notes=f"exit {r.returncode}, status {m.get('status')}" + "".join(f"; {ln[:200]}" for ln in last))
    assert ok, r.stderr[-2000:]


def _warning_lines(text: str) -> list[str]:
    lines = (ln.strip() for ln in text.replace("\r", "\n").splitlines())
    return [ln for ln in lines if WARNING_LINE.search(ln)]


def test_plain_runs_print_no_warning(dataset, tmp_path, fault_row):
    """Every run used to print Lightning's LeafSpec FutureWarning, and with W&B wandb's 'anonymous' deprecation; a
    warning nobody acts on hides the ones that matter. generate.py (a fresh dataset) and train.py (on it, with the
    default W&B logger offline, as `make train` runs it) must print none."""
    env = base_env()
    gen = subprocess.run([sys.executable, str(REPO / "generate.py"), "scenario=discs_small",
                          f"scenario.n_frames={N_FRAMES}", "seed=1", f"root={tmp_path / 'data'}",
                          f"hydra.run.dir={tmp_path / 'g'}"], cwd=tmp_path, env=env, check=False, capture_output=True, text=True,
                         timeout=300)
    plain = [a for a in TINY_RUN if a != "logger=none"] + ["logger=wandb"]  # the default logger, offline (make train)
    train = subprocess.run([sys.executable, str(REPO / "train.py"), *plain, "data.seed=1",
                            f"data.root={tmp_path / 'data'}", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path,
                           env={**env, "WANDB_MODE": "offline"}, check=False, capture_output=True, text=True,
                           timeout=300)
    found = {name: _warning_lines(r.stdout + r.stderr) for name, r in (("generate.py", gen), ("train.py", train))}
    clean = [r.returncode == 0 and not found[name] for name, r in (("generate.py", gen), ("train.py", train))]
    fault_row("plain generate.py + train.py runs print no warning", trials=2, survived=sum(clean),
              notes=f"exits {gen.returncode}, {train.returncode}; " + " | ".join(ln for lines in found.values() for ln in lines)[:300])
    assert all(clean), (found, gen.stderr[-1000:], train.stderr[-1000:])
