"""field.png drawn in a forked process beside the fit (mpm_inr.training.plot_aside): the same pixels as drawn in the
run, a process that dies with the run, and no process where it would not pay."""

from __future__ import annotations

import types

import matplotlib.image as mpimg
import numpy as np
import pytest

from mpm_inr.baselines.forked import can_fork
from mpm_inr.training import plot_aside as plot_aside_module
from mpm_inr.training.plot_aside import PlotAside, draft_request, plot_request
from mpm_inr.viz import plot_field

needs_fork = pytest.mark.skipif(not can_fork(), reason="the plot's process needs Linux's fork")


def window(frames: int = 12, particles: int = 500, components: int = 4) -> types.SimpleNamespace:
    """What PlotAside reads of a FieldWindow."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(frames, particles, components)).astype(np.float32)
    positions = rng.uniform(size=(frames, particles, 2)).astype(np.float32)
    return types.SimpleNamespace(values=values, positions=positions, train_frames=np.arange(0, frames, 2),
                                 n_particles=particles, n_components=components)


METRICS = {"field": "F", "inr_type": "lagrangian", "final_r2": 0.999, "slope": 1.001, "intercept": 0.0,
           "ssim": [0.9, 0.91, 0.92, 0.93], "training_time": 1.5, "steps": 300}


@needs_fork
def test_the_figure_drawn_beside_the_run_is_the_one_drawn_in_it(tmp_path) -> None:
    w = window()
    pred = w.values[w.train_frames] * 0.99
    loss = np.exp(-np.arange(100) / 30)
    with PlotAside.start_for(w) as aside:
        aside.draw(plot_request(tmp_path / "aside.png", pred, loss, METRICS, ["F00", "F01", "F10", "F11"], "F"))
        assert aside.done()
    here = plot_request(tmp_path / "here.png", pred, loss, METRICS, ["F00", "F01", "F10", "F11"], "F")
    plot_field(gt=w.values[w.train_frames], positions=w.positions[w.train_frames], **here)
    assert np.array_equal(mpimg.imread(tmp_path / "aside.png"), mpimg.imread(tmp_path / "here.png"))


@needs_fork
def test_a_figure_drafted_while_the_run_evaluates_is_the_one_drawn_in_it(tmp_path) -> None:
    """The panels sent once the run has predicted, the numbers after its evaluation: the same pixels."""
    w = window(components=3)
    pred = w.values[w.train_frames] * 0.98
    loss = np.exp(-np.arange(100) / 30)
    metrics = {**METRICS, "ssim": [0.9, 0.91, 0.92]}
    with PlotAside.start_for(w) as aside:
        aside.draft(draft_request(pred, loss, ["S0", "S1", "S2"], "S"))
        aside.draw(plot_request(tmp_path / "aside.png", pred, loss, metrics, ["S0", "S1", "S2"], "S"))
        assert aside.done()
    here = plot_request(tmp_path / "here.png", pred, loss, metrics, ["S0", "S1", "S2"], "S")
    plot_field(gt=w.values[w.train_frames], positions=w.positions[w.train_frames], **here)
    assert np.array_equal(mpimg.imread(tmp_path / "aside.png"), mpimg.imread(tmp_path / "here.png"))


@needs_fork
def test_a_failed_drawing_says_so_and_a_run_that_fails_kills_the_process(tmp_path) -> None:
    w = window()
    with PlotAside.start_for(w) as aside:
        aside.draw({"path": tmp_path / "x.png", "pred": "not an array"})  # no prediction of the window: not sent
        assert not aside.done()  # the run then draws it itself, raising where it always did
    with PlotAside.start_for(w) as aside:
        aside.draw({"path": tmp_path / "x.png", "pred": w.values[w.train_frames]})  # plot_field raises in the process
        assert not aside.done()
    with PlotAside.start_for(w) as waiting:
        process = waiting._task._process
        assert process.is_alive()
    assert not process.is_alive()  # leaving the block (the run failed before its evaluation) killed it


def test_a_long_window_is_drawn_in_the_run(monkeypatch) -> None:
    monkeypatch.setattr(plot_aside_module, "MAX_SENT_BYTES", 4 * 6 * 500 * 4 - 1)  # the prediction: one byte more
    assert PlotAside.start_for(window()) is None


@needs_fork
def test_a_process_killed_from_outside_leaves_the_drawing_to_the_run(tmp_path) -> None:
    """The send fails (no reader left) rather than waits for a process that is gone."""
    w = window(particles=5000)
    with PlotAside.start_for(w) as aside:
        aside._task.kill()  # as the OOM killer would
        aside.draw(plot_request(tmp_path / "x.png", w.values[w.train_frames], [1.0], METRICS,
                                ["F00", "F01", "F10", "F11"], "F"))
        assert not aside.done()
