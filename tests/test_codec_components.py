"""A codec file that codes each particle's components apart (format 8, mpm_inr.codec.components): it decodes to
what the encoder scored, at any t; the encoder keeps it only where it is the smaller file; an older reader refuses
it as newer; and the window is viewed, not copied, to build it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from codec_runs import train_tiny
from scipy.interpolate import CubicSpline

from mpm_inr.codec import (
    CodecError,
    CodecSettings,
    bilinear,
    components,
    encode_model,
    format,
    load,
    neighbour_codes,
)
from mpm_inr.codec import encode as encode_module
from mpm_inr.codec.__main__ import main as codec_main
from mpm_inr.codec.decode import constant_mask
from mpm_inr.codec.rundir import load_run
from mpm_inr.data.window import FieldWindow, holdout_mask
from mpm_inr.errors import ConfigError
from mpm_inr.metrics import r2_score
from mpm_inr.metrics.regression import component_sums


@pytest.fixture(scope="module")
def s_run(data_root, tmp_path_factory) -> Path:
    """A lagrangian S run: four components, the preset's bilinear codes."""
    run_dir = tmp_path_factory.mktemp("s_run")
    train_tiny(data_root, run_dir, "field=S")
    return run_dir


def _ss_tot(window: FieldWindow) -> float:
    gt = window.values[window.train_frames].astype(np.float64)
    return float(component_sums(gt, gt)[1].sum())


def _split_file(run: Path, target: float, path: Path, constant: np.ndarray | None = None, centred: bool = True):
    cfg, window, network = load_run(run)
    window = window if centred else replace(window, mean=np.zeros_like(window.mean))
    return _split_file_of(cfg, window, network, target, path, constant)


def _split_file_of(cfg, window: FieldWindow, network, target: float, path: Path, constant: np.ndarray | None = None):
    apart = np.zeros(window.values[0].size, dtype=bool) if constant is None else constant
    searched = encode_module._encoded_split(cfg["model"], components.in_parts(window), 1.0, CodecSettings(target_r2=target),
                                            _ss_tot(window), apart, network.latent_dim * window.n_components)
    assert searched is not None
    candidate = searched.finished()
    format.write(path, candidate.meta, candidate.blobs, candidate.payload)
    return window, candidate


def test_a_split_file_decodes_to_what_its_encoder_scored_at_any_t(s_run, tmp_path, monkeypatch):
    path = tmp_path / "split.mpmc"
    window, candidate = _split_file(s_run, 0.99, path)
    box = format.read(path)
    assert box.version == format.FORMAT_VERSION == 13 and components.is_split(box.meta["encoding"])
    assert box.meta["window"]["std"] == [1.0] * window.n_components  # its curves are in original units
    model = load(path)
    assert model.network is None and model.series.split and model.constant.size == window.values[0].size
    decoded = model.decode_window()
    assert decoded.shape == window.values.shape and decoded.dtype == np.float32
    r2 = r2_score(window.values, decoded)
    assert r2 >= 0.99 and 1 - r2 == pytest.approx(1 - candidate.search["r2_estimate"], rel=1e-3)
    start = int(model.frames[0])
    between = model.predict([start + 2.5, start + 3.0])
    assert np.isfinite(between).all() and np.allclose(between[1], decoded[3])
    assert not np.allclose(between[0], decoded[2]) and not np.allclose(between[0], decoded[3])
    assert "components" not in box.meta["model"]  # the model's config is the run's, as in every file
    monkeypatch.setattr(format, "FORMAT_VERSION", 7)
    with pytest.raises(CodecError, match=f"format version {box.version}, newer than this reader's 7"):
        format.read(path)


