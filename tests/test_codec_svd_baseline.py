"""The quantised, lzma-coded truncated SVD baseline (mpm_inr.codec.svd_baseline) against numpy by hand."""

from __future__ import annotations

import gc
import math
import weakref

import numpy as np
import pytest
import torch

from mpm_inr.codec import format
from mpm_inr.codec import svd_baseline as svd_baseline_module
from mpm_inr.codec.decode import load
from mpm_inr.codec.quantise import (
    dequantise_tensor,
    pack_array,
    quantise_tensor,
    quantise_uniform,
)
from mpm_inr.codec.svd_baseline import compression, quantised_svd, quantised_svd_holdout
from mpm_inr.codec.svd_file import SVDParts
from mpm_inr.metrics.interpolate import interpolate
from mpm_inr.metrics.svd import leading_temporal_basis, temporal_basis


@pytest.fixture
def without_zero_centre(monkeypatch):
    """The rival's centres without zero (other_centres): for the tests of one centre's search, and of the resting
    value's, on windows where not centring would be smaller still."""
    monkeypatch.setattr(svd_baseline_module, "other_centres", lambda named: named)


def _window(seed: int = 0) -> np.ndarray:
    """(T, N, C) = (40, 50, 2): rank 3 in time plus a little noise, components on different scales and means."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, 40)[:, None]
    curves = np.hstack([np.sin(3 * t), np.cos(5 * t), t ** 2])
    flat = curves @ rng.normal(size=(3, 100)) + 0.01 * rng.normal(size=(40, 100))
    return (flat.reshape(40, 50, 2) * [1.0, 0.1] + [1.0, -2.0]).astype(np.float32)


def _r2(gt: np.ndarray, pred: np.ndarray) -> float:
    gt, pred = gt.reshape(-1, gt.shape[-1]).astype(np.float64), pred.reshape(-1, gt.shape[-1])
    return 1 - ((gt - pred) ** 2).sum() / ((gt - gt.mean(0)) ** 2).sum()


@pytest.mark.parametrize("target", [0.99, 0.999])
def test_decoded_file_reaches_the_target_and_reports_its_own_r2(target):
    values = _window()
    point = quantised_svd(values, target)
    decoded = point.decode(values.shape[1])
    assert _r2(values, decoded) == pytest.approx(point.r2, abs=1e-9)
    assert point.r2 >= target
    assert compression(values, point) == pytest.approx(4 * values.size / point.n_bytes)


def test_rank_and_size_against_the_float_svd():
    """It never needs more rank than the float SVD (same Eckart–Young fit) plus what rounding costs, and its file
    is far smaller than the float32 SVD of that rank."""
    values = _window()
    centred = (values - values.reshape(-1, 2).mean(0)).reshape(40, -1).astype(np.float64)
    s = np.linalg.svd(centred, compute_uv=False)
    float_r2 = 1 - (np.cumsum((s ** 2)[::-1])[::-1][1:] / (s ** 2).sum())  # rank 1, 2, ...
    rank_needed = int(np.argmax(float_r2 >= 0.999)) + 1
    point = quantised_svd(values, 0.999)
    assert rank_needed <= point.rank <= rank_needed + 3
    float32_bytes = 4 * (point.rank * (40 + 100 + 1) + 2)
    assert point.n_bytes < float32_bytes / 2


def test_an_unreachable_target_gives_none():
    assert quantised_svd(_window(), 0.999999999, max_rank=1) is None


def _held_out_frames(n_frames: int = 40, every: int = 4) -> tuple[np.ndarray, np.ndarray]:
    test = np.arange(every - 1, n_frames - 1, every)  # interior frames: the interpolation has both neighbours
    return np.setdiff1d(np.arange(n_frames), test), test


def test_held_out_rival_fits_its_budget_and_scores_the_held_out_frames():
    """Within the byte budget; its held-out R² is the decoded file's at the held-out frames, the temporal factors
    interpolated there (smooth curves: the cubic spline wins); more bytes never score worse."""
    values = _window()
    train, test = _held_out_frames()
    small = quantised_svd_holdout(values, train, test, 600)
    large = quantised_svd_holdout(values, train, test, 6000)
    assert small.n_bytes <= 600 and large.n_bytes <= 6000
    assert large.holdout_r2 >= small.holdout_r2 - 1e-12 and large.holdout_r2 > 0.99
    assert large.interpolation == "cubic" and large.rank >= 3
    # decode the large point by hand from its rank, bits and step: the temporal factors (quantised as stored)
    # interpolated at the held-out frame numbers, times the rounded codes, plus the training frames' mean
    mean = values[train].reshape(-1, 2).mean(0, dtype=np.float64).astype(np.float32).astype(np.float64)
    centred = torch.from_numpy(values[train].reshape(len(train), -1).astype(np.float64) - np.tile(mean, 50))
    basis = temporal_basis(centred)[0][:, :large.rank]
    u = dequantise_tensor(quantise_tensor(basis.T.numpy(), large.bits)).T.astype(np.float64)
    codes = np.linalg.solve(u.T @ u, u.T @ centred.numpy())
    codes = np.rint(codes / large.step) * large.step
    at_test = interpolate(train.astype(float), u, test.astype(float), large.interpolation) @ codes
    assert _r2(values[test], at_test.reshape(len(test), 50, 2) + mean) == pytest.approx(large.holdout_r2, abs=1e-9)
    assert _r2(values[train], (u @ codes).reshape(len(train), 50, 2) + mean) == pytest.approx(large.r2, abs=1e-9)


def test_held_out_rival_none_when_not_even_rank_one_fits():
    train, test = _held_out_frames()
    assert quantised_svd_holdout(_window(), train, test, 40) is None


def test_candidates_encoded_in_threads_give_the_serial_file(monkeypatch):
    """A rank's bits are encoded in the process's CPU threads; the file found is the one-thread search's, field
    for field (pool.map keeps the bits' order, so even ties in bytes resolve alike)."""
    values = _window()
    monkeypatch.setattr(svd_baseline_module, "process_workers", lambda: 1)
    serial = quantised_svd(values, 0.999)
    monkeypatch.setattr(svd_baseline_module, "process_workers", lambda: 4)
    threaded = quantised_svd(values, 0.999)
    fields = ("rank", "bits", "step", "n_bytes", "r2")
    assert [getattr(threaded, f) for f in fields] == [getattr(serial, f) for f in fields]
    np.testing.assert_array_equal(threaded.decode(values.shape[1]), serial.decode(values.shape[1]))


def test_the_rival_is_sized_as_its_real_file_with_the_smaller_coefficient_layout(tmp_path):
    """The rival's bytes are those of its file in our container (svd_file), written here and decoded: the stored
    U_k, the integers of its coefficients direction-major (our codec's layout) or particle-major where that packs
    smaller, its step and centre; the decoded file gives back the point's values and R²."""
    values = _window()
    point = quantised_svd(values, 0.999)
    ints = quantise_uniform(point.coefficients, point.step)
    centred = torch.from_numpy((values.reshape(40, -1) - np.tile(point.mean, 50)).astype(np.float64))
    basis, _ = temporal_basis(centred)
    stored_u = quantise_tensor(basis[:, :point.rank].T.numpy(), point.bits)
    np.testing.assert_array_equal(dequantise_tensor(stored_u).T, point.temporal)

    def by_hand(coefficients: np.ndarray) -> int:
        """Header, metadata and one LZMA stream of the arrays in name order: basis (and its scale), codes."""
        stored = stored_u if isinstance(stored_u, tuple) else (stored_u,)
        data = b"".join(pack_array(a)[0] for a in (*stored, np.ascontiguousarray(coefficients)))
        meta, _ = point.parts.contents(point.window, coefficients.shape[0] != point.rank)
        return format.file_bytes(len(format.meta_blob(meta)), len(format.compress(data)))

    assert point.n_bytes == min(by_hand(ints), by_hand(ints.T))
    assert point.write(tmp_path / "rival.mpmc") == point.n_bytes == (tmp_path / "rival.mpmc").stat().st_size
    decoded = load(tmp_path / "rival.mpmc")
    np.testing.assert_allclose(decoded.decode_window(), point.decode(values.shape[1]), rtol=1e-6, atol=1e-6)
    assert _r2(values, decoded.decode_window().astype(np.float64)) == pytest.approx(point.r2, abs=1e-7)
    # a direction whose integers are all zero packs to almost nothing direction-major, not particle-major
    sparse = np.zeros((point.rank, 100), np.int8)
    sparse[0] = np.random.default_rng(0).integers(-20, 20, 100)
    sparse_parts = SVDParts(stored_u, sparse, point.step, point.mean)
    by_direction, by_particle = sparse_parts.layout_bytes(point.window)
    assert by_direction == by_hand(sparse) < by_particle == by_hand(sparse.T)


def test_the_leading_directions_hold_the_optimal_energy_on_a_slowly_decaying_spectrum():
    """`leading_temporal_basis` (the whole simulation's windows): orthonormal, W = Uᵀ·X, and its energy at every
    kept rank the exact decomposition's to 1e-13 of the total, on singular values falling only 1e-6 over 400."""
    generator = torch.Generator().manual_seed(0)
    rows, cols = 400, 900
    u = torch.linalg.qr(torch.randn(rows, rows, dtype=torch.float64, generator=generator))[0]
    v = torch.linalg.qr(torch.randn(cols, rows, dtype=torch.float64, generator=generator))[0]
    matrix = (u * torch.logspace(0, -6, rows, dtype=torch.float64)) @ v.T
    exact = (temporal_basis(matrix)[1] ** 2).sum(dim=1).cumsum(0)
    for rank in (3, 20, 60):
        basis, coefficients = leading_temporal_basis(matrix, rank)
        assert basis.shape == (rows, rank) and coefficients.shape == (rank, cols)
        assert torch.allclose(basis.T @ basis, torch.eye(rank, dtype=torch.float64), atol=1e-12)
        assert torch.allclose(coefficients, basis.T @ matrix, atol=1e-12)
        energy = (coefficients ** 2).sum(dim=1).cumsum(0)
        assert float((exact[:rank] - energy).abs().max() / exact[-1]) < 1e-13


def test_the_held_out_rival_of_a_long_window_reads_only_the_directions_it_may_use(monkeypatch):
    """Beyond FULL_BASIS_MAX frames the held-out search decomposes only its max_rank leading directions (the whole
    simulation's full decomposition takes minutes), and finds the same file and held-out R²."""
    values = _window()
    train, test = _held_out_frames()
    whole = quantised_svd_holdout(values, train, test, 3000, max_rank=8)
    monkeypatch.setattr(svd_baseline_module, "FULL_BASIS_MAX", 0)
    asked = []
    real = svd_baseline_module.leading_temporal_basis
    monkeypatch.setattr(svd_baseline_module, "leading_temporal_basis",
                        lambda matrix, rank: asked.append(rank) or real(matrix, rank))
    leading = quantised_svd_holdout(values, train, test, 3000, max_rank=8)
    assert asked == [8, 8]  # one decomposition per centre: the mean, and zero
    assert (leading.rank, leading.bits) == (whole.rank, whole.bits)
    assert leading.holdout_r2 == pytest.approx(whole.holdout_r2, abs=1e-9)


def _leading_directions_only(monkeypatch: pytest.MonkeyPatch, start: int) -> list[int]:
    """Make every window a long one, whose searches decompose only their leading directions, `start` of them
    first; returns the list of the direction counts they ask for, as they ask."""
    monkeypatch.setattr(svd_baseline_module, "FULL_BASIS_MAX", 0)
    monkeypatch.setattr(svd_baseline_module, "LEADING_START", start)
    widened: list[int] = []
    real = svd_baseline_module.leading_temporal_basis
    monkeypatch.setattr(svd_baseline_module, "leading_temporal_basis",
                        lambda matrix, rank: widened.append(rank) or real(matrix, rank))
    return widened


def _many_directions_window() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, N, C) = (60, 80, 2), twelve smooth temporal directions of decaying weight: at a few kB the held-out
    rival's best rank is 10-12, with every 4th frame held out (the frames and held-out frames returned too)."""
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 60)[:, None]
    curves = np.hstack([0.75 ** k * np.sin((k + 1) * 2.0 * t + k) for k in range(12)])
    flat = curves @ rng.normal(size=(12, 160)) + 1e-3 * rng.normal(size=(60, 160))
    values = (flat.reshape(60, 80, 2) * [1.0, 0.3] + [1.0, -2.0]).astype(np.float32)
    test = np.arange(3, 59, 4)
    return values, np.setdiff1d(np.arange(60), test), test


