"""Dataset generation hit from the outside, for real: Ctrl-C (SIGINT) of `generate.py` and of a `train.py` that
generates its missing dataset, a disk that fills up meanwhile (a small tmpfs that another process fills), and
two processes that need the same missing dataset at once (one waits for the other's lock and reuses its
dataset; kill -9 of the one generating lets the waiter generate it).

Each must end with one `error: ...` line (progress bars aside) and no partial dataset, temporary directory or
lock file in the data root. The tmpfs needs a private mount namespace (`unshare -m`, root or CAP_SYS_ADMIN);
without one those rows are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpm_inr.data import dataset_dir, open_dataset

from .harness import REPO, base_env, kill9, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]
GENERATE = [sys.executable, str(REPO / "generate.py"), "scenario=discs_small", "seed=0"]
TRAIN = [sys.executable, str(REPO / "train.py"), "scenario=discs_small", "trainer=cpu", "logger=none",
         "data.n_training_frames=20", "train.total_steps=10", "outputs.plot=false", "outputs.checkpoint=false"]
_BAR = re.compile(r"seed \d+:\s+\d+%\|")  # the generator's tqdm bar


def error_lines(stderr: str) -> list[str]:
    """stderr's lines without the progress bar's redraws."""
    return [ln for ln in re.split(r"[\r\n]", stderr) if ln.strip() and not _BAR.search(ln)]


def leftovers(root: Path) -> list[str]:
    """What a generation left in the data root besides complete datasets: temp dirs, lock files."""
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".")) if root.exists() else []


def started(root: Path) -> bool:
    """The generator has its temporary directory: it holds the lock and is simulating."""
    return root.exists() and any(".tmp-" in p.name for p in root.iterdir())


class Proc:
    """A child process with stdout and stderr in files, readable while it runs."""

    def __init__(self, cmd: list[str], tmp: Path, name: str) -> None:
        self.out, self.err = tmp / f"{name}.out", tmp / f"{name}.err"
        with open(self.out, "w") as o, open(self.err, "w") as e:
            self.p = subprocess.Popen(cmd, cwd=tmp, env=base_env(), stdin=subprocess.DEVNULL, stdout=o, stderr=e)

    def wait(self, timeout: float = 300) -> tuple[int, str, str]:
        rc = self.p.wait(timeout)
        return rc, self.out.read_text(), self.err.read_text()


# ------------------------------------------------------------------------------------------------ Ctrl-C
def _interrupt(cmd: list[str], root: Path, tmp: Path, name: str, delay: float) -> tuple[int, str] | None:
    """SIGINT `delay` s after the generator started writing; (exit code, stderr), None if it finished first."""
    proc = Proc(cmd, tmp, name)
    wait_for(lambda: proc.p.poll() is not None or started(root), 300)
    wait_for(lambda: proc.p.poll() is not None, delay)
    if proc.p.poll() is not None:
        proc.wait()
        return None
    proc.p.send_signal(signal.SIGINT)
    rc, _, err = proc.wait()
    return rc, err


@pytest.mark.parametrize("tool", ["generate.py", "train.py"])
def test_ctrl_c_while_generating(tool, tmp_path, rng, fault_row):
    trials, problems, lines = 0, [], set()
    for i in range(4 if tool == "generate.py" else 2):
        root = tmp_path / f"d{i}"
        if tool == "generate.py":
            cmd = GENERATE + ["scenario.n_frames=3000", f"root={root}", "progress=false",
                              f"hydra.run.dir={tmp_path / f'h{i}'}"]
        else:
            cmd = TRAIN + ["scenario.n_frames=3000", f"data.root={root}", f"hydra.run.dir={tmp_path / f'r{i}'}"]
        res = _interrupt(cmd, root, tmp_path, f"{tool}{i}", rng.uniform(0.0, 1.5))
        if res is None:
            continue  # generation finished before the signal: not an interruption
        trials += 1
        rc, err = res
        errs = error_lines(err)
        lines.add(errs[-1] if errs else "")
        left = leftovers(root) + (["the dataset"] if dataset_dir(root, "discs_small", 0).exists() else [])
        if rc != 130 or len(errs) != 1 or not errs[0].startswith("error: interrupted; ") or left:
            problems.append(f"trial {trials}: exit {rc}, stderr {err.strip()[-400:]!r}, left {left}")
    fault_row(f"Ctrl-C of {tool} while it generates a dataset", trials=trials, survived=trials - len(problems),
              notes=f"SIGINT 0-1.5 s into writing discs_small (3000 frames): exit 130, {' / '.join(sorted(lines))}; "
                    f"no dataset, temp dir or lock file left (before: a 23-47-line traceback)"
                    + ("; PROBLEMS: " + " | ".join(problems) if problems else ""))
    assert trials >= 1, "every generation finished before its signal"
    assert not problems, problems


# ------------------------------------------------------------------------------------------------ full disk
FILL_DRIVER = r'''
"""Inside a private mount namespace with a tmpfs at argv[1]: run argv[3:], fill the tmpfs once the generator has
started writing under argv[2], report what happened as JSON."""
import json, os, pathlib, subprocess, sys, time
mnt, root, cmd = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:]
root.mkdir(parents=True)
fh = open(mnt / "filler", "wb", buffering=0)  # unbuffered: no failing flush at close
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
end = time.time() + 300
while p.poll() is None and time.time() < end and not any(".tmp-" in q.name for q in root.iterdir()):
    time.sleep(0.01)
free_at_start, filled = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize, 0
with fh:  # another job takes the rest of the disk
    try:
        while True:
            fh.write(b"\0" * 2**16)
            filled += 2**16
    except OSError:
        pass
out, err = p.communicate(timeout=300)
metrics = mnt / "run" / "metrics.json"
print(json.dumps({"rc": p.returncode, "stderr": err, "filled": filled, "free_at_start": free_at_start, "root": sorted(os.listdir(root)),
                  "metrics": json.loads(metrics.read_text()) if metrics.exists() else None}))
'''


@pytest.fixture(scope="module")
def tmpfs_ok(tmp_path_factory) -> None:
    mnt = tmp_path_factory.mktemp("probe")
    try:
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            f"mount -t tmpfs -o size=1m tmpfs {mnt}"], check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"no private mount namespace for a small tmpfs: {e}")
    if r.returncode != 0:
        pytest.skip(f"no private mount namespace for a small tmpfs (needs root or CAP_SYS_ADMIN): {r.stderr.strip()}")


def _on_full_tmpfs(cmd: list[str], mnt: Path) -> dict:
    mnt.mkdir()
    script = mnt.parent / "fill_driver.py"
    script.write_text(FILL_DRIVER)
    inner = " ".join(map(shlex.quote, [sys.executable, str(script), str(mnt), str(mnt / "data"), *cmd]))
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        f"mount -t tmpfs -o size=64m tmpfs {shlex.quote(str(mnt))} && exec {inner}"],
                       env=base_env(), capture_output=True, text=True, timeout=600, cwd=mnt.parent, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("tool", ["generate.py", "train.py"])
def test_disk_fills_up_while_generating(tool, tmp_path, tmpfs_ok, fault_row):
    """1000 frames of discs_small (61.2 MB) into a 64 MB tmpfs: the free-space check passes, then another
    process takes the rest of the disk while the simulator runs, and the first chunk write gets ENOSPC."""
    mnt = tmp_path / "mnt"
    if tool == "generate.py":
        cmd = GENERATE + ["scenario.n_frames=1000", f"root={mnt / 'data'}", "progress=false",
                          f"hydra.run.dir={tmp_path / 'h'}"]
    else:  # its run dir on the full disk too: metrics.json must still be written
        cmd = TRAIN + ["scenario.n_frames=1000", f"data.root={mnt / 'data'}", f"hydra.run.dir={mnt / 'run'}"]
    res = _on_full_tmpfs(cmd, mnt)
    errs = error_lines(res["stderr"])
    line = errs[-1] if errs else ""
    want = (f"error: no space left on device under dataset root {mnt / 'data'} while writing discs_small_seed0, "
            f"which needs 61.2 MB (1000 frames x 900 particles x 17 float32 values")
    ok = res["rc"] == 2 and len(errs) == 1 and line.startswith(want) and res["root"] == [] and res["filled"] > 0
    if tool == "train.py":
        m = res["metrics"] or {}
        ok = ok and m.get("status") == "failed" and (m.get("error") or "").startswith("no space left")
    fault_row(f"disk full while {tool} generates a dataset", trials=1, survived=int(ok),
              notes=f"64 MB tmpfs, filled by another process mid-generation: exit {res['rc']}, "
                    f"'{line.replace(str(mnt / 'data'), '<root>')[:170]}...'; data root left {res['root'] or 'empty'}"
                    + ("; metrics.json status failed with the same error" if tool == "train.py" else ""))
    assert ok, res


# ------------------------------------------------------------------------------------------------ two at once
def test_two_generators_of_one_dataset(tmp_path, fault_row):
    """The second waits for the first's lock, prints one line naming its pid, and reuses its dataset."""
    problems, trials, notes = [], 0, ""
    for i in range(2):
        root = tmp_path / f"d{i}"
        cmd = GENERATE + ["scenario.n_frames=2000", f"root={root}", "progress=false"]
        first = Proc(cmd + [f"hydra.run.dir={tmp_path / f'a{i}'}"], tmp_path, f"first{i}")
        wait_for(lambda first=first, root=root: first.p.poll() is not None or started(root), 300)
        if first.p.poll() is not None:
            problems.append(f"trial {i}: the first generator ended before the second started")
            continue
        t0 = time.time()
        second = Proc(cmd + [f"hydra.run.dir={tmp_path / f'b{i}'}"], tmp_path, f"second{i}")
        (rc1, out1, _), (rc2, out2, err2) = first.wait(), second.wait()
        trials += 1
        waited = f"waiting for another process (pid {first.p.pid}) to finish generating {root / 'discs_small_seed0'}"
        ok = (rc1 == rc2 == 0 and "generated in" in out1 and "made by another process while this one waited" in out2
              and err2.strip() == f"{waited}; it is reused then" and leftovers(root) == []
              and open_dataset(dataset_dir(root, "discs_small", 0)).n_frames == 2000)
        if not ok:
            problems.append(f"trial {i}: exits {rc1}/{rc2}, second said {out2.strip()[-200:]!r} / {err2[-300:]!r}")
        notes = f"second took {time.time() - t0:.1f} s, said '{err2.strip().replace(str(root), '<root>')}'"
    fault_row("two generate.py for the same dataset at once", trials=trials, survived=trials - len(problems),
              notes=f"discs_small 2000 frames; one simulated, the other waited on the flock and reused it "
                    f"(before: both simulated, one discarded its copy); {notes}"
                    + ("; PROBLEMS: " + " | ".join(problems) if problems else ""))
    assert trials == 2 and not problems, problems


