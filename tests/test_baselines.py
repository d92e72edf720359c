"""Classical baselines (mpm_inr.baselines) against direct pysz / zfpy / numpy calls on small windows: the
per-window tables, reading matched accuracy and size off them, and their cache (warm, corrupt, concurrent)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pysz
import pytest
import zfpy

from mpm_inr.baselines import (
    BaselineSource,
    BaselinesUnavailable,
    WindowBaselines,
    cache_dirs,
    classical_baselines,
    svd_bytes,
)
from mpm_inr.baselines import codecs as codecs_module
from mpm_inr.baselines import compare as compare_module
from mpm_inr.baselines.cache import FORMAT
from mpm_inr.baselines.codecs import CODECS
from mpm_inr.baselines.evaluate import ComponentEvaluator, evaluate_codec
from mpm_inr.baselines.search import GRID_STEP, R2_CEILING, R2_FLOOR, X_MAX, X_MIN
from mpm_inr.data.dataset import open_dataset
from mpm_inr.data.window import holdout_mask
from mpm_inr.metrics import r2_score, svd_baseline, svd_holdout
from mpm_inr.metrics.svd import svd_baseline_streamed, svd_holdout_streamed

REPO = Path(__file__).resolve().parents[1]


def smooth_window(frames: int = 24, particles: int = 300, components: int = 2, seed: int = 0) -> np.ndarray:
    """Float32 (T, N, C): a few smooth temporal modes, offsets and scales per component, a little noise."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, frames)[:, None]
    x = np.linspace(0.0, 1.0, particles)[None, :]
    comps = [np.sin(3 * t + 5 * x) + 0.3 * np.cos(7 * t * x) + 0.01 * rng.normal(size=(frames, particles)),
             1.0 + 0.01 * (t * x + np.sin(9 * x) * t**2) + 1e-4 * rng.normal(size=(frames, particles))]
    return np.stack(comps[:components], axis=-1).astype(np.float32)


def source(values: np.ndarray, every: int = 0, fingerprint: str | None = "f" * 64) -> BaselineSource:
    mask = holdout_mask(values.shape[0], every)
    rows = np.arange(values.shape[0])
    key = {"fingerprint": fingerprint, "field": "X", "frames": [0, values.shape[0]], "holdout_every": every}
    return BaselineSource(values, rows[~mask], rows[mask], key)


def direct_sz3(array: np.ndarray, bound: float) -> np.ndarray:
    config = pysz.szConfig()
    config.errorBoundMode = pysz.szErrorBoundMode.ABS
    config.absErrorBound = bound
    config.cmprAlgo = pysz.szAlgorithm.LORENZO_REG
    stream, _ = pysz.sz.compress(np.ascontiguousarray(array), config)
    return np.array(stream)


def direct_round_trip(name: str, array: np.ndarray, bound: float) -> tuple[int, np.ndarray]:
    """Bytes and decoded array from the libraries themselves."""
    if name == "sz3":
        stream = direct_sz3(array, bound)
        return stream.size, pysz.sz.decompress(stream, np.float32, array.shape)[0]
    stream = zfpy.compress_numpy(np.ascontiguousarray(array), tolerance=bound)
    return len(stream), zfpy.decompress_numpy(stream)


@pytest.mark.parametrize("name", ["sz3", "zfp"])
def test_codec_point_matches_direct_library_calls(name: str) -> None:
    values = smooth_window()
    exponent = 5.0
    point = evaluate_codec(source(values), CODECS[name], exponent)
    std = values.reshape(-1, 2).astype(np.float64).std(axis=0)
    n_bytes, decoded = 0, np.empty_like(values)
    for c in range(2):
        size, decoded[:, :, c] = direct_round_trip(name, values[:, :, c], 2.0**-exponent * std[c])
        n_bytes += size
    assert point.bytes == n_bytes
    assert point.r2 == pytest.approx(r2_score(values, decoded), abs=1e-12)
    assert point.holdout_r2 is None