@pytest.mark.usefixtures("without_zero_centre")
def test_the_held_out_rival_widens_its_leading_directions_as_far_as_its_search_goes(monkeypatch):
    """No rank cap: a long window's held-out search starts from LEADING_START directions and widens them when it
    reaches them (it stopped at rank 64 until 2026-12-05, where C's rival at 1 000 frames still improved), and
    scores as the search on the whole decomposition does."""
    values, train, test = _many_directions_window()
    whole = quantised_svd_holdout(values, train, test, 4000)
    widened = _leading_directions_only(monkeypatch, start=2)
    leading = quantised_svd_holdout(values, train, test, 4000)
    assert widened[0] == 2 and widened == sorted(widened) and widened[-1] > 8
    assert whole.rank >= 10 and abs(leading.rank - whole.rank) <= 1
    assert 1 - leading.holdout_r2 == pytest.approx(1 - whole.holdout_r2, rel=0.05)


def test_the_held_out_rival_s_rank_grid_finds_the_dense_search_s_neighbourhood(monkeypatch):
    """Past DENSE_RANKS the search tries a grid of ranks and refines it around the best: a held-out error within a
    few % of the rank-by-rank search's."""
    values, train, test = _many_directions_window()
    tried: list[int] = []
    real = svd_baseline_module._fit_budget
    monkeypatch.setattr(svd_baseline_module, "_fit_budget", lambda *a, **k: tried.append(a[1].shape[1]) or real(*a, **k))
    monkeypatch.setattr(svd_baseline_module, "DENSE_RANKS", 10 ** 6)  # every rank
    dense = quantised_svd_holdout(values, train, test, 1500)
    dense_tried = set(tried)
    tried.clear()
    monkeypatch.setattr(svd_baseline_module, "DENSE_RANKS", 4)
    monkeypatch.setattr(svd_baseline_module, "RANK_GRID", 2)
    grid = quantised_svd_holdout(values, train, test, 1500)
    assert 5 in dense_tried and 5 not in tried  # ranks 1-4, then 6, 9, 13, ..., refined around the best
    assert abs(grid.rank - dense.rank) <= 1 and grid.n_bytes <= 1500
    assert 1 - grid.holdout_r2 == pytest.approx(1 - dense.holdout_r2, rel=0.05)


