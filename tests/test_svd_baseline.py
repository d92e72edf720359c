"""Truncated-SVD baseline and its held-out interpolation against explicit reconstructions and hand cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mpm_inr.baselines import BaselineSource
from mpm_inr.baselines.svd_table import SVD_SCALING, TAIL_TOL, compute_svd_table
from mpm_inr.errors import ConfigError
from mpm_inr.metrics import r2_score, svd_baseline, svd_holdout
from mpm_inr.metrics.interpolate import (
    METHODS,
    interpolate,
    interpolate_linear,
    interpolate_natural_cubic,
    natural_spline_second_derivatives,
)
from mpm_inr.metrics.svd import (
    DEFAULT_RANKS,
    frame_moments,
    kept_rank,
    stream_factors,
    svd_baseline_streamed,
    svd_holdout_every_rank,
    svd_holdout_streamed,
    svd_param_count,
    temporal_basis,
)


def low_rank_window(frames: int = 30, particles: int = 40, components: int = 4, seed: int = 0) -> np.ndarray:
    """Smooth in time, several modes, different component scales and offsets, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, frames)
    modes = np.stack([np.ones_like(t), t, np.sin(3 * t), np.cos(5 * t) * t], axis=1)  # (T, 4)
    spatial = rng.normal(size=(4, particles * components)) * [[1.0], [0.5], [0.2], [0.05]]
    values = (modes @ spatial).reshape(frames, particles, components)
    values = values * np.array([1.0, 0.01, 10.0, 1.0])[:components] + np.array([1.0, 0.0, -2.0, 5.0])[:components]
    return values + 1e-4 * rng.normal(size=values.shape)


def explicit_rank_r2(values: np.ndarray, rank: int, normalize: bool) -> float:
    """R² of the rank-k reconstruction built the textbook way with a full numpy SVD."""
    frames, _, components = values.shape
    flat = values.reshape(-1, components)
    mean = flat.mean(axis=0) if normalize else np.zeros(components)
    std = flat.std(axis=0) if normalize else np.ones(components)
    matrix = ((values - mean) / std).reshape(frames, -1)
    u, s, vh = np.linalg.svd(matrix, full_matrices=False)
    approx = (u[:, :rank] * s[:rank]) @ vh[:rank]
    return r2_score(values, approx.reshape(values.shape) * std + mean)


@pytest.mark.parametrize("normalize", [True, False])
def test_r2_per_rank_matches_explicit_reconstruction(normalize: bool) -> None:
    values = low_rank_window()
    baseline = svd_baseline(values, ranks=(1, 2, 3, 4, 8), normalize=normalize)
    for rank in (1, 2, 3, 4, 8):
        assert baseline.r2(rank) == pytest.approx(explicit_rank_r2(values, rank, normalize), abs=1e-10)
    assert np.all(np.diff(baseline.r2_all_ranks) >= -1e-12)  # more rank never hurts
    assert baseline.r2(baseline.max_rank) == pytest.approx(1.0, abs=1e-10)


def test_tall_matrix_takes_the_qr_path() -> None:
    values = low_rank_window(frames=60, particles=5, components=2)  # 60 frames > 10 columns
    baseline = svd_baseline(values, ranks=(1, 2, 5))
    assert baseline.max_rank == 10
    for rank in (1, 2, 5):
        assert baseline.r2(rank) == pytest.approx(explicit_rank_r2(values, rank, True), abs=1e-10)


def test_temporal_basis_is_an_svd() -> None:
    matrix = torch.from_numpy(np.random.default_rng(1).normal(size=(8, 50)))
    basis, coefficients = temporal_basis(matrix)
    torch.testing.assert_close(basis.T @ basis, torch.eye(8, dtype=torch.float64))
    torch.testing.assert_close(basis @ coefficients, matrix)
    torch.testing.assert_close(coefficients.norm(dim=1), torch.linalg.svdvals(matrix))


def test_exact_low_rank_fields() -> None:
    rng = np.random.default_rng(2)
    temporal = 2.0 + np.sin(np.linspace(0, 3, 20))
    spatial = rng.normal(size=(30, 3)) + [1.0, -1.0, 0.5]
    values = temporal[:, None, None] * spatial[None]
    assert svd_baseline(values, ranks=(1,), normalize=False).r2(1) == pytest.approx(1.0, abs=1e-12)
    # z-scoring subtracts a per-component constant: rank 1 + one constant mode
    normalized = svd_baseline(values, ranks=(1, 2))
    assert normalized.r2(1) < 0.999 and normalized.r2(2) == pytest.approx(1.0, abs=1e-12)
    assert normalized.rank_for(0.999999) == 2