def test_a_split_file_may_store_its_codes_as_their_neighbours_residuals(s_run, tmp_path, monkeypatch):
    """A split file's codes as residuals of a prediction from each particle's earlier neighbours
    (neighbour_codes) decode bit for bit as the codes themselves, in a format-13 file an older reader refuses; a
    small file never tries them (the cells cost ~2 bytes a particle), and where tried the smaller file is kept."""
    plain_path = tmp_path / "plain.mpmc"
    window, plain = _split_file(s_run, 0.99, plain_path)
    assert neighbour_codes.KEY not in plain.meta["encoding"]
    box = format.read(plain_path)
    n_coded = window.n_particles * window.n_components
    constant = constant_mask(box.meta, box.blobs, n_coded)
    particles = (int((~constant).sum()),) + ((int(constant.sum()),) if constant.any() else ())
    rows = neighbour_codes.RowMap.of_split(constant, window.n_components)
    near = neighbour_codes.Neighbours.at(window.positions[0], window.material)
    blobs, encoding = neighbour_codes.predicted_blobs(box.blobs, box.meta["encoding"], particles, rows, near)
    predicted_path = tmp_path / "predicted.mpmc"
    format.write(predicted_path, {**box.meta, "encoding": encoding}, blobs)
    assert np.array_equal(load(predicted_path).decode_window(), load(plain_path).decode_window())
    monkeypatch.setattr(neighbour_codes, "MIN_SCREENED_BYTES", 0)
    _, tried = _split_file(s_run, 0.99, tmp_path / "tried.mpmc")
    assert tried.n_bytes <= plain.n_bytes
    monkeypatch.setattr(format, "FORMAT_VERSION", 12)
    with pytest.raises(CodecError, match="format version 13, newer than this reader's 12"):
        load(predicted_path)


def test_particle_components_constant_over_the_window_are_stored_by_value(s_run, tmp_path):
    """Where one component of some particles never moves, the split file may store those particle-components as
    one value each (a mask of N·C bits and a code per value, sharing the error budget): they decode to a constant
    over every frame, and the whole within budget."""
    cfg, window, network = load_run(s_run)
    values = window.values.copy()
    values[:, :40, 0] = values[0, :40, 0]  # S00 and S11 of 40 particles held still: their tensor's first two parts
    values[:, :40, 3] = values[0, :40, 3]
    window = FieldWindow(window.field, window.frames, values, window.positions, window.material, window.object_id,
                         window.held_out, window.mean, window.std)
    parts = components.in_parts(window)
    apart = encode_module.constant_particles(components.split_window(parts).values)
    assert apart.reshape(-1, 4)[:40, :2].all() and apart.sum() >= 80
    candidate = encode_module._encoded_split(cfg["model"], parts, 1.0, CodecSettings(target_r2=0.99),
                                             _ss_tot(window), apart, network.latent_dim * 4).finished()
    format.write(tmp_path / "c.mpmc", candidate.meta, candidate.blobs, candidate.payload)
    decoded = load(tmp_path / "c.mpmc").decode_window()
    still = decoded[:, :40, 0::3]
    assert (still == still[0]).all()
    assert load(tmp_path / "c.mpmc").constant.sum() == apart.sum() and r2_score(values, decoded) >= 0.99


def test_the_encoder_keeps_the_split_file_only_where_it_is_smaller(s_run, tmp_path):
    cfg, window, network = load_run(s_run)
    settings = {layout: CodecSettings(target_r2=0.99, components=layout) for layout in ("shared", "both", "auto")}
    reports = {layout: encode_model(network, cfg["model"], window, 1.0, tmp_path / f"{layout}.mpmc", s)
               for layout, s in settings.items()}
    files = {centred: _split_file(s_run, 0.99, tmp_path / f"split_{centred}.mpmc", centred=centred)[1]
             for centred in (True, False)}
    uncentred = load(tmp_path / "split_False.mpmc")
    assert not any(uncentred.meta["window"]["mean"])  # stored as the centre: zero
    assert 1 - r2_score(window.values, uncentred.decode_window()) == pytest.approx(
        1 - files[False].search["r2_estimate"], rel=1e-3)
    frames, constant = encode_module.training_frames(window), encode_module.constant_particles(window.values, None)
    chosen = encode_module.split_centre(components.in_parts(window), constant, frames, _ss_tot(window), 0.99)[0]
    split = files[chosen == "mean"]  # the split file is searched about one centre only
    assert reports["shared"]["components"] == "shared"
    assert reports["both"]["bytes"] == min(reports["shared"]["bytes"], split.n_bytes)
    assert reports["both"]["components"] == ("parts" if split.n_bytes < reports["shared"]["bytes"] else "shared")
    assert reports["auto"]["bytes"] >= reports["both"]["bytes"] and reports["auto"]["r2"] >= 0.99  # one search
    without_target = encode_model(network, cfg["model"], window, 1.0, tmp_path / "own.mpmc",
                                  CodecSettings(components="both"))
    assert without_target["components"] == "shared"  # no target: the model's own accuracy, in its own layout