@pytest.mark.parametrize("name", ["sz3", "zfp"])
def test_chunks_and_holdout_interpolation_match_direct_computation(name: str) -> None:
    values = smooth_window(frames=23)
    src = source(values, every=3)
    point = evaluate_codec(src, CODECS[name], 4.0, chunk_frames=5)
    std = values[src.train].reshape(-1, 2).astype(np.float64).std(axis=0)
    decoded_train = np.empty(values[src.train].shape, dtype=np.float32)
    n_bytes = 0
    for lo in range(0, src.train.size, 5):
        for c in range(2):
            size, decoded_train[lo:lo + 5, :, c] = direct_round_trip(name, values[src.train[lo:lo + 5], :, c],
                                                                     2.0**-4 * std[c])
            n_bytes += size
    assert point.bytes == n_bytes
    assert point.r2 == pytest.approx(r2_score(values[src.train], decoded_train), abs=1e-12)
    flat = decoded_train.reshape(src.train.size, -1).astype(np.float64)
    interpolated = np.stack([np.interp(src.test, src.train, flat[:, j]) for j in range(flat.shape[1])], axis=1)
    expected = r2_score(values[src.test], interpolated.reshape(src.test.size, *values.shape[1:]))
    assert point.holdout_r2 == pytest.approx(expected, abs=1e-12)


def test_centred_svd_is_the_eckart_young_fit_and_beats_zscored() -> None:
    values = smooth_window(frames=20, particles=60)
    rows = np.arange(20)
    streamed, _ = svd_baseline_streamed(values, rows, normalize="centred", chunk_bytes=20 * 2 * 8 * 7)  # 9 chunks
    zscored = svd_baseline(values, ranks=(1,), normalize=True)
    in_memory = svd_baseline(values, ranks=(1,), normalize="centred")
    mean = values.reshape(-1, 2).astype(np.float64).mean(axis=0)
    matrix = (values - mean).reshape(20, -1).astype(np.float64)
    u, s, vh = np.linalg.svd(matrix, full_matrices=False)
    for rank in range(1, 11):
        approx = ((u[:, :rank] * s[:rank]) @ vh[:rank]).reshape(values.shape) + mean
        assert streamed.r2(rank) == pytest.approx(r2_score(values, approx), abs=1e-10)
        assert in_memory.r2(rank) == pytest.approx(streamed.r2(rank), abs=1e-10)
        assert streamed.r2(rank) >= zscored.r2(rank) - 1e-12


def test_streamed_holdout_equals_in_memory_holdout() -> None:
    values = smooth_window(frames=21, particles=50)
    mask = holdout_mask(21, 4)
    train, test = np.flatnonzero(~mask), np.flatnonzero(mask)
    _, factors = svd_baseline_streamed(values, train, normalize="centred", chunk_bytes=16 * 2 * 8 * 9)
    for method in ("linear", "cubic"):
        streamed = svd_holdout_streamed(factors, test, ranks=(1, 3), method=method)
        direct = svd_holdout(values, train, test, ranks=(1, 3), method=method, normalize="centred")
        for rank in (1, 3):
            assert streamed.r2[rank] == pytest.approx(direct.r2[rank], abs=1e-10)


def test_svd_bytes_count_factors_and_means() -> None:
    assert svd_bytes(2, 10, 300, 4) == 4 * (2 * (10 + 300 + 1) + 4)


