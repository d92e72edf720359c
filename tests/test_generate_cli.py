"""`python generate.py ...`: success path, caching, and one-line errors (no traceback) for bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from mpm_inr.data import open_dataset
from mpm_inr.data.generate import generate_from_config
from mpm_inr.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def compose_generate(overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="generate", overrides=overrides)


def generate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, str(REPO / "generate.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_generate_writes_then_reuses_dataset(tmp_path):
    args = ("scenario=discs_small", "seed=3", "scenario.n_frames=30", f"root={tmp_path / 'data'}")
    r = generate(tmp_path, *args)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "data" / "discs_small_seed3"
    ds = open_dataset(out)
    assert ds.n_frames == 30 and ds.meta["seed"] == 3
    assert "step/s" in r.stderr or "step" in r.stderr  # the tqdm bar with a rate
    assert "generated" in r.stdout
    r2 = generate(tmp_path, *args)
    assert r2.returncode == 0 and "cached" in r2.stdout
    digest = ds.meta["fingerprint"]["sha256"]
    assert f"fingerprint {digest[:16]}" in r.stdout and f"fingerprint {digest[:16]}" in r2.stdout
    r3 = generate(tmp_path, *args, "verify=true")
    assert r3.returncode == 0 and f"fingerprint {digest[:16]} verified" in r3.stdout
    with open(out / "Jp.npy", "r+b") as fh:  # one flipped bit in the last value
        fh.seek(-1, os.SEEK_END)
        last = fh.read(1)
        fh.seek(-1, os.SEEK_END)
        fh.write(bytes([last[0] ^ 1]))
    r4 = generate(tmp_path, *args, "verify=true")
    assert r4.returncode == 2 and r4.stderr.count("\n") == 1
    assert r4.stderr.startswith(f"error: dataset {out}: the data of Jp.npy changed after it was written")


def test_bad_seed_exits_2_with_one_line_error(tmp_path):
    r = generate(tmp_path, "scenario=discs_small", "seed=abc", f"root={tmp_path / 'data'}")
    assert r.returncode == 2
    assert r.stderr == "error: seed must be a non-negative integer, got 'abc'\n"
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("overrides, needle", [
    (["seed=-1"], "seed must be a non-negative integer"),
    (["seed=1.5"], "seed must be a non-negative integer"),
    (["device=gpu"], "device must be one of cpu, cuda, auto"),
    (["overwrite=maybe"], "overwrite must be true or false"),
    (["scenario.physics.dt=-1"], "scenario.physics.dt must be >"),
    (["scenario.init.radius=0.3"], "wall band"),
    (["threads=0"], "threads=0 is out of range"),
    (["threads=100000"], "threads=100000 is out of range"),
    (["verify=yes"], "verify must be true or false"),
])
def test_bad_config_values_raise_user_error(tmp_path, overrides, needle):
    """What generate.py prints as `error: ...` (in-process: the same function, without a subprocess each)."""
    cfg = compose_generate(["scenario=discs_small", "scenario.n_frames=5", f"root={tmp_path / 'data'}",
                            "progress=false", *overrides])
    with pytest.raises(UserError) as e:
        generate_from_config(cfg)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "data" / "discs_small_seed0").exists()


def test_unwritable_root(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a directory")
    r = generate(tmp_path, "scenario=discs_small", "scenario.n_frames=5", f"root={blocker / 'data'}")
    assert r.returncode == 2 and r.stderr.startswith("error: cannot create dataset root")
    assert "root=" in r.stderr and "Traceback" not in r.stderr


def test_unknown_scenario_lists_choices(tmp_path):
    r = generate(tmp_path, "scenario=nope")
    assert r.returncode != 0
    assert "discs_3types" in r.stderr and "discs_small" in r.stderr and "collision" in r.stderr
    assert "Traceback" not in r.stderr