@pytest.mark.usefixtures("without_zero_centre")
@pytest.mark.parametrize("target", [0.99, 0.999])
def test_the_search_on_leading_directions_finds_the_whole_decomposition_s_file(target, monkeypatch):
    """A long window's search reads the leading directions alone, widening them while it needs more (here from 1):
    the same rank, bits and bytes as the search on the whole decomposition, the same R² to 1e-12."""
    values = _window()
    whole = quantised_svd(values, target)
    widened = _leading_directions_only(monkeypatch, start=1)
    leading = quantised_svd(values, target)
    assert len(widened) >= 2 and widened == sorted(widened)  # from 1 direction, widened until the search stopped
    assert (leading.rank, leading.bits, leading.n_bytes) == (whole.rank, whole.bits, whole.n_bytes)
    assert leading.r2 == pytest.approx(whole.r2, abs=1e-12) and leading.r2 >= target


def _slowly_decaying_window() -> np.ndarray:
    """(T, N, C) = (80, 100, 2), 60 random temporal directions of weights 0.97^k: at R² 0.999 the search's first
    rank is in the fifties, past DENSE_RANKS, and 64 leading directions are widened once."""
    rng = np.random.default_rng(0)
    flat = (rng.normal(size=(80, 60)) * 0.97 ** np.arange(60)) @ rng.normal(size=(60, 200))
    flat += 1e-4 * rng.normal(size=flat.shape)
    return (flat.reshape(80, 100, 2) * [1.0, 0.3] + [1.0, -2.0]).astype(np.float32)