def test_auto_searches_a_short_windows_split_file_once_with_its_still_components_by_value():
    constant, first_long = np.array([True, False, False, True]), encode_module.SPLIT_BOTH_CONSTANTS_MIN_FRAMES
    [only] = encode_module.split_constants(constant, first_long - 1, "auto")
    assert only.tolist() == constant.tolist()
    for n_frames, layouts in ((first_long, "auto"), (first_long - 1, "both"), (first_long, "both")):
        by_value, coded = encode_module.split_constants(constant, n_frames, layouts)
        assert by_value.tolist() == constant.tolist() and not coded.any()
    assert len(encode_module.split_constants(np.zeros(4, bool), first_long, "both")) == 1


def test_encode_model_searches_the_split_file_as_split_constants_says(s_run, tmp_path, monkeypatch):
    """A window with still particle-components: `both` searches its split file with and without them stored by
    value, `auto` on a short window only with (one search: the 10-s budget of a 100-frame encoding)."""
    cfg, window, network = load_run(s_run)
    values = window.values.copy()
    values[:, :40, 0] = values[0, :40, 0]
    values[:, :40, 3] = values[0, :40, 3]
    window = replace(window, values=values)
    still = int(encode_module.constant_particles(components.split_window(components.in_parts(window)).values).sum())
    assert still >= 80
    searched: list[int] = []
    real = encode_module._encoded_split

    def recording(model_cfg, centred, t_period, settings, ss_tot, constant, max_rank):
        searched.append(int(constant.sum()))
        return real(model_cfg, centred, t_period, settings, ss_tot, constant, max_rank)

    monkeypatch.setattr(encode_module, "_encoded_split", recording)
    assert window.n_frames < encode_module.SPLIT_BOTH_CONSTANTS_MIN_FRAMES
    reports = {}
    for layouts in ("both", "auto"):
        searched.clear()
        reports[layouts] = encode_model(network, cfg["model"], window, 1.0, tmp_path / f"{layouts}.mpmc",
                                        CodecSettings(target_r2=0.99, components=layouts))
        assert reports[layouts]["r2"] >= 0.99
        assert searched == ([still, 0] if layouts == "both" else [still])
    assert reports["auto"]["bytes"] >= reports["both"]["bytes"]


def test_the_split_view_is_the_window_itself_centred_per_component():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(6, 5, 3)).astype(np.float32)
    window = FieldWindow("S", np.arange(6), values, np.zeros((6, 5, 2), np.float32), np.arange(5) % 2,
                         np.arange(5) % 3, np.zeros(6, bool), np.array([1.0, 2.0, 3.0], np.float32),
                         np.array([2.0, 2.0, 2.0], np.float32))
    view = components.split_window(window)
    assert np.shares_memory(view.values, values) and view.values.shape == (6, 15, 1)
    assert view.mean[:, 0].tolist() == [1.0, 2.0, 3.0] * 5 and view.std.tolist() == [1.0]
    assert view.object_id.tolist() == np.repeat(np.arange(5) % 3, 3).tolist()
    idx = np.array([0, 4, 14])
    block = np.concatenate(list(bilinear.target_blocks(view.values, view.mean, idx)), axis=1)
    np.testing.assert_array_equal(block[..., 0], values.reshape(6, 15)[:, idx] - view.mean[idx, 0])
    np.testing.assert_array_equal(components.join(view.values, 3), values)