def test_matched_points_are_monotone_and_meet_their_condition() -> None:
    src = source(smooth_window())
    raw = src.raw_bytes
    baselines = WindowBaselines(src)  # one table, read at several targets and budgets
    by_target = [baselines.report(target, raw // 20) for target in (0.99, 0.999, 0.9999)]
    for name in ("sz3", "zfp", "svd"):
        accurate = [out[name]["matched_accuracy"] for out in by_target]
        assert all(a["r2"] >= t for a, t in zip(accurate, (0.99, 0.999, 0.9999), strict=True))
        assert [a["bytes"] for a in accurate] == sorted(a["bytes"] for a in accurate)
    by_budget = [baselines.report(0.999, raw // ratio) for ratio in (15, 6, 3)]
    for name in ("sz3", "svd"):
        sized = [out[name]["matched_size"] for out in by_budget]
        assert all(s["bytes"] <= raw // ratio for s, ratio in zip(sized, (15, 6, 3), strict=True))
        assert [s["r2"] for s in sized] == sorted(s["r2"] for s in sized)


def _stored(path) -> dict:
    return json.loads(path.read_text())


def _cache_file(tmp_path, frames: int, every: int):
    return tmp_path / "dataset" / "baselines" / f"ffffffffffffffff_X_0-{frames}_h{every}.json"


@pytest.mark.parametrize("name", ["sz3", "zfp"])
def test_the_stored_table_is_direct_library_calls_on_the_grid(name: str, tmp_path) -> None:
    """Every point of the band is a real compression at eps = 2^-x, x on the grid, from R² ≤ R2_FLOOR up to
    R² ≥ R2_CEILING; a few of them redone with pysz / zfpy directly give the same bytes and R²."""
    values = smooth_window(frames=16, particles=200)
    src = source(values)
    classical_baselines(src, 0.999, src.raw_bytes // 20, cache_dirs(tmp_path / "dataset"))
    stored = _stored(_cache_file(tmp_path, 16, 0))
    assert stored["key"]["format"] == FORMAT and stored["key"]["grid"]["step"] == GRID_STEP
    lo, hi = stored["tables"][name]["band"]
    band = [stored["points"][name][repr(lo + k * GRID_STEP)] for k in range(round((hi - lo) / GRID_STEP) + 1)]
    assert band[0]["r2"] <= R2_FLOOR or lo == -8.0
    assert band[-1]["r2"] >= R2_CEILING and band[-2]["r2"] < R2_CEILING
    std = values.reshape(-1, 2).astype(np.float64).std(axis=0)
    for record in (band[0], band[len(band) // 3], band[-1]):
        n_bytes, decoded = 0, np.empty_like(values)
        for c in range(2):
            size, decoded[:, :, c] = direct_round_trip(name, values[:, :, c], 2.0 ** -record["exponent"] * std[c])
            n_bytes += size
        assert record["bytes"] == n_bytes
        assert record["r2"] == pytest.approx(r2_score(values, decoded), abs=1e-12)


def _every_grid_point(src: BaselineSource, name: str, lo: float, hi: float) -> list:
    evaluator = ComponentEvaluator(src, CODECS[name])
    return [evaluator.point(lo + k * GRID_STEP) for k in range(round((hi - lo) / GRID_STEP) + 1)]


@pytest.mark.parametrize("name", ["sz3", "zfp"])
def test_matched_accuracy_and_size_are_read_off_the_grid(name: str) -> None:
    """Against brute force over every grid point from far below the band to far above it: the smallest stream
    reaching the R², the best R² within the bytes, also where the run's bytes lie beyond the band (extended on
    demand, to one grid step)."""
    src = source(smooth_window(frames=16, particles=200))
    baselines = WindowBaselines(src)
    everything = _every_grid_point(src, name, X_MIN, X_MAX)
    for target in (0.95, 0.99, 0.9995, 0.99999, 1 - 1e-8):
        meeting = [p for p in everything if p.r2 >= target]
        best = min(meeting, key=lambda p: (p.bytes, -p.r2))
        got = baselines.report(target, 10**9)[name]["matched_accuracy"]
        assert (got["bytes"], got["r2"]) == (best.bytes, best.r2)
    band = baselines.table(name).band
    top = baselines.table(name).points[band[1]].bytes
    for budget in (src.raw_bytes // 40, top * 3, src.raw_bytes // 3):
        fitting = [p for p in everything if p.bytes <= budget]
        best = max(fitting, key=lambda p: (p.r2, -p.bytes))
        got = baselines.report(0.999, budget)[name]["matched_size"]
        assert (got["bytes"], got["r2"]) == (best.bytes, best.r2)  # bytes monotone in eps here: exact optimum


def test_a_warm_window_makes_no_compression_and_no_decomposition(tmp_path, monkeypatch) -> None:
    """The first report computes the tables; later ones, at other R² and sizes inside the band, read them."""
    src = source(smooth_window(frames=21), every=4)
    dirs = cache_dirs(tmp_path / "dataset")
    first = classical_baselines(src, 0.999, src.raw_bytes // 20, dirs)
    assert first["cache"]["path"] == str(_cache_file(tmp_path, 21, 4)) and first["cache"]["compressions"] > 0
    calls = []
    real_compress = ComponentEvaluator._compress
    monkeypatch.setattr(ComponentEvaluator, "_compress", lambda self, *a: calls.append(a) or real_compress(self, *a))

    def no_decomposition(*args, **kwargs):
        raise AssertionError("decomposed a cached window")

    monkeypatch.setattr(compare_module, "compute_svd_table", no_decomposition)
    again = classical_baselines(src, 0.999, src.raw_bytes // 20, dirs)
    assert _numbers(again) == _numbers(first) and again["cache"]["tables"] == "cache"
    stored = _stored(_cache_file(tmp_path, 21, 4))
    band_bytes = [[stored["points"][name][repr(x)]["bytes"] for x in stored["tables"][name]["band"]]
                  for name in ("sz3", "zfp")]  # budgets both tables hold points above and below
    low, high = max(b[0] for b in band_bytes), min(b[1] for b in band_bytes)
    assert low < high
    for target, budget in ((0.99, low + 1), (0.9995, (low + high) // 2), (0.99995, high - 1)):
        warm = classical_baselines(src, target, budget, dirs)
        assert warm["cache"]["compressions"] == 0 and warm["sz3"]["compressions"] == 0
    assert calls == []


def _numbers(out: dict) -> dict:
    return {k: {kk: vv for kk, vv in v.items() if kk not in ("time_s", "compressions")} if isinstance(v, dict) else v
            for k, v in out.items() if k not in ("time_s", "cache")}


@pytest.mark.parametrize("damage", ["truncated", "not json", "foreign key", "older format", "bad point", "holey band",
                                    "odd point name", "short svd"])
def test_a_bad_cache_file_is_recomputed_with_one_warning(damage: str, tmp_path, caplog) -> None:
    src = source(smooth_window(frames=12, particles=80), every=3)
    dirs = cache_dirs(tmp_path / "dataset")
    fresh = classical_baselines(src, 0.999, src.raw_bytes // 10, dirs)
    path = _cache_file(tmp_path, 12, 3)
    text = path.read_text()
    stored = json.loads(text)
    assert fresh["cache"]["tables"] == "this run"
    band_x = repr(stored["tables"]["sz3"]["band"][0] + GRID_STEP)
    if damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "not json":
        path.write_bytes(b"\xff\xfe garbage")
    elif damage == "foreign key":
        path.write_text(json.dumps({**stored, "key": {**stored["key"], "field": "Y"}}))
    elif damage == "older format":
        path.write_text(json.dumps({**stored, "key": {**stored["key"], "format": "mpm_inr.baselines/1"}}))
    elif damage == "bad point":
        stored["points"]["sz3"][band_x]["bytes"] = "many"
        path.write_text(json.dumps(stored))
    elif damage == "odd point name":
        stored["points"]["zfp"]["abc"] = stored["points"]["zfp"].popitem()[1]
        path.write_text(json.dumps(stored))
    elif damage == "holey band":
        del stored["points"]["sz3"][band_x]
        path.write_text(json.dumps(stored))
    else:
        stored["svd"]["r2_rank"] = stored["svd"]["r2_rank"][:-1]
        path.write_text(json.dumps(stored))
    with caplog.at_level(logging.WARNING, logger="mpm_inr.baselines"):
        again = classical_baselines(src, 0.999, src.raw_bytes // 10, dirs)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0].getMessage()
    assert _numbers(again) == _numbers(fresh) and (again["cache"]["compressions"] > 0) == (damage != "short svd")
    assert json.loads(path.read_text()) == json.loads(text)  # replaced by the same table, recomputed


def test_unwritable_dataset_dir_falls_back_to_the_user_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user"))
    blocker = tmp_path / "dataset"
    blocker.write_text("a file where the dataset directory would be: nothing can be created under it")
    src = source(smooth_window(frames=12, particles=40))
    out = classical_baselines(src, 0.99, src.raw_bytes // 10, cache_dirs(blocker))
    assert out["cache"]["path"].startswith(str(tmp_path / "user" / "mpm_inr" / "baselines"))
    assert "cache" not in classical_baselines(source(smooth_window(12, 40), fingerprint=None), 0.99, 1000, [tmp_path])


def test_missing_package_is_a_one_line_error(monkeypatch) -> None:
    monkeypatch.setattr(codecs_module, "zfpy", None)
    with pytest.raises(BaselinesUnavailable, match=r"need zfpy: run `make install`"):
        classical_baselines(source(smooth_window(12, 40)), 0.99, 1000)


def test_zfp_streams_depend_only_on_the_power_of_two_below_the_bound() -> None:
    """Why a whole grid of ZFP bounds costs one compression per power of two and component."""
    array = smooth_window(frames=10, particles=100)[:, :, 0]
    for bound in (0.013, 0.0173, 0.25, 0.4999, 0.5):
        same = 2.0 ** CODECS["zfp"].stream_key(bound)
        assert zfpy.compress_numpy(np.ascontiguousarray(array), tolerance=bound) == \
            zfpy.compress_numpy(np.ascontiguousarray(array), tolerance=same)
    assert CODECS["sz3"].stream_key(0.3) == 0.3


def _window_job_args(data_root, frames: int, cache_dir) -> tuple[BaselineSource, dict]:
    """The discs_small window a run of `frames` frames sees, and the background child's arguments for it."""
    dataset = open_dataset(data_root / "discs_small_seed0")
    src = BaselineSource.from_dataset(dataset, "F", frames, 0)
    return src, {"dataset": str(dataset.path), "field": "F", "n_training_frames": frames, "holdout_every": 0,
                 "cache_dirs": [str(cache_dir)], "codecs": ["sz3", "zfp"], "key": src.key}


def _child(args: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mpm_inr.baselines.background", json.dumps(args)],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_two_jobs_on_one_window_compute_its_tables_once(data_root, tmp_path) -> None:
    """Two background children started together on the same window: one computes, the other waits for the
    compute lock and finds the tables stored; the file is the single computation's."""
    src, args = _window_job_args(data_root, 16, tmp_path)
    children = [_child(args) for _ in range(2)]
    outputs = [child.communicate(timeout=120)[1] for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    stored = _stored(tmp_path / f"{src.key['fingerprint'][:16]}_F_{src.key['frames'][0]}-{src.key['frames'][1]}_h0.json")
    alone = WindowBaselines(src)
    for name in ("sz3", "zfp"):
        table = alone.table(name)
        table.fill_band(stored["tables"][name]["band"][0])
        assert stored["tables"][name]["band"] == list(table.band)
        assert {repr(x): p.bytes for x, p in table.points.items()} == \
            {x: r["bytes"] for x, r in stored["points"][name].items()}
    assert not list(tmp_path.glob(".*.part"))


def test_a_job_killed_mid_table_leaves_no_file_and_no_stuck_lock(data_root, tmp_path) -> None:
    """kill -9 while the child computes: the cache holds no half file, and the next run computes the tables."""
    src, args = _window_job_args(data_root, 48, tmp_path)
    name = f"{src.key['fingerprint'][:16]}_F_{src.key['frames'][0]}-{src.key['frames'][1]}_h0.json"
    child = _child(args)
    lock = tmp_path / f".{name}.compute.lock"
    deadline = time.monotonic() + 60
    while not (lock.exists() and lock.read_text().strip()) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)  # inside the band's computation
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (tmp_path / name).exists() or _stored(tmp_path / name)["key"]["format"] == FORMAT
    out = classical_baselines(src, 0.999, src.raw_bytes // 20, [tmp_path])
    assert out["cache"]["tables"] == "this run" and _stored(tmp_path / name)["tables"].keys() == {"sz3", "zfp"}


def test_a_constant_window_is_skipped_without_compressing(tmp_path) -> None:
    values = np.full((10, 30, 2), 1.5, dtype=np.float32)
    out = classical_baselines(source(values), 0.99, 1000, cache_dirs(tmp_path))
    assert out["skipped"] == "every component is constant on the training frames" and "sz3" not in out