@pytest.mark.parametrize("start", [None, 64])
def test_the_search_tries_a_grid_of_ranks_past_dense_ranks_and_finds_the_rank_by_rank_file(start, monkeypatch):
    """Past DENSE_RANKS the search at a target tries every (rank // RANK_GRID)-th rank, refines around its best and
    walks from there (rank by rank over the whole simulation, C's search from rank ~290 ran over 2 h unfinished),
    and on more leading directions (`start`) goes on from its best: ranks skipped, a file within 1 % of the rank by
    rank search's."""
    values = _slowly_decaying_window()
    tried: list[int] = []
    real = svd_baseline_module._encode_rank
    monkeypatch.setattr(svd_baseline_module, "_encode_rank",
                        lambda centred, basis, *a, **k: tried.append(basis.shape[1]) or real(centred, basis, *a, **k))
    with monkeypatch.context() as every_rank:
        every_rank.setattr(svd_baseline_module, "DENSE_RANKS", 10 ** 6)
        dense = quantised_svd(values, 0.999, bits=(6,))
    dense_tried = sorted(set(tried))
    tried.clear()
    if start is not None:
        _leading_directions_only(monkeypatch, start)
    grid = quantised_svd(values, 0.999, bits=(6,))
    assert dense_tried == list(range(dense_tried[0], dense_tried[-1] + 1)) and dense.rank > svd_baseline_module.DENSE_RANKS
    assert set(range(dense_tried[0], dense.rank)) - set(tried)  # a rank below the best skipped
    assert grid.r2 >= 0.999 and grid.n_bytes <= dense.n_bytes * 1.01


