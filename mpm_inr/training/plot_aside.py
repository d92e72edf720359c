"""The field plot (`field.png`) drawn in a forked process beside the run, when the run leaves a core free.

Forked before the fit, the process loads matplotlib while the run trains (0.5-0.6 s on the 2-core VM, which the
plot otherwise pays after the fit), then waits for the run's prediction. The run sends it as soon as it has
predicted, so the panels are drawn while it evaluates; then the numbers (titles, info, fitted line) as soon as it
has the scores the figure shows, before the kinograph SSIM (evaluate_all's `scored`), and it goes on with that
score, its SVD, baselines and checkpoint while the figure is finished, half of it by a second fork. The ground
truth and positions need no sending: the process holds the window from the fork; the training prediction goes
through memory the two share (written once, never pickled: 0.05 s of the run's for C's 14 MB). Only windows
whose training prediction is at most MAX_SENT_BYTES (hundreds of frames) are drawn so; a longer one's fit dwarfs
its plot. The process never calls torch (forked.py), dies with the run, and a failure is only its exit code: the
run then draws the figure itself, so a plotting error is raised where it always was.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from mpm_inr.baselines.forked import ForkedTask, can_fork, shared_array
from mpm_inr.data.window import FieldWindow, frames_of

if TYPE_CHECKING:  # matplotlib loads only in a process that draws
    from mpm_inr.viz.field_plot import FieldDraft

MAX_SENT_BYTES = 64 << 20  # the float32 training prediction in shared memory: 100 frames of C are 14 MB


#: the parts of a `plot_request` known once the run has predicted, before its evaluation: the figure's data
DRAFT_KEYS = ("pred", "loss_history", "component_names", "field_name")


class PlotAside:
    """One figure of one window: `draft(draft_request(...))` once the run has predicted (optional: the figure's
    panels are drawn while the run evaluates), `draw(plot_request(...))` after the evaluation, `done()` before the
    figure is read."""

    def __init__(self, window: FieldWindow) -> None:
        self.window = window
        self._prediction = shared_array((len(window.train_frames), window.n_particles, window.n_components), np.float32)
        self._receive, self._send = multiprocessing.get_context("fork").Pipe(duplex=False)
        self._task = ForkedTask(self._draw_when_asked)
        self._drafted = False

    @classmethod
    def start_for(cls, window: FieldWindow) -> PlotAside | None:
        """A started process for this window's figure; None where it would not pay (a long window, no fork)."""
        sent = 4 * len(window.train_frames) * window.n_particles * window.n_components
        if sent > MAX_SENT_BYTES or not can_fork():
            return None
        aside = cls(window)
        aside._task.start()
        aside._receive.close()  # the process's end: a send to a process that died fails instead of blocking
        return aside

    def _draw_when_asked(self) -> None:
        """In the forked process: matplotlib loads here, during the run's fit, not in the run."""
        # matplotlib loads here, while the run trains
        from mpm_inr.viz.field_plot import most_dynamic_component

        self._send.close()  # the run's end
        shown = shown_frames(self.window)  # what needs no prediction, made before it comes
        traced = most_dynamic_component(shown[0])
        message = self._receive.recv()
        if "draft" in message:
            draft = draft_field(shown, {**message["draft"], "pred": self._prediction}, traced)
            message = self._receive.recv()
        else:
            draft = draft_field(shown, {**{k: message[k] for k in DRAFT_KEYS if k != "pred"},
                                        "pred": self._prediction}, traced)
        finish_field(draft, message, processes=2)  # the run waits for it: its own core draws half

    def draft(self, request: dict[str, Any]) -> None:
        """Send a `draft_request`: the panels are drawn from now on."""
        shared = self._shared(request)
        self._drafted = shared is not None and self._sent({"draft": shared})

    def draw(self, request: dict[str, Any]) -> None:
        """Send `plot_field`'s arguments but the window's (gt, positions) (what a draft sent, not again): the
        figure is finished from now on."""
        message = {k: v for k, v in request.items() if k not in DRAFT_KEYS} if self._drafted else self._shared(request)
        if message is not None:
            self._sent(message)

    def _shared(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The request without its prediction, which is written to the shared memory instead; None (and the
        process killed) for a prediction that is not the window's training frames: the run draws it, and fails
        where it always did."""
        try:
            np.copyto(self._prediction, request["pred"], casting="same_kind")
        except (TypeError, ValueError):
            self._task.kill()
            return None
        return {k: v for k, v in request.items() if k != "pred"}

    def _sent(self, message: dict[str, Any]) -> bool:
        try:
            self._send.send(message)
        except OSError:  # the process is gone (killed from outside): `done` says so, the run draws it
            self._task.kill()
            return False
        return True

    def done(self) -> bool:
        """Wait for the figure; False when the process failed (the caller draws it itself)."""
        return self._task.wait() == 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self._task.kill()
        self._send.close()


def draw_field(window: FieldWindow, request: dict[str, Any]) -> None:
    """field.png from a `plot_request` and the window's ground truth and positions, drawn here at once."""
    finish_field(draft_field(shown_frames(window), {k: request[k] for k in DRAFT_KEYS}), request)


def shown_frames(window: FieldWindow) -> tuple[np.ndarray, np.ndarray]:
    """The ground truth and positions of the window's training frames, which the figure shows (copies of 21 MB for
    100 frames of C, unless the training frames are the whole window)."""
    return frames_of(window.values, window.train_frames), frames_of(window.positions, window.train_frames)


def draft_field(shown: tuple[np.ndarray, np.ndarray], request: dict[str, Any],
                traced_component: int | None = None) -> FieldDraft:
    """The figure's panels from the window's `shown_frames` and a `draft_request` (matplotlib is loaded only by a
    process that draws); traced_component: `draft_field_figure`'s, if known."""
    from mpm_inr.viz.field_plot import draft_field_figure

    gt, positions = shown
    return draft_field_figure(gt=gt, positions=positions, traced_component=traced_component, **request)


def finish_field(draft: FieldDraft, request: dict[str, Any], processes: int = 1) -> None:
    """The draft's numbers from a `plot_request`, saved to its path; processes=2 only where no torch thread pool
    runs (`plot_field`)."""
    from mpm_inr.viz.field_plot import finish_field_figure, save_field_figure

    figure = finish_field_figure(draft, request["info"], request["ssim"], request["fit"])
    save_field_figure(figure, request["path"], processes=processes)


def draft_request(prediction: Any, loss_history: Any, components: list[str], field_name: str) -> dict[str, Any]:
    """What the figure's panels need of the run: its training prediction, loss curve and component names."""
    return {"pred": prediction, "loss_history": loss_history, "component_names": components,
            "field_name": field_name}


def plot_request(path: Path, prediction: Any, loss_history: Any, metrics: dict[str, Any], components: list[str],
                 field_name: str) -> dict[str, Any]:
    """`plot_field`'s arguments for a run's figure, but the window's ground truth and positions."""
    info = {k: metrics.get(k) for k in ("field", "inr_type", "final_r2", "r2_min_component", "slope",
                                         "compression_ratio", "total_params", "training_time", "steps", "holdout_r2")}
    return {**draft_request(prediction, loss_history, components, field_name), "path": path, "info": info,
            "ssim": metrics.get("ssim") or [], "fit": (metrics["final_r2"], metrics["slope"], metrics["intercept"])}