def test_parameter_count_compression_and_contract_entry() -> None:
    values = low_rank_window(frames=10, particles=5, components=2)  # 100 values, 10 columns
    baseline = svd_baseline(values, ranks=(2, 64))
    assert baseline.ranks == (2,)  # rank 64 exceeds min(T, N·C) = 10 and is skipped
    assert svd_param_count(2, 10, 10) == 2 * (10 + 10 + 1)
    assert baseline.n_params(2) == 42
    assert baseline.compression(2) == pytest.approx(100 / 42)
    assert baseline.per_rank[2]["compression"] == pytest.approx(100 / 42)
    entry = baseline.as_metrics()
    assert set(entry) == {"rank_for_0.995", "r2_rank"}
    assert entry["r2_rank"] == {"2": baseline.r2(2)}
    assert entry["rank_for_0.995"] == baseline.rank_for(0.995)
    # an INR of 63 parameters competes with rank 3 (63 numbers); of 62, with rank 2; below 21, with nothing
    assert baseline.as_metrics(model_params=63)["same_params"] == {
        "rank": 3, "r2": baseline.r2(3), "compression": pytest.approx(100 / 63)}
    assert baseline.same_params(62)["rank"] == 2 and baseline.rank_within(21) == 1
    assert baseline.same_params(20) is None and baseline.rank_within(20) is None
    assert baseline.rank_within(10**9) == baseline.max_rank == 10  # never past the matrix's rank


def test_rank_for_searches_every_rank() -> None:
    values = low_rank_window()
    baseline = svd_baseline(values, ranks=(1, 8))
    target = (baseline.r2(2) + baseline.r2(3)) / 2
    assert baseline.rank_for(target) == 3  # not a requested rank, still found
    assert baseline.rank_for(1.5) is None


def test_torch_input_and_bad_ranks() -> None:
    values = low_rank_window()
    from_numpy = svd_baseline(values, ranks=(2,))
    from_torch = svd_baseline(torch.from_numpy(values).float(), ranks=(2,))
    assert from_torch.r2(2) == pytest.approx(from_numpy.r2(2), abs=1e-6)  # float32 input, float64 compute
    with pytest.raises(ConfigError):
        svd_baseline(values, ranks=(0, 2))
    with pytest.raises(ConfigError):
        svd_baseline(values, ranks=())


def test_constant_component_is_reported_as_undefined() -> None:
    values = low_rank_window(components=2)
    values[..., 1] = 1.0
    baseline = svd_baseline(values, ranks=(2,))
    per_component = baseline.per_rank[2]["r2_per_component"]
    assert math.isnan(per_component[1]) and not math.isnan(per_component[0])
    assert baseline.r2(2) == pytest.approx(per_component[0])


def linear_in_time_field(frames: int = 21) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    t = np.linspace(0.0, 2.0, frames)
    spatial = rng.normal(size=(25, 4)) + [1.0, 0.0, 0.0, 1.0]
    return (1.0 + 3.0 * t)[:, None, None] * spatial[None], t


@pytest.mark.parametrize("method", ["linear", "cubic"])
def test_rank_one_linear_in_time_is_recovered_exactly(method: str) -> None:
    values, t = linear_in_time_field()
    train, test = np.arange(0, 21, 2), np.arange(1, 21, 2)
    raw = svd_holdout(values, train, test, t=t, ranks=(1,), method=method, normalize=False)
    assert raw.r2[1] == pytest.approx(1.0, abs=1e-12)
    normalized = svd_holdout(values, train, test, t=t, ranks=(2,), method=method)  # + one constant mode
    assert normalized.r2[2] == pytest.approx(1.0, abs=1e-12)
    assert normalized.mse[2] == pytest.approx(0.0, abs=1e-20)
    assert (normalized.n_train_frames, normalized.n_test_frames) == (11, 10)


def test_extrapolated_frame_continues_the_line() -> None:
    values, t = linear_in_time_field()
    result = svd_holdout(values, np.arange(0, 19), np.array([19, 20]), t=t, ranks=(1,), normalize=False)
    assert result.r2[1] == pytest.approx(1.0, abs=1e-12)