@pytest.mark.parametrize("target", [0.99, 0.999])
def test_screened_candidates_give_the_file_of_an_all_exact_search(target, monkeypatch):
    """Candidates are ranked by the fast screen and only the near-best compressed for real: the same file as
    when every candidate is compressed for real (an infinite margin), with fewer exact compressions."""
    values = _window(1)
    exact_calls = []
    real = SVDParts.file_bytes

    def counted(parts: SVDParts, window: dict, transposed: bool, screen: bool = False) -> int:
        exact_calls.extend([] if screen else [1])
        return real(parts, window, transposed, screen)

    monkeypatch.setattr(SVDParts, "file_bytes", counted)
    screened = quantised_svd(values, target)
    n_screened = len(exact_calls)
    exact_calls.clear()
    monkeypatch.setattr(svd_baseline_module, "SCREEN_MARGIN", math.inf)
    everything = quantised_svd(values, target)
    assert (screened.rank, screened.bits, screened.step, screened.n_bytes) == (
        everything.rank, everything.bits, everything.step, everything.n_bytes)
    assert 0 < n_screened < len(exact_calls)


def _bytes_of_step(x: float, noise: bool) -> int:
    """A file's bytes against log2 of its step: about linear, a few bytes of LZMA-like jitter."""
    jitter = int(7 * math.sin(977 * x)) if noise else 0
    return int(200_000 - 9_000 * x) + jitter


@pytest.mark.parametrize("start", [-8.0, 3.0, 9.5, 12.0])
@pytest.mark.parametrize("noise", [False, True])
def test_the_budget_search_brackets_the_finest_fitting_step(start, noise):
    """`finest_fitting` answers a size that fits, and a size a tolerance finer does not (on a monotone size);
    from any start it takes a handful of sizes, where a 24-octave bisection took 14."""
    tolerance = 24 / 4096
    calls = []

    def size(x: float) -> int:
        calls.append(x)
        return _bytes_of_step(x, noise)

    budget = 110_000  # the linear size's root at x = 10
    found = svd_baseline_module.finest_fitting(size, budget, start, -14.0, 10.0 + 14.0, tolerance)
    assert _bytes_of_step(found, noise) <= budget
    assert found == pytest.approx(10.0, abs=0.01)
    if not noise:
        assert _bytes_of_step(found - tolerance, noise) > budget
    assert len(calls) <= 10


def test_the_budget_search_answers_the_finest_end_when_everything_fits():
    assert svd_baseline_module.finest_fitting(lambda x: 10, 100, 0.0, -24.0, 0.0, 0.01) == -24.0


@pytest.mark.parametrize("budget", [500, 900, 1100])
def test_the_held_out_rival_spends_its_budget(budget):
    """The held-out rival's file comes within 1 % of its byte budget (the finest step that fits, to 0.4 %)."""
    values = _window()
    train, test = _held_out_frames()
    point = quantised_svd_holdout(values, train, test, budget)
    assert 0.99 * budget <= point.n_bytes <= budget



def test_the_held_out_search_recovers_from_a_screen_that_ranks_the_layouts_wrongly(monkeypatch):
    """The budget search starts in the layout that screens smaller and goes on in the other where that packs
    smaller for real: with the screen's order reversed, the same files (to the search's tolerance)."""
    values = _window()
    train, test = _held_out_frames()
    honest = [quantised_svd_holdout(values, train, test, budget) for budget in (700, 1100)]
    real = SVDParts.layout_bytes

    def reversed_screen(parts: SVDParts, window: dict, screen: bool = False) -> tuple[int, int]:
        sizes = real(parts, window, screen)
        return sizes[::-1] if screen else sizes

    monkeypatch.setattr(SVDParts, "layout_bytes", reversed_screen)
    fooled = [quantised_svd_holdout(values, train, test, budget) for budget in (700, 1100)]
    for a, b in zip(honest, fooled):
        assert (a.rank, a.bits) == (b.rank, b.bits)
        assert a.n_bytes == pytest.approx(b.n_bytes, rel=0.01) and b.n_bytes <= a.n_bytes + 8
        assert b.holdout_r2 == pytest.approx(a.holdout_r2, abs=1e-5)


