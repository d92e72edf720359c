"""Corrupt, partial and half-written datasets: each is detected with a one-line error naming the fix, or
regenerated; none is ever trained on silently.

Corruptions of a small discs_small dataset: every .npy truncated at a random byte, a file longer than its header,
a float64 file, a garbage header, a missing file, a meta.json that disagrees with the shapes (n_frames, one
array's shape), a meta.json not marked complete, cut mid-write or missing, and non-finite values inside the
training window (in the field, and in the positions the network reads). Then the real paths: `python train.py`
on a truncated dataset, and `kill -9` of `python generate.py` mid-generation followed by a training-side
`ensure_dataset`, which must clean up and regenerate the identical dataset.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mpm_inr.data import dataset_dir, ensure_dataset, open_dataset
from mpm_inr.data.dataset import ALL_FIELDS, TMP_MARK, temp_prefix
from mpm_inr.errors import DatasetError, UserError

from .harness import REPO, base_env, kill9, one_line_error, spawn, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]
N_FRAMES = 40


def scenario(n_frames: int = N_FRAMES) -> dict:
    from mpm_inr.bench.compose import compose_train_config

    sc = compose_train_config(["scenario=discs_small"])["scenario"]
    sc["n_frames"] = n_frames
    return sc


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return ensure_dataset(scenario(), 0, tmp_path_factory.mktemp("pristine"), progress=False)


def _truncate(name: str, rng) -> Callable[[Path], str]:
    def corrupt(d: Path) -> str:
        f = d / f"{name}.npy"
        size = f.stat().st_size
        cut = rng.randrange(0, size)
        with open(f, "r+b") as fh:
            fh.truncate(cut)
        return f"{name}.npy cut to {cut} of {size} bytes"
    return corrupt


def _meta(change: Callable[[dict], None], what: str) -> Callable[[Path], str]:
    def corrupt(d: Path) -> str:
        meta = json.loads((d / "meta.json").read_text())
        change(meta)
        (d / "meta.json").write_text(json.dumps(meta))
        return what
    return corrupt


def _raw(fn: Callable[[Path], None], what: str) -> Callable[[Path], str]:
    def corrupt(d: Path) -> str:
        fn(d)
        return what
    return corrupt


def _set(meta: dict, path: tuple, value) -> None:
    for k in path[:-1]:
        meta = meta[k]
    meta[path[-1]] = value


def _append_zeros(d: Path) -> None:
    with open(d / "S.npy", "ab") as fh:
        fh.write(b"\0" * 64)


def corruptions(rng) -> list[tuple[str, Callable[[Path], str]]]:
    out = [(f"truncated {n}.npy", _truncate(n, rng)) for n in ALL_FIELDS]
    out += [
        ("bytes appended to S.npy", _raw(_append_zeros, "64 bytes appended")),
        ("F.npy rewritten as float64", _raw(lambda d: np.save(d / "F.npy", np.load(d / "F.npy").astype(np.float64)),
                                            "same shape, float64")),
        ("garbage .npy header", _raw(lambda d: (d / "v.npy").write_bytes(b"\x93NUMPY garbage" + b"\0" * 200),
                                     "v.npy header overwritten")),
        ("missing Jp.npy", _raw(lambda d: (d / "Jp.npy").unlink(), "Jp.npy deleted")),
        ("meta n_frames disagrees with the files", _meta(lambda m: _set(m, ("n_frames",), N_FRAMES + 1),
                                                         f"n_frames {N_FRAMES + 1}")),
        ("meta shape of C disagrees", _meta(lambda m: _set(m, ("arrays", "C", "shape"), [N_FRAMES, 900, 4]),
                                            "C shape [T, N, 4]")),
        ("meta not marked complete", _meta(lambda m: _set(m, ("complete",), False), "complete: false")),
        ("meta.json cut mid-write", _raw(lambda d: (d / "meta.json").write_text((d / "meta.json").read_text()[:200]),
                                         "first 200 characters kept")),
        ("meta.json missing", _raw(lambda d: (d / "meta.json").unlink(), "meta.json deleted")),
    ]
    return out


def test_corrupt_datasets_are_refused(pristine, tmp_path, rng, fault_row):
    """open_dataset (every reader) and ensure_dataset (what training calls) refuse each corruption."""
    results = []
    for i, (label, corrupt) in enumerate(corruptions(rng)):
        root = tmp_path / f"c{i}"
        d = root / pristine.name
        shutil.copytree(pristine, d)
        detail = corrupt(d)
        msgs = []
        for call in (lambda d=d: open_dataset(d),
                     lambda root=root: ensure_dataset(scenario(), 0, root, progress=False)):
            try:
                call()
                msgs.append(None)
            except DatasetError as e:
                msgs.append(str(e))
        ok = all(m is not None and "\n" not in m and str(d) in m and "generate it again" in m for m in msgs)
        results.append((label, detail, ok, msgs[0]))
    bad = [r for r in results if not r[2]]
    fault_row("corrupt dataset on disk (truncation, meta/shape mismatch, bad header, missing file)",
              trials=len(results), survived=len(results) - len(bad),
              notes=f"open_dataset and ensure_dataset both raise a one-line DatasetError naming the path and the "
                    f"fix, e.g. '{results[0][3]}'" + ("; NOT DETECTED: " + "; ".join(f"{r[0]} ({r[1]})"
                                                                                     for r in bad) if bad else ""))
    assert not bad, bad


def _window_error(d: Path, field: str, inr_type: str, tmp_path: Path) -> str:
    """Train one tiny run on `d`; the error it reports (or its status when it reports none)."""
    from mpm_inr.bench.compose import compose_train_config
    from mpm_inr.training.run import run_training

    cfg = compose_train_config(["scenario=discs_small", f"scenario.n_frames={N_FRAMES}", f"data.root={d.parent}",
                                f"field={field}", f"inr_type={inr_type}", "trainer=cpu", "logger=none",
                                "data.n_training_frames=20", "train.total_steps=20", "train.steps_per_call=10",
                                "train.eval_every=10", "outputs.plot=false", "outputs.checkpoint=false"])
    try:
        m = run_training(cfg, tmp_path, progress=False)
    except UserError as e:
        return f"UserError: {e}"
    return f"status {m['status']}: {m.get('error')}"


@pytest.mark.parametrize("array,field,inr_type", [("Jp", "Jp", "siren_t"), ("x", "Jp", "siren_txy")])
def test_non_finite_values_in_the_window_are_refused(pristine, tmp_path, array, field, inr_type, fault_row):
    """A NaN written into the training window (the target field, or the positions a siren_txy reads) must be
    reported as bad data before training, not surface later as a 'diverged' run, naming its frame and particle."""
    d = tmp_path / "data" / pristine.name
    shutil.copytree(pristine, d)
    arr = np.load(d / f"{array}.npy", mmap_mode="r+")
    arr[N_FRAMES // 2, 7] = np.nan  # a frame inside the 20-frame window centred on the middle
    arr.flush()
    del arr
    err = _window_error(d, field, inr_type, tmp_path / "run")
    ok = (err.startswith(f"UserError: {array}.npy of dataset {d} holds nan at frame {N_FRAMES // 2}, particle 7")
          and err.endswith("delete it and generate it again"))
    fault_row(f"NaN inside the training window ({array}.npy, {inr_type})", trials=1, survived=int(ok),
              notes=err[:300])
    assert ok, err


def _train_cli_in_process(args: list[str]) -> tuple[int, str]:
    """`python train.py <args>` run in this interpreter (torch is already imported here): exit code, stderr."""
    import contextlib
    import io
    import runpy

    from hydra.core.global_hydra import GlobalHydra

    err, rc, argv = io.StringIO(), 0, sys.argv
    sys.argv = [str(REPO / "train.py"), *args]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(str(REPO / "train.py"), run_name="__main__")
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()
    return rc, err.getvalue()


def test_train_cli_on_a_truncated_dataset(pristine, tmp_path, monkeypatch, fault_row):
    d = tmp_path / "data" / pristine.name
    shutil.copytree(pristine, d)
    with open(d / "F.npy", "r+b") as fh:
        fh.truncate((d / "F.npy").stat().st_size // 2)
    run_dir = tmp_path / "run"
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)  # as a user runs it
    rc, stderr = _train_cli_in_process(["scenario=discs_small", f"scenario.n_frames={N_FRAMES}",
                                        f"data.root={d.parent}", "field=F", "trainer=cpu", "logger=none",
                                        "data.n_training_frames=20", f"hydra.run.dir={run_dir}"])
    line = one_line_error(stderr)
    m = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").exists() else {}
    ok = (rc == 2 and line is not None and "F.npy is truncated" in line and "generate it again" in line
          and "Traceback" not in stderr and m.get("status") == "failed")
    fault_row("train.py on a truncated dataset", trials=1, survived=int(ok),
              notes=f"exit {rc}, metrics.json status {m.get('status')}; stderr: {stderr.strip()[:250]}")
    assert ok, stderr


def test_killed_generation_is_never_used_and_is_regenerated(tmp_path, rng, fault_row):
    """kill -9 of `python generate.py` mid-way: nothing loadable is left; the next ensure_dataset (as training
    calls it) removes the dead generator's temporary directory and regenerates the same bytes."""
    n_frames = 1000
    sc = scenario(n_frames)
    ref = ensure_dataset(sc, 0, tmp_path / "ref", progress=False)
    env = base_env()
    trials, midway, outcomes, problems = 0, 0, [], []
    for i in range(6):
        if midway == 2:
            break
        root = tmp_path / f"g{i}"
        target = dataset_dir(root, "discs_small", 0)
        p = spawn([sys.executable, str(REPO / "generate.py"), "scenario=discs_small", f"scenario.n_frames={n_frames}",
                   "seed=0", f"root={root}", "progress=false", f"hydra.run.dir={tmp_path / f'hydra{i}'}"], env,
                  tmp_path / "generate.log")
        started = wait_for(lambda p=p, root=root, target=target: p.poll() is not None
                           or any(root.glob(temp_prefix(target) + "*")), 300)
        wait_for(lambda p=p: p.poll() is not None, rng.uniform(0.0, 0.8))
        if p.poll() is not None or not started:
            p.wait()
            continue  # finished before the kill point: not a kill
        kill9(p)
        trials += 1
        leftovers = [q for q in root.iterdir() if TMP_MARK in q.name]  # (a lock file may stay too: harmless)
        try:
            open_dataset(target)
            outcome = "complete: killed after the atomic rename"
        except DatasetError as e:
            outcome = "refused: no dataset directory" if "no dataset directory" in str(e) else f"unexpected: {e}"
        midway += outcome.startswith("refused")
        if target.exists() and not outcome.startswith("complete"):
            problems.append(f"trial {trials}: a partial {target} is visible")
        path = ensure_dataset(sc, 0, root, progress=False)
        same = all(np.array_equal(np.load(path / f"{n}.npy"), np.load(ref / f"{n}.npy")) for n in ALL_FIELDS)
        left = [q.name for q in root.iterdir() if TMP_MARK in q.name]
        if not same or left or outcome.startswith("unexpected"):
            problems.append(f"trial {trials}: {outcome}, regenerated identical={same}, left over {left}")
        outcomes.append(f"{outcome} ({len(leftovers)} temp dir(s) left by the kill)")
    fault_row("kill -9 of generate.py mid-generation", trials=trials, survived=trials - len(problems),
              notes=f"discs_small, {n_frames} frames; {midway} killed mid-way: target absent, open_dataset refuses, "
                    f"ensure_dataset removed the temp dir and regenerated byte-identical arrays; "
                    + "; ".join(f"{o} x{outcomes.count(o)}" for o in sorted(set(outcomes)))
                    + ("; PROBLEMS: " + " | ".join(problems) if problems else ""))
    assert midway >= 2, "generation finished before every kill point"
    assert not problems, problems