def test_held_out_frames_never_enter_the_fit() -> None:
    """Replace the test frames by noise: the prediction must still be the training field's interpolation."""
    values, t = linear_in_time_field()
    train, test = np.arange(0, 21, 2), np.arange(1, 21, 2)
    noisy = values.copy()
    noisy[test] = np.random.default_rng(5).normal(size=noisy[test].shape)
    result = svd_holdout(noisy, train, test, t=t, ranks=(1,), normalize=False)
    assert result.r2[1] == pytest.approx(r2_score(noisy[test], values[test]), abs=1e-10)


def test_cubic_beats_linear_on_a_smooth_field() -> None:
    t = np.linspace(0, 2 * np.pi, 25)
    spatial = np.random.default_rng(6).normal(size=(20, 1))
    values = np.sin(t)[:, None, None] * spatial[None]
    train, test = np.arange(0, 25, 3), np.setdiff1d(np.arange(25), np.arange(0, 25, 3))
    linear = svd_holdout(values, train, test, t=t, ranks=(1,), normalize=False)
    cubic = svd_holdout(values, train, test, t=t, ranks=(1,), method="cubic", normalize=False)
    assert cubic.r2[1] > linear.r2[1] and cubic.r2[1] > 0.99


def test_holdout_rejects_bad_input() -> None:
    values, _ = linear_in_time_field()
    with pytest.raises(ConfigError, match="overlap"):
        svd_holdout(values, [0, 1, 2], [2, 3])
    with pytest.raises(ConfigError, match="method"):
        svd_holdout(values, [0, 2], [1], method="quintic")
    with pytest.raises(ConfigError, match="0..20"):
        svd_holdout(values, [0, 2], [21])
    with pytest.raises(ConfigError, match="at least 2"):
        svd_holdout(values, [0], [1])


# --- interpolation ----------------------------------------------------------------------------------------


def test_linear_interpolation_hand_case() -> None:
    t = np.array([0.0, 1.0, 3.0])
    y = np.array([[0.0, 1.0], [2.0, 1.0], [6.0, 0.0]])
    query = np.array([0.5, 2.0, 4.0, -1.0])
    expected = np.array([[1.0, 1.0], [4.0, 0.5], [8.0, -0.5], [-2.0, 1.0]])
    np.testing.assert_allclose(interpolate_linear(t, y, query), expected)


def test_natural_cubic_matches_scipy_inside_and_is_linear_outside() -> None:
    scipy_interpolate = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(7)
    t = np.sort(rng.uniform(0, 10, 12))
    y = rng.normal(size=(12, 3))
    query = np.linspace(t[0], t[-1], 57)
    reference = scipy_interpolate.CubicSpline(t, y, bc_type="natural")
    np.testing.assert_allclose(interpolate_natural_cubic(t, y, query), reference(query), atol=1e-12)
    outside = np.array([t[-1] + 1.0, t[0] - 2.0])
    expected = np.stack([y[-1] + reference(t[-1], 1), y[0] - 2.0 * reference(t[0], 1)])
    np.testing.assert_allclose(interpolate_natural_cubic(t, y, outside), expected, atol=1e-12)


def test_two_knot_spline_is_linear_and_unknown_method_is_rejected() -> None:
    t, y, query = np.array([0.0, 2.0]), np.array([[1.0], [5.0]]), np.array([0.5, 3.0])
    np.testing.assert_allclose(interpolate(t, y, query, "cubic"), interpolate(t, y, query, "linear"))
    with pytest.raises(ConfigError):
        interpolate(t, y, query, "nearest")


def test_every_rank_holdout_equals_the_per_rank_holdout() -> None:
    values = low_rank_window(frames=25, particles=30)
    mask = np.zeros(25, dtype=bool)
    mask[2::5] = True
    train, test = np.flatnonzero(~mask), np.flatnonzero(mask)
    _, factors = svd_baseline_streamed(values, train, normalize="centred", chunk_bytes=20 * 4 * 8 * 7)  # 5 chunks
    for method in ("linear", "cubic"):
        every = svd_holdout_every_rank(factors, test, method)
        assert every.ranks == tuple(range(1, 21))
        per_rank = svd_holdout_streamed(factors, test, ranks=every.ranks, method=method)  # same factors
        direct = svd_holdout(values, train, test, ranks=(1, 2, 4, 8), method=method, normalize="centred")
        for rank in every.ranks:
            assert every.r2[rank] == pytest.approx(per_rank.r2[rank], abs=1e-12)
            assert every.r2_per_component[rank] == pytest.approx(per_rank.r2_per_component[rank], abs=1e-12)
            assert every.mse[rank] == pytest.approx(per_rank.mse[rank], rel=1e-9)
        for rank in direct.ranks:  # above the field's 4 modes the basis is noise, chosen differently in memory
            assert every.r2[rank] == pytest.approx(direct.r2[rank], abs=1e-10)