def test_the_search_holds_only_the_candidates_that_may_still_be_finalists(monkeypatch):
    """Candidates screened out are dropped as the ranks go by: the search of C at 1 000 frames held every one of
    hundreds (with its float64 coefficients) and took the VM's 23 GB. Each rank's candidates stay alive only
    while they are within SCREEN_MARGIN of the smallest screened size so far."""
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 60)[:, None]
    curves = np.hstack([np.cos(np.pi * j * t) * 0.7 ** j for j in range(12)])  # a slowly falling spectrum
    values = (curves @ rng.normal(size=(12, 200)) + 1e-4 * rng.normal(size=(60, 200))).reshape(60, 100, 2)
    made = []  # weak references to every candidate made
    peak = []
    real = svd_baseline_module._encode_rank

    def tracked(*args, **kwargs):
        candidate = real(*args, **kwargs)
        gc.collect()
        peak.append(sum(ref() is not None for ref in made))
        if candidate is not None:
            made.append(weakref.ref(candidate))
        return candidate

    monkeypatch.setattr(svd_baseline_module, "_encode_rank", tracked)
    monkeypatch.setattr(svd_baseline_module, "process_workers", lambda: 1)
    monkeypatch.setattr(svd_baseline_module, "SCREEN_MARGIN", 0.0)
    gc.freeze()  # collect only what the search makes: in the whole suite's heap each collection took ~0.1 s
    try:
        assert quantised_svd(values, 0.999) is not None
    finally:
        gc.unfreeze()
    n_bits = len(svd_baseline_module.DEFAULT_BITS)
    assert len(made) > 2 * n_bits + 1  # many candidates were made over the ranks
    assert max(peak) <= 2 * n_bits + 1  # alive: two ranks' candidates (the last and the one screening) and the best


def test_the_step_guess_extrapolates_the_nearest_ranks_below():
    found = {10: -3.0, 14: -2.5, 30: 1.0}
    assert svd_baseline_module.step_guess(found, 16) == pytest.approx(2.0 ** -2.25)  # on the line of 10 and 14
    assert svd_baseline_module.step_guess({10: -3.0}, 16) == pytest.approx(2.0 ** -3.0)
    assert svd_baseline_module.step_guess({10: -3.0}, 4) == pytest.approx(2.0 ** -3.0)  # nothing below: the nearest
    assert svd_baseline_module.step_guess({}, 4) is None


@pytest.mark.usefixtures("without_zero_centre")
@pytest.mark.parametrize("budget", [1500, 4000])
def test_the_held_out_search_tries_more_bits_in_full_only_where_they_win(budget, monkeypatch):
    """Ranks are searched at the fewest bits; more bits are tried at that search's best rank and searched in
    full only if they win there (at 4 kB, near R² 1, 16 bits do; at 1.5 kB they do not): the answer is the best
    of a full search at each bits."""
    values, train, test = _many_directions_window()
    alone = [quantised_svd_holdout(values, train, test, budget, bits=(b,)) for b in (16, 8)]
    tried: list[tuple[int, int]] = []
    real = svd_baseline_module._fit_budget
    monkeypatch.setattr(svd_baseline_module, "_fit_budget",
                        lambda *a, **k: tried.append((a[1].shape[1], a[2])) or real(*a, **k))
    point = quantised_svd_holdout(values, train, test, budget, bits=(16, 8))
    assert point == max(alone, key=lambda p: p.holdout_r2)
    n_wide = len([r for r, b in tried if b == 16])
    assert (n_wide == 1) if point.bits == 8 else (n_wide > 3)


