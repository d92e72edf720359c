"""field.png: layout, content and speed for 1- and 4-component fields."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from matplotlib.figure import Figure

from mpm_inr.viz import field_figure, plot_field, plot_particles, trace_particles
from mpm_inr.viz.field_plot import prime_caches


def particle_window(frames: int, particles: int, components: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(size=(particles, 2))
    t = np.linspace(0, 1, frames)[:, None, None]
    positions = xy[None] + 0.05 * t
    gt = np.sin(5 * xy[:, :1] + 3 * t + np.arange(components)) + np.arange(components)
    pred = 0.98 * gt + 0.01 * rng.normal(size=gt.shape)
    return gt, pred, positions


INFO = {"inr_type": "siren_txy", "final_r2": 0.998765, "slope": 0.9876, "compression_ratio": 42.0,
        "training_time": 12.5, "total_params": 3000}


def read_png(path: Path) -> np.ndarray:
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    return image[..., :3]


@pytest.mark.parametrize(
    ("components", "field", "shape"),
    [(1, "Jp", (2, 3)), (4, "F", (3, 4))],
)
def test_png_opens_with_the_seed_layout(tmp_path: Path, components: int, field: str, shape: tuple[int, int]) -> None:
    gt, pred, positions = particle_window(12, 600, components)
    ssim = [0.91 + 0.01 * c for c in range(components)]
    path = plot_field(tmp_path / "run" / "field.png", gt, pred, positions, np.geomspace(1, 1e-3, 300), INFO,
                      ssim=ssim, field_name=field, dpi=50)
    image = read_png(path)
    rows, cols = shape
    assert image.shape[:2] == (rows * 4 * 50, round(cols * 4.5 * 50))
    not_white = (image < 0.95).any(axis=2).mean()
    assert 0.05 < not_white < 0.9  # drawn panels, not a blank canvas


def test_panels_carry_titles_ssim_and_info() -> None:
    gt, pred, positions = particle_window(12, 600, 4)
    figure = field_figure(gt, pred, positions, [1.0, 0.5, 0.25], INFO, component_names=["S00", "S01", "S10", "S11"],
                          ssim=[0.9, 0.8, float("nan"), None], field_name="S")
    titles = [ax.get_title() for ax in figure.axes]
    assert "GT S00 (frame 6), SSIM 0.9000" in titles and "Pred S01, SSIM 0.8000" in titles
    assert "Pred S10, SSIM n/a" in titles and "Pred S11, SSIM n/a" in titles
    assert any(title.startswith("pred vs GT: R²") for title in titles)
    texts = " ".join(text.get_text() for ax in figure.axes for text in ax.texts)
    assert "inr_type: siren_txy" in texts and "final_r2: 0.998765" in texts and "field: S" in texts


def test_default_labels_and_no_ssim() -> None:
    gt, pred, positions = particle_window(8, 100, 4)
    titles = [ax.get_title() for ax in field_figure(gt, pred, positions, [], {}, ssim=[], field_name="C").axes]
    assert "GT C10 (frame 4)" in titles and "Pred C11" in titles
    gt, pred, positions = particle_window(8, 100, 1)
    titles = [ax.get_title() for ax in field_figure(gt, pred, positions, [], {}, field_name="Jp").axes]
    assert "Pred Jp" in titles and "10 particle traces (Jp)" in titles


def test_traces_are_deterministic_and_spread() -> None:
    picked = trace_particles(9000)
    assert picked.tolist() == trace_particles(9000).tolist()
    assert len(picked) == 10 and picked[0] == 0 and picked[-1] == 8999
    assert np.all(np.abs(np.diff(picked) - 8999 / 9) <= 1)
    assert trace_particles(3).tolist() == [0, 1, 2]


def test_diverged_prediction_and_missing_history_still_plot(tmp_path: Path) -> None:
    gt, pred, positions = particle_window(6, 200, 1)
    pred[2:] = np.nan
    path = plot_field(tmp_path / "field.png", gt, pred, positions[3], [], {}, field_name="Jp", dpi=40)
    assert read_png(path).std() > 0


def test_bad_arguments() -> None:
    gt, pred, positions = particle_window(6, 100, 4)
    with pytest.raises(ValueError, match="component names"):
        field_figure(gt, pred, positions, [1.0], {}, component_names=["a"])
    with pytest.raises(ValueError, match="SSIM"):
        field_figure(gt, pred, positions, [1.0], {}, ssim=[1.0])


def test_a_given_fit_is_drawn_as_given() -> None:
    """A run passes the R², slope and intercept its metrics already hold, so the plot does not recompute them."""
    gt, pred, positions = particle_window(12, 600, 4)
    figure = field_figure(gt, pred, positions, [1.0], {}, field_name="F", fit=(0.5, 2.0, 0.25))
    titles = [ax.get_title() for ax in figure.axes]
    assert "pred vs GT: R² 0.500000, slope 2.0000" in titles
    legends = " ".join(t.get_text() for ax in figure.axes if ax.get_legend() for t in ax.get_legend().get_texts())
    assert "fit: slope 2.0000" in legends


@pytest.mark.parametrize("components", [1, 3, 4])
def test_fixed_title_places_and_fast_png_give_the_automatic_pixels(tmp_path: Path, monkeypatch,
                                                                   components: int) -> None:
    """The titles' given place (no re-measuring at each draw) and zlib level 1 are speed only: the same pixels as
    matplotlib's automatic title placement and PIL's default compression."""
    from mpm_inr.viz import field_plot

    gt, pred, positions = particle_window(10, 400, components)
    fast = plot_field(tmp_path / "fast.png", gt, pred, positions, np.exp(-np.arange(200) / 50), INFO,
                      ssim=[0.9] * components)
    monkeypatch.setattr(field_plot, "TITLE_Y", None)  # set_title(y=None): matplotlib places each title itself
    monkeypatch.setattr(field_plot, "PNG_COMPRESS_LEVEL", 6)
    auto = plot_field(tmp_path / "auto.png", gt, pred, positions, np.exp(-np.arange(200) / 50), INFO,
                      ssim=[0.9] * components)
    assert np.array_equal(read_png(fast), read_png(auto))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the second process is a fork")
@pytest.mark.parametrize("components", [1, 3, 4])
def test_a_figure_drawn_by_two_processes_has_the_same_pixels(tmp_path: Path, monkeypatch, components: int) -> None:
    """Half the panels drawn by a fork and composed by their minimum over white: the figure drawn at once. A
    fork that fails to draw leaves its half to the caller, which gives the same pixels too."""
    from mpm_inr.viz import field_plot

    gt, pred, positions = particle_window(10, 400, components)
    args = (gt, pred, positions, np.exp(-np.arange(200) / 50), INFO)
    one = plot_field(tmp_path / "one.png", *args, ssim=[0.9] * components)
    two = plot_field(tmp_path / "two.png", *args, ssim=[0.9] * components, processes=2)
    assert np.array_equal(read_png(one), read_png(two))
    parent, pixels = os.getpid(), field_plot._pixels

    def fails_in_the_fork(*a, **k):
        if os.getpid() != parent:
            raise RuntimeError("drawing failed in the fork")
        return pixels(*a, **k)

    monkeypatch.setattr(field_plot, "_pixels", fails_in_the_fork)
    again = plot_field(tmp_path / "again.png", *args, ssim=[0.9] * components, processes=2)
    assert np.array_equal(read_png(one), read_png(again))


def test_particles_are_painted_where_they_are_the_latest_on_top() -> None:
    """plot_particles' image: each particle's value in the cells around its position, the later of two particles
    at one place on top (as overlapping markers), a particle with no position left out, empty cells blank."""
    positions = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5], [0.5, 0.5], [np.nan, 0.2]])
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    figure = Figure(figsize=(4, 4))
    shown = plot_particles(figure.subplots(), positions, values, marker_size=20.0)
    image = shown.get_array()
    painted = image.compressed()
    assert set(painted) == {1.0, 2.0, 4.0}  # 3 lies under 4; 5 has no position
    assert image.mask.mean() > 0.9  # the rest is blank
    x0, x1, y0, y1 = shown.get_extent()
    rows, columns = image.shape

    def at(x: float, y: float) -> float:
        return image[int((y - y0) / (y1 - y0) * rows), int((x - x0) / (x1 - x0) * columns)]

    assert (at(0.0, 0.0), at(1.0, 1.0), at(0.5, 0.5)) == (1.0, 2.0, 4.0)


def test_priming_the_caches_changes_no_pixel_and_starts_no_thread(tmp_path: Path) -> None:
    """A warm server primes matplotlib before it forks its runs: their figures must not differ for it, and a fork
    must stay safe (no thread)."""
    gt, pred, positions = particle_window(10, 400, 4)
    args = (gt, pred, positions, np.exp(-np.arange(200) / 50), INFO)
    before = read_png(plot_field(tmp_path / "before.png", *args, ssim=[0.9] * 4))
    threads = threading.active_count()
    prime_caches()
    assert threading.active_count() == threads
    assert np.array_equal(read_png(plot_field(tmp_path / "after.png", *args, ssim=[0.9] * 4)), before)