def test_a_split_file_is_searched_about_the_centre_most_particles_sit_near():
    """split_centre: zero where most particles stay near zero and a few far off pull the mean away (S, C), the
    mean where the particles cluster away from zero (F near the identity)."""
    rng = np.random.default_rng(0)
    n_frames, n_particles = 20, 400
    near_zero = rng.normal(0.0, 1e-3, (n_frames, n_particles, 2)).astype(np.float32)
    near_zero[:, :20] += 5.0  # a few loaded particles
    near_one = (1.0 + rng.normal(0.0, 0.05, (n_frames, n_particles, 2))).astype(np.float32)
    for values, expected in ((near_zero, "zero"), (near_one, "mean")):
        window = FieldWindow(field="S", frames=np.arange(n_frames), values=values,
                             positions=np.zeros((n_frames, n_particles, 2), dtype=np.float32),
                             material=np.zeros(n_particles, dtype=np.int64),
                             object_id=np.zeros(n_particles, dtype=np.int64), held_out=np.zeros(n_frames, dtype=bool),
                             mean=values.reshape(-1, 2).mean(axis=0), std=values.reshape(-1, 2).std(axis=0))
        constant = np.zeros(n_particles, dtype=bool)
        name, centred = encode_module.split_centre(window, constant, None, _ss_tot(window), 0.995)
        assert name == expected and centred.values is window.values


def test_unknown_component_layouts_are_one_line():
    with pytest.raises(ConfigError, match="codec.components=apart is not one of auto, both, shared"):
        CodecSettings.from_config({"components": "apart"})
    assert CodecSettings.from_config({}).components == "auto"


def test_the_window_s_own_curves_start_a_split_search_and_few_of_them(s_run):
    """The split search starts from the window's best series at its highest refinable degree, as few curves as
    leave a small share of the error budget: fewer than the model's K·C, more than none."""
    window = load_run(s_run)[1]
    view = components.split_window(window)
    ss_tot = _ss_tot(window)
    u = encode_module.chebyshev.sample_times(window.n_frames)
    members = [np.arange(view.n_particles)]
    loose = encode_module.SeriesTargets(view.values, view, members, None, None, u, [], ss_tot, 40, 0.05 * ss_tot)
    tight = encode_module.SeriesTargets(view.values, view, members, None, None, u, [], ss_tot, 40, 1e-4 * ss_tot)
    one = encode_module.chebyshev.ONE_STRETCH
    few, many = loose.samples_for(one), tight.samples_for(one)
    assert few.shape[:2] == (u.size, 1) and few.shape[3] == 1 and 1 <= few.shape[2] < many.shape[2] <= 40
    assert np.isfinite(many).all()


def test_a_split_search_stops_at_the_degree_of_the_window_s_own_curves(s_run):
    """The window's own curves are polynomials of window_degree: a longer series fits them with extra
    coefficients that are rounding noise (each costing bytes), so its search ends there; a network's curves
    are searched at every degree."""
    window = load_run(s_run)[1]
    view = components.split_window(window)
    u = encode_module.chebyshev.sample_times(window.n_frames)
    members, one = [np.arange(view.n_particles)], encode_module.chebyshev.ONE_STRETCH
    own = encode_module.SeriesTargets(view.values, view, members, None, None, u, [], _ss_tot(window), 8)
    top, every = own.window_degree(one), own.degrees(one)
    assert top is not None and every[-1] > top  # degrees past the window's exist, and are not searched
    assert own.searched_degrees(one) == [d for d in every if d <= top]
    samples = own.samples_for(one)
    longer = encode_module.chebyshev.fit_series(samples, u, every[-1])
    assert np.abs(longer[top + 1:]).max() <= 1e-9 * np.abs(longer).max()
    network = encode_module.SeriesTargets(view.values, view, members, None, samples, u, [], _ss_tot(window), 8)
    assert network.searched_degrees(one) == every