def _resting_window(seed: int = 0) -> np.ndarray:
    """(T, N, C) = (30, 60, 1): two thirds of the particles rest at exactly 1 (Jp of the elastic ones), the rest
    vary slowly about 2.5, so the mean (2.0) is no particle's value."""
    rng = np.random.default_rng(seed)
    values = np.ones((30, 60, 1), dtype=np.float32)
    t = np.linspace(0, 1, 30)[:, None]
    values[:, 40:, 0] = (2.5 + rng.normal(size=20) * (1 + 0.05 * t)).astype(np.float32)
    return values


@pytest.mark.usefixtures("without_zero_centre")
def test_the_rival_centres_on_the_resting_value_where_that_file_is_smaller(monkeypatch):
    """Centred on the mean, every resting particle shares one rounding error; centred on its value, its codes are 0
    and exact. The rival tries both (as our codec does) and reports the R² of the file it keeps, recomputed here
    about the window's own mean."""
    values = _resting_window()
    point = quantised_svd(values, 0.995)
    decoded = point.decode(values.shape[1])
    assert point.centred_on == "rest" and point.mean.tolist() == [1.0]
    assert (decoded[:, :40] == 1.0).all()  # the resting particles exactly
    assert point.r2 == pytest.approx(_r2(values, decoded), abs=1e-12) and point.r2 >= 0.995
    monkeypatch.setattr(svd_baseline_module, "resting_value", lambda *a: None)
    about_mean = quantised_svd(values, 0.995)
    assert about_mean.centred_on == "mean" and point.n_bytes < about_mean.n_bytes
    assert about_mean.r2 == pytest.approx(_r2(values, about_mean.decode(values.shape[1])), abs=1e-12)


@pytest.mark.usefixtures("without_zero_centre")
def test_the_held_out_rival_keeps_the_better_centre(monkeypatch):
    values = _resting_window(1)
    test = np.arange(2, 28, 4)
    train = np.setdiff1d(np.arange(30), test)
    centred = list(svd_baseline_module.centres(values[train]))
    assert [c.name for c in centred] == ["mean", "rest"]
    assert centred[1].ss_tot == pytest.approx(centred[0].sumsq)
    assert centred[1].sumsq > centred[1].ss_tot  # about 1, not the mean: what the residual sums start from
    point = quantised_svd_holdout(values, train, test, 400)
    monkeypatch.setattr(svd_baseline_module, "resting_value", lambda *a: None)
    about_mean = quantised_svd_holdout(values, train, test, 400)
    assert point.centred_on == "rest" and about_mean.centred_on == "mean"
    assert point.holdout_r2 > about_mean.holdout_r2 and point.n_bytes <= 400 and 0.99 < point.r2 <= 1


def test_the_held_out_rival_does_not_hold_its_training_frames_through_the_last_centre_s_search(monkeypatch):
    """The training frames' copy (1.1 GB of F over the whole simulation) goes once the last centred matrix is made."""
    values = _resting_window(2)
    test = np.arange(2, 28, 4)
    train = np.setdiff1d(np.arange(30), test)
    refs, alive = [], []
    real_centres, real_search = svd_baseline_module.centres, svd_baseline_module._best_holdout_about

    def centres(frames, window=None):
        refs.append(weakref.ref(frames))
        return real_centres(frames, window)

    def search(centred, *args):
        gc.collect()
        alive.append((centred.name, refs[0]() is not None))
        return real_search(centred, *args)

    monkeypatch.setattr(svd_baseline_module, "centres", centres)
    monkeypatch.setattr(svd_baseline_module, "_best_holdout_about", search)
    assert quantised_svd_holdout(values, train, test, 400) is not None
    assert alive == [("mean", True), ("rest", True), ("zero", False)]
    assert [name for name, _ in alive] == [c.name for c in real_centres(values[train])]


def _near_zero_window(seed: int = 0) -> np.ndarray:
    """(30, 60, 1): 45 particles that stay near zero without resting there (S and C at 1 000 frames keep many
    such), 15 that move far from it."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, 30)[:, None]
    values = 1e-3 * np.sin(3 * t + rng.uniform(0, 6, 60)) * rng.uniform(0.5, 1, 60)
    values[:, 45:] += 4.0 + 2.0 * np.cos(2 * t + rng.uniform(0, 6, 15))
    return values[..., None].astype(np.float32)


def test_the_rival_may_not_centre_and_keeps_that_file_where_it_is_smaller(monkeypatch):
    """Particles near zero cost codes near zero in a factorisation of the values themselves, where about the mean
    each costs the mean's offset: the rival tries zero as a centre (as our split files do) and its R² is still
    about the window's own mean."""
    values = _near_zero_window()
    point = quantised_svd(values, 0.995)
    assert point.centred_on == "zero" and point.mean.tolist() == [0.0]
    assert point.r2 == pytest.approx(_r2(values, point.decode(values.shape[1])), abs=1e-12) and point.r2 >= 0.995
    monkeypatch.setattr(svd_baseline_module, "other_centres", lambda named: named)
    about_mean = quantised_svd(values, 0.995)
    assert about_mean.centred_on == "mean" and point.n_bytes < about_mean.n_bytes


