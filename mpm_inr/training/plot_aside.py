"""The field plot (`field.png`) drawn in a forked process beside the run, when the run leaves a core free.

Forked before the fit, the process loads matplotlib while the run trains (0.5-0.6 s on the 2-core VM, which the
plot otherwise pays after the fit), then waits for the run's prediction; the run sends it once evaluated and goes on
with its SVD, baselines and checkpoint while the figure is drawn, half of it by a second fork (the run, waiting for
it, leaves its core free): C's figure in 0.43 s instead of 0.79. The ground truth and positions need no sending:
the process holds the window from the fork. Only windows whose training prediction is at most MAX_SENT_BYTES
(hundreds of frames) are drawn so; a longer one's fit dwarfs its plot. The process never calls torch (forked.py),
dies with the run, and a failure is only its exit code: the run then draws the figure itself, so a plotting error
is raised where it always was.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any, Self

from mpm_inr.baselines.forked import ForkedTask, can_fork
from mpm_inr.data.window import FieldWindow

MAX_SENT_BYTES = 64 << 20  # the float32 training prediction sent through a pipe: 100 frames of C are 14 MB


class PlotAside:
    """One figure of one window: `draw(request)` after the evaluation, `done()` before the figure is read."""

    def __init__(self, window: FieldWindow) -> None:
        self.window = window
        self._receive, self._send = multiprocessing.get_context("fork").Pipe(duplex=False)
        self._task = ForkedTask(self._draw_when_asked)

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
        import matplotlib  # noqa: F401 - the import is what this process does while the run trains

        self._send.close()  # the run's end
        draw_field(self.window, self._receive.recv(), processes=2)  # the run waits for it: its own core drawing too

    def draw(self, request: dict[str, Any]) -> None:
        """Send `plot_field`'s arguments but the window's (gt, positions): the figure is drawn from now on."""
        try:
            self._send.send(request)
        except OSError:  # the process is gone (killed from outside): `done` says so, the run draws it
            self._task.kill()

    def done(self) -> bool:
        """Wait for the figure; False when the process failed (the caller draws it itself)."""
        return self._task.wait() == 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self._task.kill()
        self._send.close()


def draw_field(window: FieldWindow, request: dict[str, Any], processes: int = 1) -> None:
    """field.png from a `plot_request` and the window's ground truth and positions (matplotlib is loaded only by
    a process that draws); processes=2 only where no torch thread pool runs (plot_field)."""
    from mpm_inr.viz.field_plot import plot_field

    train = window.train_frames
    plot_field(gt=window.values[train], positions=window.positions[train], processes=processes, **request)


def plot_request(path: Path, prediction: Any, loss_history: Any, metrics: dict[str, Any], components: list[str],
                 field_name: str) -> dict[str, Any]:
    """`plot_field`'s arguments for a run's figure, but the window's ground truth and positions."""
    info = {k: metrics.get(k) for k in ("field", "inr_type", "final_r2", "r2_min_component", "slope",
                                         "compression_ratio", "total_params", "training_time", "steps", "holdout_r2")}
    return {"path": path, "pred": prediction, "loss_history": loss_history, "info": info,
            "component_names": components, "ssim": metrics.get("ssim") or [], "field_name": field_name,
            "fit": (metrics["final_r2"], metrics["slope"], metrics["intercept"])}
