"""Dataset generation under stress, fast versions: a full disk (ENOSPC injected into the writer), Ctrl-C
(KeyboardInterrupt injected into the simulator), and two generators of one dataset (the generation lock).
The real signals, a real full tmpfs and real concurrent processes are in tests/faults/test_generate_faults.py.
"""

from __future__ import annotations

import errno
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mpm_inr.cli import INTERRUPTED_EXIT, exit_on_interrupt
from mpm_inr.data import dataset_dir, ensure_dataset, open_dataset
from mpm_inr.data.dataset import NpyChunkWriter, dataset_nbytes, human_bytes
from mpm_inr.data.generate import _ensure_dataset, generate_dataset
from mpm_inr.data.lock import generation_lock, lock_path
from mpm_inr.errors import DatasetError

REPO = Path(__file__).resolve().parents[1]
N_FRAMES = 30


@pytest.fixture(scope="module")
def scenario() -> dict:
    from mpm_inr.bench.compose import compose_train_config

    sc = compose_train_config(["scenario=discs_small"])["scenario"]
    sc["n_frames"] = N_FRAMES
    return sc


def _leftovers(root: Path) -> list[str]:
    """Everything a generation left in its root besides complete datasets: temp dirs, lock files."""
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".")) if root.exists() else []


# ------------------------------------------------------------------------------------------------ full disk
@pytest.mark.parametrize("where", ["frames", "particles"])
def test_a_full_disk_is_one_line_naming_root_and_need(scenario, tmp_path, monkeypatch, where):
    """ENOSPC while writing frame chunks or the per-particle arrays: a DatasetError naming the root and the
    size the dataset needs, and nothing left behind."""
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "frames":
        monkeypatch.setattr(NpyChunkWriter, "write", no_space)
    else:
        monkeypatch.setattr("mpm_inr.data.dataset.np.save", no_space)
    root = tmp_path / "data"
    with pytest.raises(DatasetError) as e:
        ensure_dataset(scenario, 0, root, progress=False)
    msg = str(e.value)
    need = human_bytes(dataset_nbytes(N_FRAMES, 900))
    assert msg.startswith(f"no space left on device under dataset root {root} while writing discs_small_seed0")
    assert f"needs {need} ({N_FRAMES} frames x 900 particles x 17 float32 values" in msg
    assert "root=<dir>" in msg and "\n" not in msg
    assert e.value.__suppress_context__  # printed as one line: no 'during handling' chain
    assert not dataset_dir(root, "discs_small", 0).exists() and _leftovers(root) == []


def test_human_bytes():
    assert [human_bytes(n) for n in (900, 61_200_000, 6_120_000_000)] == ["900 bytes", "61.2 MB", "6.12 GB"]


# ------------------------------------------------------------------------------------------------ Ctrl-C
def test_ctrl_c_while_generating_is_one_line_and_leaves_nothing(scenario, tmp_path, interrupt_simulation, capsys):
    interrupt_simulation(10)
    root = tmp_path / "data"
    with pytest.raises(SystemExit) as e, exit_on_interrupt("no dataset was written"):
        ensure_dataset(scenario, 0, root, progress=True)
    err = capsys.readouterr().err
    assert e.value.code == INTERRUPTED_EXIT == 130
    assert err.endswith("\nerror: interrupted; no dataset was written\n")  # on its own line after the bar
    assert "Traceback" not in err
    assert not dataset_dir(root, "discs_small", 0).exists() and _leftovers(root) == []


# ------------------------------------------------------------------------------------------------ the lock
def _in_thread(fn, *args):
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def _wait(pred, timeout: float = 30.0) -> bool:
    """Poll until pred() is true once (preds that read captured output consume it)."""
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def _lock_and_check(target: Path) -> bool:
    with generation_lock(target):
        return lock_path(target).exists()


def test_a_second_generator_waits_for_the_first_and_reuses_its_dataset(scenario, tmp_path, capfd):
    root = tmp_path / "data"
    target = dataset_dir(root, "discs_small", 0)
    root.mkdir()
    with generation_lock(target):  # "the first generator"
        second, out = _in_thread(_ensure_dataset, scenario, 0, root, "cpu", False, False, None)
        assert _wait(lambda: "waiting for" in capfd.readouterr().err or not second.is_alive())
        assert second.is_alive() and not target.exists()
        generate_dataset(scenario, 0, target, progress=False)
    second.join(60)
    assert "error" not in out, out.get("error")
    path, how = out["value"]
    assert path == target and how == "made by another process while this one waited"
    assert open_dataset(target).n_frames == N_FRAMES and _leftovers(root) == []


def test_reading_an_existing_dataset_takes_no_lock(scenario, tmp_path):
    root = tmp_path / "data"
    target = ensure_dataset(scenario, 0, root, progress=False)
    with generation_lock(target):  # held "by a generator" (overwrite=true, say): readers go on
        reader, out = _in_thread(ensure_dataset, scenario, 0, root, "cpu", False)
        reader.join(30)
        assert not reader.is_alive() and out.get("value") == target


HOLD = """
import sys, time
from pathlib import Path
from mpm_inr.data.lock import generation_lock
with generation_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_kill_9_of_the_holder_releases_the_lock(tmp_path, capfd):
    target = tmp_path / "data" / "discs_small_seed0"
    target.parent.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(target)], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        waiter, out = _in_thread(_lock_and_check, target)
        assert _wait(lambda: f"(pid {holder.pid})" in capfd.readouterr().err)
        assert waiter.is_alive()
        holder.kill()  # SIGKILL: no cleanup runs in the holder, its lock file stays behind
        holder.wait()
        waiter.join(10)
        assert not waiter.is_alive() and out == {"value": True}
    finally:
        holder.kill()
        holder.wait()
    assert not lock_path(target).exists()  # the next holder removed it as it let go