def test_projections_on_the_stored_directions_are_kept_from_rank_to_rank():
    """ProjectedDirections projects only the directions it has not seen: a rank more costs one row, and a stored
    direction that changed (its scale's storage flipped with the others) and every one after it are projected
    afresh; either way the rows are the window's projections."""
    rng = np.random.default_rng(0)
    matrix = torch.from_numpy(rng.normal(size=(40, 30)))
    temporal = torch.from_numpy(rng.normal(size=(40, 8)))
    kept = svd_baseline_module.ProjectedDirections(matrix)
    projected_columns = []
    real_project = kept.project
    kept.project = lambda columns: projected_columns.append(columns.shape[1]) or real_project(columns)
    for k in (3, 4, 6):
        rows = kept.projected(temporal[:, :k])
        assert torch.allclose(rows, temporal[:, :k].T @ matrix, rtol=1e-12, atol=1e-12)
    changed = temporal[:, :7].clone()
    changed[:, 2] *= 1.0 + 1e-3
    rows = kept.projected(changed)
    assert torch.allclose(rows, changed.T @ matrix, rtol=1e-12, atol=1e-12)
    assert projected_columns == [3, 1, 2, 5]  # then from the changed third direction on


def _atoms(seed: int) -> np.ndarray:
    """(30, 400, 1) of rank one in time, four particles in five at the same value: uncentred, their rank-1 codes
    sit at one value, and steps that nearly divide it pass again past the first crossing."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, 30)[:, None]
    codes = np.where(rng.random(400) < 0.8, 5.0, rng.normal(size=400))
    return ((1.0 + 0.3 * np.sin(6 * t)) * codes + 0.002 * rng.normal(size=(30, 400))).reshape(30, 400, 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_finalist_is_looked_past_for_a_larger_passing_step(seed, monkeypatch):
    """The search lands on the first crossing of the goal; its finalists are encoded again at the largest passing
    step up to twice it (step_search.largest_beyond), as the codec's are, so neither side keeps a step that
    happened to be found first. Where the codes are too many to scan (scan_points) they keep theirs."""
    centred = next(c for c in svd_baseline_module.centres(_atoms(seed).astype(np.float32)) if c.name == "zero")
    basis, _ = temporal_basis(centred.matrix)
    first = svd_baseline_module._encode_rank(centred, basis[:, :1], 8, 0.995)
    projections = svd_baseline_module.ProjectedDirections(centred.matrix)
    again = svd_baseline_module._looked_past(centred, basis, first, 0.995, projections)
    assert again.r2 >= 0.995 and again.step > 1.15 * first.step and again.screened <= first.screened
    monkeypatch.setattr(svd_baseline_module, "scan_points", lambda n_codes: 0)
    assert svd_baseline_module._looked_past(centred, basis, first, 0.995, projections) is first


def test_the_held_out_rival_scans_finer_steps_where_a_small_file_s_size_jitters(monkeypatch):
    """A small file's LZMA size jitters with its code step, so the budget search's answer need not be the best
    file that fits: the finer steps scanned at the best rank and bits keep every file within its budget, never
    predict the held-out frames worse, and here predict them better."""
    values = _window(3)
    train, test = _held_out_frames()
    budgets = (500, 650, 800, 950, 1100)
    scanned = [quantised_svd_holdout(values, train, test, budget) for budget in budgets]
    monkeypatch.setattr(svd_baseline_module, "JITTER_SCAN_MAX_BYTES", 0)
    plain = [quantised_svd_holdout(values, train, test, budget) for budget in budgets]
    for budget, a, b in zip(budgets, scanned, plain, strict=True):
        assert a.n_bytes <= budget and a.holdout_r2 >= b.holdout_r2
    assert any(a.holdout_r2 > b.holdout_r2 for a, b in zip(scanned, plain, strict=True))