def test_many_directions_are_searched_over_the_whole_range_of_caps(monkeypatch):
    """With many kept directions (a split file's K·C), fewer are searched by quarter steps down to the first cap
    that misses the goal, then around the best at halving strides: past a local minimum next to K - 1 (where
    a step at a time stopped), the best cap far below it is found, in a couple of dozen step searches, not K."""
    visited = []
    near_top = {71: 5000, 70: 4000, 69: 4500, 68: 4600}

    def fake(kept_series, constant_fit, bits, ss_tot, goal, cap=None, guess=None):
        visited.append(cap)
        return None if cap < 9 else (near_top.get(cap, 1000 + (cap - 20) ** 2), {"cap": cap, "step": 1.0}, {})

    kept = SimpleNamespace(fits=[bilinear.GroupFit(np.eye(72), np.zeros((5, 72)), 0.0, np.eye(72),
                                                   np.zeros((5, 72)))])
    monkeypatch.setattr(encode_module, "_series_at_goal", fake)
    points = encode_module._fewer_directions(kept, 6, [], 1.0, 0.99)
    assert min(points, key=lambda p: p[0])[1]["cap"] == 20
    assert len(visited) == len(set(visited)) <= 24 and all(1 <= cap <= 71 for cap in visited)


def test_a_split_search_ends_with_the_curves_frame_by_frame(s_run, monkeypatch):
    """After the series (stopped at the first clearly larger file), a split search tries the curves' values at
    every frame with straight lines between (stretches of two frames, degree 1: the SVD's own temporal factors),
    on windows up to FRAME_WISE_MAX_FRAMES; such a file decodes between frames on the line between them."""
    window = load_run(s_run)[1]
    view = components.split_window(window)
    u = encode_module.chebyshev.sample_times(window.n_frames)
    visited = []

    def fake(samples, u_samples, degrees, projected, *args):
        visited.append((projected.stretches.count, tuple(degrees)))
        return [({1: 1000, 2: 2000}.get(projected.stretches.count, 900), {}, {})]

    monkeypatch.setattr(encode_module.chebyshev, "STRETCH_COUNTS", (1, 2, 4))
    monkeypatch.setattr(encode_module.chebyshev, "MIN_STRETCH_FRAMES", 5)
    monkeypatch.setattr(encode_module, "_series_points", fake)
    search = encode_module.SeriesTargets(view.values, view, [np.arange(view.n_particles)], None, None, u, [],
                                         _ss_tot(window), 8, frame_wise=True)
    assert search.frame_wise == encode_module.chebyshev.Stretches(10, 20)  # stretches of two frames, degree 1
    points = search.points(0.5, CodecSettings(weight_bits=(8,)))
    assert [count for count, _ in visited] == [1, 2, 10] and visited[-1][1] == (1,)  # 4 not: 2 was clearly larger
    assert min(p[0] for p in points) == 900
    monkeypatch.setattr(encode_module, "FRAME_WISE_MAX_FRAMES", 19)
    assert encode_module.SeriesTargets(view.values, view, [np.arange(view.n_particles)], None, None, u, [], 1.0, 8,
                                       frame_wise=True).frame_wise is None
    held = replace(view, held_out=holdout_mask(view.n_frames, 4))  # knots: dense splines, a shorter limit
    monkeypatch.setattr(encode_module, "FRAME_WISE_MAX_FRAMES", 20)
    assert encode_module.frame_wise_allowed(view) and encode_module.frame_wise_allowed(held)
    monkeypatch.setattr(encode_module, "KNOTS_MAX_FRAMES", 19)
    assert encode_module.frame_wise_allowed(view) and not encode_module.frame_wise_allowed(held)
    cheb = encode_module.chebyshev
    pairs, frames = cheb.Stretches(10, 20), cheb.frame_times(20)
    at_frames = np.sin(np.arange(20.0))[:, None]
    coefs = np.linalg.solve(pairs.vander(frames, 1), at_frames)  # 20 rows: two per stretch of two frames
    np.testing.assert_allclose(cheb.evaluate(coefs, frames, pairs), at_frames, atol=1e-12)
    for a in (0, 1, 6, 7):  # between two frames of a stretch and between two stretches alike
        between = cheb.evaluate(coefs, (frames[a:a + 1] + frames[a + 1:a + 2]) / 2, pairs)
        np.testing.assert_allclose(between[0], (at_frames[a] + at_frames[a + 1]) / 2, atol=1e-12)