class ReadCountingArray:
    """A (T, N, C) array that records the shape of every read: how many passes a decomposition makes over the
    window and how large its largest read is (what bounds its memory), without timing anything."""

    def __init__(self, values: np.ndarray) -> None:
        self.values, self.shape, self.reads = values, values.shape, []

    def __getitem__(self, index):
        block = self.values[index]
        self.reads.append(block.shape)
        return block


def test_held_out_products_of_the_training_pass_equal_a_separate_pass_and_the_explicit_prediction() -> None:
    """The held-out R² of every rank read off the training pass (HeldOutProducts) equals the explicit per-rank
    prediction, whether the products come with the factors or from a pass of their own."""
    values = low_rank_window(frames=40, particles=30, seed=3)
    train, test = np.flatnonzero(np.arange(40) % 4 != 1), np.flatnonzero(np.arange(40) % 4 == 1)
    times = np.linspace(0.0, 2.0, 40)
    with_products = stream_factors(values, train, "centred", chunk_bytes=40 * 4 * 8 * 7, test_frames=test)
    without = stream_factors(values, train, "centred", chunk_bytes=40 * 4 * 8 * 7)
    assert without.held_out is None and with_products.held_out is not None
    torch.testing.assert_close(with_products.block_energy, without.block_energy, rtol=0, atol=0)
    for method in ("linear", "cubic"):
        fused = svd_holdout_every_rank(with_products, test, method, times)
        separate = svd_holdout_every_rank(without, test, method, times)
        explicit = svd_holdout_streamed(without, test, ranks=fused.ranks, method=method, t=times)
        for rank in fused.ranks:
            assert fused.r2[rank] == separate.r2[rank]
            assert fused.r2[rank] == pytest.approx(explicit.r2[rank], abs=1e-12)
            assert fused.r2_per_component[rank] == pytest.approx(explicit.r2_per_component[rank], abs=1e-12)


def test_the_streamed_table_reads_the_window_twice_in_chunks_and_keeps_rank_sized_products() -> None:
    """Memory: with the moments given, the training frames are read twice (Gram, then W = Uᵀ·M), the held-out
    frames once, each read at most chunk_bytes of float64; what is kept is T² and C·r² + C·n_test·r, never a
    copy of the window."""
    frames, particles, components = 36, 50, 4
    values = ReadCountingArray(low_rank_window(frames=frames, particles=particles, components=components))
    train, test = np.flatnonzero(np.arange(frames) % 4 != 0), np.flatnonzero(np.arange(frames) % 4 == 0)
    chunk_bytes = train.size * components * 8 * 12  # 12 particles a chunk
    moments = frame_moments(values.values, train)
    factors = stream_factors(values, train, "centred", chunk_bytes=chunk_bytes, test_frames=test, moments=moments)
    assert all(rows * cols * components * 8 <= chunk_bytes for rows, cols, _ in values.reads)
    read = {n_rows: sum(cols for rows, cols, _ in values.reads if rows == n_rows) for n_rows in (train.size, test.size)}
    assert read == {train.size: 2 * particles, test.size: particles}
    rank = train.size
    assert tuple(factors.basis.shape) == (train.size, rank)
    assert tuple(factors.held_out.pair_products.shape) == (components, rank, rank)
    assert tuple(factors.held_out.projections.shape) == (components, test.size, rank)