def test_kill_9_of_the_generator_a_second_one_waits_for(tmp_path, rng, fault_row):
    """kill -9 of the lock holder: the kernel drops its flock, the waiter takes over, removes the dead one's
    temporary directory and lock file, and generates the dataset itself.

    The holder is paused (SIGSTOP) while the second starts: on a busy machine the second's start-up (imports)
    outlasts the whole 2 000-frame simulation, so without the pause there was often nothing left to kill. It
    then runs on for a random moment and is stopped again; the kill counts only if it is still simulating
    (its temporary directory there, nothing committed), which a stopped process cannot change."""
    problems, trials, skipped = [], 0, 0
    for i in range(2):
        root = tmp_path / f"d{i}"
        cmd = GENERATE + ["scenario.n_frames=2000", f"root={root}", "progress=false"]
        first = Proc(cmd + [f"hydra.run.dir={tmp_path / f'a{i}'}"], tmp_path, f"first{i}")
        wait_for(lambda first=first, root=root: first.p.poll() is not None or started(root), 300)
        if first.p.poll() is not None:
            problems.append(f"trial {i}: the first generator ended before it held the lock: {first.wait()[2][-300:]!r}")
            continue
        os.kill(first.p.pid, signal.SIGSTOP)
        second = Proc(cmd + [f"hydra.run.dir={tmp_path / f'b{i}'}"], tmp_path, f"second{i}")
        wait_for(lambda second=second: "waiting for" in second.err.read_text() or second.p.poll() is not None, 120)
        os.kill(first.p.pid, signal.SIGCONT)
        time.sleep(rng.uniform(0.0, 0.5))
        os.kill(first.p.pid, signal.SIGSTOP)
        if not started(root) or dataset_dir(root, "discs_small", 0).exists():
            os.kill(first.p.pid, signal.SIGCONT)
            first.wait()
            second.wait()
            skipped += 1
            continue  # the first committed its dataset before the kill point: nothing to take over
        kill9(first.p)
        trials += 1
        rc2, out2, err2 = second.wait()
        ok = (rc2 == 0 and "generated in" in out2 and "waiting for" in err2 and leftovers(root) == []
              and open_dataset(dataset_dir(root, "discs_small", 0)).n_frames == 2000)
        if not ok:
            problems.append(f"trial {i}: exit {rc2}, {out2.strip()[-200:]!r} / {err2[-300:]!r}, "
                            f"left {leftovers(root)}")
    fault_row("kill -9 of a generator another one waits for", trials=trials, survived=trials - len(problems),
              notes="the flock died with its holder; the waiter removed the dead one's temp dir and lock file and "
                    "generated the dataset itself"
                    + (f"; {skipped} trial(s) had committed before the kill point" if skipped else "")
                    + ("; PROBLEMS: " + " | ".join(problems) if problems else ""))
    assert trials >= 1, "the first generator always finished before the kill point"
    assert not problems, problems