def test_the_whole_simulation_may_hold_its_curves_frame_by_frame_but_not_at_knots():
    """10 000 frames: frame by frame (block_gram keeps its sums small) where every frame trains, never as knots
    (a spline's dense fit), which stay at windows of at most 2 048 frames."""
    def window(n_frames: int, every: int = 0) -> SimpleNamespace:
        return SimpleNamespace(n_frames=n_frames, held_out=holdout_mask(n_frames, every))

    assert encode_module.frame_wise_allowed(window(10_000)) and encode_module.frame_wise_allowed(window(2048, 4))
    assert not encode_module.frame_wise_allowed(window(10_000, 4)) and not encode_module.frame_wise_allowed(window(3))
    assert not encode_module.frame_wise_allowed(window(10_001))


def test_knots_hold_a_curve_at_the_training_frames_and_a_natural_cubic_spline_between():
    cheb = encode_module.chebyshev
    train = np.flatnonzero(~holdout_mask(20, 4))
    knots = cheb.Knots.at_frames(train, 20)
    assert knots.count == train.size == 15 and cheb.curve_major(knots) and knots.meta() == {"series_knots": "training"}
    assert cheb.frame_by_frame(20, train) == knots and cheb.frame_by_frame(20, np.arange(20)) == cheb.Stretches(10, 20)
    frames = cheb.frame_times(20)
    values = np.cos(np.arange(15.0) / 3)[:, None] * np.array([[1.0, -2.0]])  # two curves' values at the knots
    np.testing.assert_allclose(cheb.evaluate(values, frames[train], knots), values, atol=1e-12)
    u = np.linspace(-1.0, 1.0, 77)
    spline = CubicSpline(train.astype(float), values, bc_type="natural")((u + 1.0) * 19 / 2)
    np.testing.assert_allclose(cheb.evaluate(values, u, knots), spline, atol=1e-12)
    assert cheb.degrees_within(20, knots) == [0] and cheb.bounded(knots, frames[train], 0)
    assert cheb.file_stretches({"series_knots": "training"}, 20, train) == knots
    assert cheb.file_stretches({"series_stretches": 4}, 20, train) == cheb.Stretches(4, 20)
    with pytest.raises(CodecError, match="series_knots 'frames' is not one this reader knows"):
        cheb.file_stretches({"series_knots": "frames"}, 20, train)
    with pytest.raises(CodecError, match="not its window's training frames"):
        cheb.Knots(3, 20, (0, 5, 5))
    with pytest.raises(CodecError, match="degree 1 on its knots"):
        knots.vander(u, 1)


def test_a_split_file_of_a_window_with_held_out_frames_may_hold_its_curves_at_the_knots(s_run, tmp_path,
                                                                                       monkeypatch):
    """With frames held out, stretches of two frames leave some stretch one training frame; the split file's
    frame-by-frame curves are then Knots (format 10): it decodes to what the encoder scored on the training
    frames, and at a held-out frame to the spline through its training frames; a version-9 reader refuses it."""
    cfg, window, network = load_run(s_run)
    window = replace(window, held_out=holdout_mask(window.n_frames, 4))
    monkeypatch.setattr(encode_module.chebyshev, "STRETCH_COUNTS", ())  # the knots alone
    path = tmp_path / "knots.mpmc"
    _, candidate = _split_file_of(cfg, window, network, 0.99, path)
    box = format.read(path)
    assert box.version == format.FORMAT_VERSION and box.meta["encoding"]["series_knots"] == "training"
    model = load(path)
    train, test = window.train_frames, window.test_frames
    decoded = model.decode_window()
    assert 1 - r2_score(window.values[train], decoded[train]) == pytest.approx(
        1 - candidate.search["r2_estimate"], rel=1e-3)
    spline = CubicSpline(train.astype(float), decoded[train], bc_type="natural")(test.astype(float))
    np.testing.assert_allclose(decoded[test], spline, rtol=1e-4, atol=1e-4 * np.abs(decoded).max())
    monkeypatch.setattr(format, "FORMAT_VERSION", 9)
    with pytest.raises(CodecError, match=f"format version {box.version}, newer than this reader's 9"):
        format.read(path)


