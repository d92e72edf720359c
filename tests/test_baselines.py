"""Classical baselines (mpm_inr.baselines) against direct pysz / zfpy / numpy calls on small windows."""

from __future__ import annotations

import numpy as np
import pysz
import pytest
import zfpy

from mpm_inr.baselines import (
    BaselineSource,
    BaselinesUnavailable,
    cache_dirs,
    classical_baselines,
    svd_bytes,
)
from mpm_inr.baselines import codecs as codecs_module
from mpm_inr.baselines import compare as compare_module
from mpm_inr.baselines.codecs import CODECS
from mpm_inr.baselines.evaluate import CodecPoint, evaluate_codec
from mpm_inr.baselines.search import X_MAX, X_MIN, size_start
from mpm_inr.data.window import holdout_mask
from mpm_inr.metrics import r2_score, svd_baseline, svd_holdout
from mpm_inr.metrics.svd import svd_baseline_streamed, svd_holdout_streamed


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
    by_target = [classical_baselines(src, target, raw // 20) for target in (0.99, 0.999, 0.9999)]
    for name in ("sz3", "zfp", "svd"):
        accurate = [out[name]["matched_accuracy"] for out in by_target]
        assert all(a["r2"] >= t for a, t in zip(accurate, (0.99, 0.999, 0.9999), strict=True))
        assert [a["bytes"] for a in accurate] == sorted(a["bytes"] for a in accurate)
    by_budget = [classical_baselines(src, 0.999, raw // ratio) for ratio in (15, 6, 3)]
    for name in ("sz3", "svd"):
        sized = [out[name]["matched_size"] for out in by_budget]
        assert all(s["bytes"] <= raw // ratio for s, ratio in zip(sized, (15, 6, 3), strict=True))
        assert [s["r2"] for s in sized] == sorted(s["r2"] for s in sized)


def _numbers(out: dict) -> dict:
    return {k: {kk: vv for kk, vv in v.items() if kk != "time_s"} if isinstance(v, dict) else v
            for k, v in out.items() if k not in ("time_s", "cache")}


def test_cache_hit_returns_identical_numbers_without_recomputing(tmp_path, monkeypatch) -> None:
    src = source(smooth_window(frames=21), every=4)
    dirs = cache_dirs(tmp_path / "dataset")
    first = classical_baselines(src, 0.999, src.raw_bytes // 20, dirs)
    assert first["cache"]["path"] == str(tmp_path / "dataset" / "baselines" / "ffffffffffffffff_X_0-21_h4.json")

    def no_recompute(*args, **kwargs):
        raise AssertionError("recomputed a cached number")

    monkeypatch.setattr(compare_module, "evaluate_codec", no_recompute)
    monkeypatch.setattr(compare_module, "svd_baseline_streamed", no_recompute)
    second = classical_baselines(src, 0.999, src.raw_bytes // 20, dirs)
    assert _numbers(second) == _numbers(first)
    assert second["cache"]["points_reused"] > 0


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


def test_the_size_search_starts_where_the_budget_should_lie():
    """One more bit per value per halving of eps: from a known point, the budget's x is a step or two away."""
    known = CodecPoint(10.0, 1_000, 0.999, [0.999], None, None)
    assert size_start(known, 2_000, 8_000) == 11.0   # 1000 more bytes = 1 more bit for each of 8000 values
    assert size_start(known, 1_000, 8_000) == 10.0
    assert size_start(known, 0, 400) == X_MIN and size_start(known, 10**9, 8) == X_MAX