@pytest.mark.parametrize("every", [0, 4])
def test_the_shared_svd_table_gives_the_run_the_svd_block_it_computed_itself(every: int) -> None:
    """One decomposition per window (mpm_inr.baselines.SVDTable) serves the run's `svd` block: the numbers the run
    computed on its own before (in-memory centred SVD of the training frames, held-out SVD per method)."""
    values = low_rank_window(frames=24, particles=50).astype(np.float32)
    mask = np.zeros(24, dtype=bool)
    if every:
        mask[every // 2::every] = True
    rows = np.arange(24)
    source = BaselineSource(values, rows[~mask], rows[mask], {})
    table, _ = compute_svd_table(source)
    n_params = 3 * (int((~mask).sum()) + 50 * 4 + 1) + 7
    block = table.run_metrics(n_params)
    svd = svd_baseline(values[rows[~mask]], normalize="centred")  # what run.py computed before the table
    expected = {**svd.as_metrics(0.995, n_params), "scaling": "centred",
                "compression_rank": {str(r): svd.compression(r) for r in svd.ranks}}
    got = {k: v for k, v in block["svd"].items() if k not in ("time_s", "holdout")}
    assert got.keys() == expected.keys() and got["same_params"]["rank"] == 3
    assert got["rank_for_0.995"] == expected["rank_for_0.995"]
    assert got["r2_rank"] == pytest.approx(expected["r2_rank"], abs=1e-12)
    assert got["same_params"] == pytest.approx(expected["same_params"], abs=1e-12)
    assert got["compression_rank"] == expected["compression_rank"]
    assert block["svd_r2_same_params"] == pytest.approx(svd.same_params(n_params)["r2"], abs=1e-12)
    assert block["svd_rank_for_target"] == svd.rank_for(0.995)
    if not every:
        assert "holdout" not in block["svd"]
        return
    for entry, method in zip(block["svd"]["holdout"], ("linear", "cubic"), strict=True):
        direct = svd_holdout(values, rows[~mask], rows[mask], method=method, normalize="centred").as_metrics()
        assert entry["method"] == method and entry["r2_rank"].keys() == direct["r2_rank"].keys()
        assert entry["r2_rank"] == pytest.approx(direct["r2_rank"], abs=1e-10)


def test_kept_rank_drops_only_a_tail_below_the_tolerance() -> None:
    eigenvalues = torch.tensor([10.0, 1.0, 1e-9, 1e-12, -1e-15], dtype=torch.float64)  # eigh's rounding: < 0
    assert kept_rank(eigenvalues, 0.0) == 5
    assert kept_rank(eigenvalues, 1e-10) == 2  # 1.001e-9 dropped: at most 1e-10 of the 11.000000001 total
    assert kept_rank(eigenvalues, 1e-11) == 3
    assert kept_rank(eigenvalues, 1.0) == 1


def test_a_truncated_table_scores_every_kept_rank_as_the_full_decomposition() -> None:
    """A long window whose spectrum ends far below TAIL_TOL: the table keeps max(DEFAULT_RANKS) pairs, and its
    training R² (pooled, per component) and held-out R² (every method) at those ranks are the full one's, because
    the dropped pairs' energy is measured and counted in every residual."""
    rng = np.random.default_rng(5)
    t = np.linspace(0, 1, 200)
    modes = np.stack([np.ones_like(t), t, np.sin(3 * t), np.cos(5 * t) * t], axis=1)
    values = (modes @ rng.normal(size=(4, 160))).reshape(200, 40, 4) + 5e-6 * rng.normal(size=(200, 40, 4))
    rows = np.arange(200)
    held = rows % 4 == 2
    source = BaselineSource(values, rows[~held], rows[held], {})
    table, factors = compute_svd_table(source)
    assert table.r2_rank.size == max(DEFAULT_RANKS) < held.size - held.sum() and factors.beyond is not None
    full, full_factors = svd_baseline_streamed(values, rows[~held], ranks=(1,), normalize=SVD_SCALING,
                                               test_frames=rows[held])
    kept = table.r2_rank.size
    np.testing.assert_allclose(table.r2_rank, full.r2_all_ranks[:kept], rtol=0, atol=1e-12)
    np.testing.assert_allclose(table.r2_per_component_rank, full.r2_per_component_all_ranks[:kept], rtol=0,
                               atol=1e-12)
    for method in METHODS:
        every = svd_holdout_every_rank(full_factors, rows[held], method, rows.astype(np.float64),
                                       source.test_ss_tot)
        np.testing.assert_allclose(table.holdout[method], [every.r2[k] for k in range(1, kept + 1)], rtol=0,
                                   atol=1e-12)
    assert 1.0 - table.r2_rank[-1] < TAIL_TOL


@pytest.mark.parametrize("n_knots", [3, 4, 7500])
def test_natural_cubic_second_derivatives_solve_the_spline_system(n_knots) -> None:
    """Every interior row of the tridiagonal system holds, for a few knots and for the whole simulation's."""
    rng = np.random.default_rng(n_knots)
    t = np.cumsum(rng.uniform(0.5, 1.5, n_knots))
    y = rng.normal(size=(n_knots, 2, 3))
    second = natural_spline_second_derivatives(t, y)
    h = np.diff(t)[:, None, None]
    slopes = np.diff(y, axis=0) / h
    lhs = h[:-1] * second[:-2] + 2 * (h[:-1] + h[1:]) * second[1:-1] + h[1:] * second[2:]
    np.testing.assert_allclose(lhs, 6 * (slopes[1:] - slopes[:-1]), atol=1e-9)
    assert not second[0].any() and not second[-1].any()