def test_the_cli_takes_the_layouts_and_info_names_a_split_file(s_run, tmp_path, capsys):
    path = tmp_path / "cli.mpmc"
    assert codec_main(["encode", str(s_run), "--target-r2", "0.99", "--components", "both", "-o", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert codec_main(["info", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format_version"] == format.FORMAT_VERSION and info["encoding"].get("components", "shared") == report["components"]
    with pytest.raises(SystemExit):
        codec_main(["encode", str(s_run), "--components", "apart"])
    assert "invalid choice: 'apart'" in capsys.readouterr().err


def test_a_tensor_fields_split_file_codes_its_parts_and_a_symmetric_tensor_decodes_symmetric(s_run, tmp_path,
                                                                                            monkeypatch):
    """S is symmetric: in its parts (format 12) the rotation part is zero for every particle, stored by value, so
    the file decodes S01 and S10 to the same numbers, to the R² its encoder scored, and a version-11 reader
    refuses it."""
    cfg, window, network = load_run(s_run)
    assert np.array_equal(window.values[..., 1], window.values[..., 2])
    parts = components.in_parts(window)
    np.testing.assert_allclose(components.from_parts(parts.values, {components.KEY: components.PARTS}),
                               window.values, rtol=1e-6, atol=1e-6 * np.abs(window.values).max())
    assert _ss_tot(parts) == pytest.approx(_ss_tot(window), rel=1e-6)  # an orthonormal change of components
    apart = encode_module.constant_particles(components.split_window(parts).values)
    assert apart.reshape(-1, 4)[:, 3].all()  # the rotation part of every particle
    _, in_parts = _split_file_of(cfg, window, network, 0.99, tmp_path / "parts.mpmc", apart)
    model = load(tmp_path / "parts.mpmc")
    assert model.meta["encoding"][components.KEY] == components.PARTS and model.constant.sum() == apart.sum()
    decoded = model.decode_window()
    assert np.array_equal(decoded[..., 1], decoded[..., 2])
    assert 1 - r2_score(window.values, decoded) == pytest.approx(1 - in_parts.search["r2_estimate"], rel=1e-3)
    monkeypatch.setattr(format, "FORMAT_VERSION", 11)
    with pytest.raises(CodecError, match="format version 13, newer than this reader's 11"):
        load(tmp_path / "parts.mpmc")


def test_a_file_of_a_tensor_fields_components_apart_still_decodes(s_run, tmp_path, monkeypatch):
    """Formats 8-11 coded a 2×2 tensor's components apart (`components: split`): such a file decodes as it was
    scored, its components not taken for parts."""
    cfg, window, network = load_run(s_run)
    monkeypatch.setattr(components, "split_kind", lambda n_components: components.SPLIT)
    searched = encode_module._encoded_split(cfg["model"], window, 1.0, CodecSettings(target_r2=0.99),
                                            _ss_tot(window), np.zeros(window.values[0].size, bool),
                                            network.latent_dim * 4)
    candidate = searched.finished()
    format.write(tmp_path / "split.mpmc", candidate.meta, candidate.blobs, candidate.payload)
    monkeypatch.undo()
    model = load(tmp_path / "split.mpmc")
    assert model.meta["encoding"][components.KEY] == components.SPLIT
    decoded = model.decode_window()
    assert 1 - r2_score(window.values, decoded) == pytest.approx(1 - candidate.search["r2_estimate"], rel=1e-3)


def test_only_a_four_component_field_is_coded_in_tensor_parts():
    rng = np.random.default_rng(1)
    jp = FieldWindow("Jp", np.arange(3), rng.normal(size=(3, 5, 1)).astype(np.float32), np.zeros((3, 5, 2), np.float32),
                     np.zeros(5, int), np.zeros(5, int), np.zeros(3, bool), np.zeros(1, np.float32),
                     np.ones(1, np.float32))
    assert components.in_parts(jp) is jp and components.split_kind(1) == components.SPLIT
    assert components.split_kind(4) == components.PARTS
    np.testing.assert_allclose(components.TENSOR_PARTS.T @ components.TENSOR_PARTS, np.eye(4), atol=1e-15)
    values = jp.values[..., :1]
    assert components.from_parts(values, {components.KEY: components.SPLIT}) is values
