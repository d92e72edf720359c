"""The in-process window cache: reused by a multirun's later jobs, never stale, bounded, and invisible in the numbers."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from mpm_inr.bench.compose import compose_train_config
from mpm_inr.data import window_cache
from mpm_inr.data.dataset import dataset_dir, open_dataset
from mpm_inr.data.window import FieldWindow
from mpm_inr.training.run import run_training


@pytest.fixture(autouse=True)
def empty_cache():
    window_cache.clear()
    yield
    window_cache.clear()


@pytest.fixture
def dataset(data_root, tmp_path):
    """A private copy of discs_small seed 0 (the tests change its files)."""
    src = dataset_dir(data_root, "discs_small", 0)
    dst = tmp_path / src.name
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("baselines"))
    return dst


def _same(a: FieldWindow, b: FieldWindow) -> None:
    for name in ("frames", "values", "positions", "material", "object_id", "held_out", "mean", "std"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_a_second_request_reuses_the_window_as_a_copy_equal_to_a_fresh_build(dataset):
    first = window_cache.get_window(dataset, "F", 20, 0, True)
    second = window_cache.get_window(dataset, "F", 20, 0, True)
    assert (window_cache.stats.builds, window_cache.stats.hits) == (1, 1)
    _same(second, FieldWindow.from_dataset(open_dataset(dataset), "F", 20, 0, True))
    assert not np.shares_memory(first.values, second.values)  # a job that writes into its window cannot poison the next
    first.values[...] = 0.0
    _same(window_cache.get_window(dataset, "F", 20, 0, True), second)


@pytest.mark.parametrize("spec", [("S", 20, 0, True), ("F", 24, 0, True), ("F", 20, 4, True), ("F", 20, 0, False)])
def test_another_window_spec_is_another_entry(dataset, spec):
    window_cache.get_window(dataset, "F", 20, 0, True)
    window_cache.get_window(dataset, *spec)
    assert window_cache.stats.builds == 2 and window_cache.stats.hits == 0


def test_a_changed_field_file_or_fingerprint_invalidates(dataset):
    window_cache.get_window(dataset, "F", 20, 0, True)
    st = os.stat(dataset / "F.npy")
    os.utime(dataset / "F.npy", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same bytes, rewritten
    window_cache.get_window(dataset, "F", 20, 0, True)
    assert window_cache.stats.builds == 2
    meta = json.loads((dataset / "meta.json").read_text())
    meta["fingerprint"]["sha256"] = "0" * 64
    (dataset / "meta.json").write_text(json.dumps(meta))
    window_cache.get_window(dataset, "F", 20, 0, True)
    assert window_cache.stats.builds == 3 and window_cache.stats.hits == 0


def test_regenerated_values_are_read_again(dataset):
    """A dataset rewritten in place (new inode, other bytes) gives the new window, never the cached one."""
    old = window_cache.get_window(dataset, "Jp", 20, 0, True)
    jp = np.load(dataset / "Jp.npy")
    (dataset / "Jp.npy").unlink()
    np.save(dataset / "Jp.npy", jp * 2.0)
    new = window_cache.get_window(dataset, "Jp", 20, 0, True)
    np.testing.assert_array_equal(new.values, old.values * 2.0)


def test_the_cache_is_bounded_in_windows_and_bytes(dataset, monkeypatch):
    for frames in (20, 22, 24):
        window_cache.get_window(dataset, "F", frames, 0, True)
    assert len(window_cache.cached_keys()) == window_cache.MAX_WINDOWS == 2
    assert [k[4] for k in window_cache.cached_keys()] == [22, 24]  # least recently used out first
    window_cache.clear()
    monkeypatch.setattr(window_cache, "MAX_BYTES", 1000)  # every window is larger: built, handed out, not kept
    window_cache.get_window(dataset, "F", 20, 0, True)
    window_cache.get_window(dataset, "F", 20, 0, True)
    assert window_cache.cached_keys() == [] and window_cache.stats.builds == 2


def test_derived_values_live_with_the_cached_window(dataset):
    window = window_cache.get_window(dataset, "F", 20, 0, True)
    calls = []
    for _ in range(2):
        assert window_cache.derived(window, "x", lambda: calls.append(1) or 42) == 42
    assert len(calls) == 1
    loose = FieldWindow.from_dataset(open_dataset(dataset), "F", 20, 0, True)  # not from the cache: always computed
    window_cache.derived(loose, "x", lambda: calls.append(1))
    assert len(calls) == 2


NUMBERS = ("final_r2", "final_mse", "r2_per_component", "slope", "intercept", "pearson_r2", "ssim", "kinograph_r2",
           "kinograph_ssim", "svd", "svd_r2_same_params", "steps")


def test_a_multirun_s_later_jobs_reuse_the_window_and_svd_with_identical_numbers(tiny_train_overrides, tmp_path):
    """Jobs of a basic-launcher --multirun run in turn in one interpreter, as here: the second job opens nothing
    again, and every number is the one a fresh process (empty cache) gives."""
    overrides = tiny_train_overrides + ["field=F", "inr_type=lagrangian", "outputs.plot=false",
                                        "outputs.baselines=false", "outputs.checkpoint=false"]
    runs = []
    for k in range(2):
        cfg = compose_train_config(overrides, str(tmp_path / str(k)))
        runs.append(run_training(cfg, tmp_path / str(k), overrides, progress=False))
    assert window_cache.stats.builds == 1 and window_cache.stats.hits == 1
    # the SVD table and the kinograph SSIM's ground-truth side
    assert window_cache.stats.derived_builds == 2 and window_cache.stats.derived_hits == 2
    window_cache.clear()
    cfg = compose_train_config(overrides, str(tmp_path / "fresh"))
    fresh = run_training(cfg, tmp_path / "fresh", overrides, progress=False)
    assert window_cache.stats.builds == 1 and window_cache.stats.hits == 0
    def numbers(m):  # every score; the SVD's time_s is a duration, not a result
        return {k: ({**m[k], "time_s": None} if k == "svd" else m[k]) for k in NUMBERS}

    for run in runs:
        assert numbers(run) == numbers(fresh)
