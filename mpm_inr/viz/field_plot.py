"""The per-run field figure (`field.png`), in the design document's panel layout
(`landscape_study.md`), plus panel helpers for notebooks.

Layout (design document, "Visualization Panels"):

- 1 component (Jp), 2×3:  [loss] [traces] [info] / [GT] [Pred] [scatter]
- C components, 4 columns, 1 + ⌈C/2⌉ rows (3×4 for F, S, C):
  [loss] [traces] [info] [scatter] / [GT c] [GT c+1] [Pred c] [Pred c+1] / ...

Unlike the reference, the Pred panels show the raw prediction (no slope correction) with the GT colour limits,
so a gain error is visible as a contrast change. Figures are drawn on an Agg canvas owned by the figure (no
pyplot state), so plotting is safe in worker processes and never opens a window.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import AxesImage, imsave

from mpm_inr.metrics._arrays import (
    as_field_pair,
    frame_positions,
    middle_frame,
    to_float64,
)
from mpm_inr.metrics.regression import r2_score, slope_intercept

GT_COLOR = "tab:green"
PRED_COLOR = "black"
PANEL_WIDTH = 4.5  # inches per panel
PANEL_HEIGHT = 4.0
#: Titles at the top of their axes, where matplotlib's automatic placement puts them when nothing sits above an axes
#: (no panel has top ticks; the colour bars end below the top): given, the place is not re-measured from every
#: axis's tight bounding box at each draw, a fifth of the figure's drawing time, and the pixels are the same.
TITLE_Y = 1.0
#: a particle's square in `plot_particles` is this many grid cells wide (smoothed when resampled, it looks like the
#: round marker it replaces; 3 costs 20 % more drawing and looks the same)
MARKER_CELLS = 2
#: zlib level of the PNG: 1 writes the same pixels 3x faster than PIL's default 6, in a file about 30 % larger
PNG_COMPRESS_LEVEL = 1
#: the label of the panels a second process draws when the figure is drawn in two (`plot_field(processes=2)`):
#: the Pred panels with their colour bars and the scatter, about half of the drawing time
SECOND_PROCESS = "drawn by the second process"


def default_component_names(field_name: str, n_components: int) -> list[str]:
    """Panel labels as in conf/field: "F00", "F01", "F10", "F11" for 2×2 tensors, "Jp" for one component."""
    if n_components == 1:
        return [field_name]
    suffixes = ["00", "01", "10", "11"] if n_components == 4 else [str(c) for c in range(n_components)]
    return [f"{field_name}{suffix}" for suffix in suffixes]


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return str(value)


def _format_ssim(value: float | None) -> str:
    """SSIM for a title; undefined scores (NaN, or None once made JSON-safe) read "n/a"."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _loss_series(loss_history: Any) -> tuple[np.ndarray, np.ndarray]:
    """(steps, losses) from a 1-D sequence of losses or an (K, 2) array of (step, loss) pairs."""
    history = to_float64(loss_history if loss_history is not None else [])
    if history.ndim == 2 and history.shape[1] == 2:
        return history[:, 0], history[:, 1]
    history = history.reshape(-1)
    return np.arange(history.size, dtype=np.float64), history


def plot_loss(ax: Axes, loss_history: Any) -> None:
    """Loss curve on a log axis: raw in grey, moving average in red (non-positive and non-finite points dropped)."""
    steps, losses = _loss_series(loss_history)
    keep = np.isfinite(losses) & (losses > 0)
    steps, losses = steps[keep], losses[keep]
    ax.set_title("training loss", y=TITLE_Y)
    ax.set_xlabel("step")
    if losses.size == 0:
        ax.text(0.5, 0.5, "no loss history", ha="center", va="center", transform=ax.transAxes)
        return
    ax.plot(steps, losses, color="0.6", linewidth=0.8, label="raw")
    window = max(1, losses.size // 50)
    if window > 1:
        smooth = np.exp(np.convolve(np.log(losses), np.ones(window) / window, mode="valid"))
        ax.plot(steps[window - 1 :], smooth, color="tab:red", linewidth=1.5, label=f"mean of {window}")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_yscale("log")
    # no minor ticks: a loss over 5-7 decades had 56, each a tick built at every draw (0.03 s of the figure's 0.2)
    ax.minorticks_off()


def trace_particles(n_particles: int, n_traces: int = 10) -> np.ndarray:
    """Deterministic particle indices spread evenly over 0..N-1."""
    return np.unique(np.linspace(0, n_particles - 1, min(n_traces, n_particles)).round().astype(np.int64))


def plot_traces(ax: Axes, gt: np.ndarray, pred: np.ndarray | None, particles: Sequence[int], label: str = "") -> None:
    """Time series of the given particles, GT solid and prediction dashed, each centred on its GT mean and
    stacked 4 standard deviations apart (the design document's convention). gt, pred: (T, N) of one component."""
    gt = np.asarray(gt, dtype=np.float64)
    frames = np.arange(gt.shape[0])
    chosen = gt[:, particles]
    centre = chosen.mean(axis=0)
    spread = float((chosen - centre).std())
    spacing = 4.0 * spread if spread > 0 else 1.0
    for row, particle in enumerate(particles):
        offset = row * spacing - centre[row]
        ax.plot(frames, gt[:, particle] + offset, color=GT_COLOR, linewidth=1.2)
        if pred is not None:
            ax.plot(frames, np.asarray(pred)[:, particle] + offset, color=PRED_COLOR, linewidth=1.0, linestyle="--")
    ax.plot([], [], color=GT_COLOR, label="GT")
    if pred is not None:
        ax.plot([], [], color=PRED_COLOR, linestyle="--", label="pred")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_yticks([])
    ax.set_xlabel("frame in window")
    ax.set_title(f"{len(particles)} particle traces{label}", y=TITLE_Y)


def plot_info(ax: Axes, lines: Sequence[str]) -> None:
    """A text-only panel."""
    ax.axis("off")
    ax.text(0.02, 0.98, "\n".join(lines), ha="left", va="top", family="monospace", fontsize=9, transform=ax.transAxes)


def plot_scatter(
    ax: Axes, gt: np.ndarray, pred: np.ndarray, max_points: int = 20_000, seed: int = 0,
    fit: tuple[float, float, float] | None = None,
) -> tuple[float, float, float]:
    """Prediction against GT for a subsample of all values (drawing only), with y = x and the fitted line from
    `slope_intercept` on *all* values (common slope, mean intercept). Returns (r2, slope, intercept).

    fit: (R², slope, intercept) already computed on all values (a run's metrics), so they are not computed twice."""
    if fit is None:
        fit = (r2_score(gt, pred), *slope_intercept(gt, pred))
    label_scatter(ax, scatter_points(ax, gt, pred, max_points, seed), fit)
    return fit


def scatter_points(ax: Axes, gt: np.ndarray, pred: np.ndarray, max_points: int = 20_000, seed: int = 0
                   ) -> tuple[float, float]:
    """The scatter's points and its y = x line; the GT range the fitted line spans."""
    x = gt.reshape(-1)
    y = pred.reshape(-1)
    if x.size > max_points:
        pick = np.random.default_rng(seed).choice(x.size, size=max_points, replace=False)
        x, y = x[pick], y[pick]
    ax.scatter(x, y, s=1.0, alpha=0.3, color="tab:blue", linewidths=0, rasterized=True)
    low, high = float(_finite(x).min()), float(_finite(x).max())
    line = np.array([low, high])
    ax.plot(line, line, color="tab:red", linestyle="--", linewidth=1.2, label="y = x")
    ax.set_xlabel("ground truth")
    ax.set_ylabel("prediction")
    return low, high


def label_scatter(ax: Axes, span: tuple[float, float], fit: tuple[float, float, float]) -> None:
    """The fitted line over `span`, the legend and the title with R² and slope."""
    r2, slope, intercept = fit
    line = np.array(span)
    if math.isfinite(slope):
        ax.plot(line, slope * line + intercept, color="tab:green", linewidth=1.2, label=f"fit: slope {slope:.4f}")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"pred vs GT: R² {r2:.6f}, slope {slope:.4f}", y=TITLE_Y)


def plot_particles(
    ax: Axes,
    positions: np.ndarray,
    values: np.ndarray,
    vmin: float | None = None,
    vmax: float | None = None,
    title: str = "",
    cmap: str = "viridis",
    marker_size: float | None = None,
) -> AxesImage:
    """Particles at their (x, y) positions coloured by value, drawn as an image: each particle paints a square
    the width of a marker of `marker_size` points² (default shrinking with the particle count) on a grid twice as
    fine, a later particle over an earlier one as overlapping markers are, empty cells blank; the image is
    smoothed as it is resampled to the panel's pixels. The grid is sized to the panel as it is when this is
    called; the axes are the particles' extent plus 5 % on each side, equal in x and y. A scatter of 9 000
    coloured markers took 20 ms of a figure's drawing per panel, the image takes 5 (the look is the same)."""
    positions = np.asarray(positions, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if marker_size is None:
        marker_size = float(np.clip(18_000 / max(len(values), 1), 0.5, 20.0))
    low, high = _padded_extent(positions)
    width_pt = ax.get_position().width * ax.figure.get_figwidth() * 72
    height_pt = ax.get_position().height * ax.figure.get_figheight() * 72
    points_per_unit = min(width_pt / (high[0] - low[0]), height_pt / (high[1] - low[1]))  # equal aspect
    cell = math.sqrt(marker_size) / points_per_unit / MARKER_CELLS
    shape = np.maximum(np.ceil((high - low) / cell).astype(int), MARKER_CELLS)[::-1]  # (rows: y, columns: x)
    finite = np.flatnonzero(np.isfinite(positions).all(axis=1))
    corner = ((positions[finite] - low) / cell).astype(int) - MARKER_CELLS // 2
    corner = np.clip(corner, 0, shape[::-1] - MARKER_CELLS)
    offsets = np.arange(MARKER_CELLS)
    rows = corner[:, 1, None, None] + offsets[None, :, None]
    columns = corner[:, 0, None, None] + offsets[None, None, :]
    cells = (rows * shape[1] + columns).reshape(-1)  # each particle's cells, particle after particle
    # the particle on top in each cell is the latest, as with markers: its first occurrence counted from the end
    painted, from_end = np.unique(cells[::-1], return_index=True)
    image = np.full(shape[0] * shape[1], np.nan)
    image[painted] = values[finite.repeat(MARKER_CELLS * MARKER_CELLS)[::-1][from_end]]
    image = image.reshape(shape)
    top = low + shape[::-1] * cell
    shown = ax.imshow(np.ma.masked_invalid(image), origin="lower", extent=(low[0], top[0], low[1], top[1]),
                      cmap=cmap, vmin=vmin, vmax=vmax, interpolation="antialiased", aspect="equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10, y=TITLE_Y)
    return shown


def _padded_extent(positions: np.ndarray, margin: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) corners of the finite positions widened by `margin` of their span (a unit box if none)."""
    finite = positions[np.isfinite(positions).all(axis=1)]
    if len(finite) == 0:
        return np.zeros(2), np.ones(2)
    low, high = finite.min(axis=0), finite.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    return low - margin * span, high + margin * span


def most_dynamic_component(gt: np.ndarray) -> int:
    """The component of a (T, N, C) ground truth whose particles vary most in time (mean temporal variance): the one
    the traces panel shows. 24 ms for 100 frames of a 4-component field."""
    return int(np.argmax(np.asarray(gt).var(axis=0, dtype=np.float64).mean(axis=0)))


def colour_limits(values: np.ndarray) -> tuple[float, float]:
    """GT colour limits: the 0.5–99.5 percentiles, so a few contact spikes (S) do not wash out the image."""
    finite = _finite(np.asarray(values, dtype=np.float64))
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, [0.5, 99.5])
    if high <= low:
        low, high = float(finite.min()), float(finite.max())
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return float(low), float(high)


def _layout(n_components: int) -> tuple[int, int]:
    if n_components == 1:
        return 2, 3
    return 1 + math.ceil(n_components / 2), 4


@dataclass
class FieldDraft:
    """A field figure with its data drawn and the numbers a run computes from it (titles, info, fitted line) not
    yet: a run's plot process drafts it while the run evaluates."""

    figure: Figure
    gt: np.ndarray  # for a fit computed here when none is given
    pred: np.ndarray
    field_name: str
    info_ax: Axes
    scatter_ax: Axes
    scatter_span: tuple[float, float]
    particle_titles: list[tuple[Axes, str, int]]  # (panel, title before its SSIM, component)


def draft_field_figure(
    gt: Any,
    pred: Any,
    positions: Any,
    loss_history: Any,
    component_names: Sequence[str] | None = None,
    field_name: str = "field",
    n_traces: int = 10,
    max_scatter_points: int = 20_000,
    traced_component: int | None = None,
) -> FieldDraft:
    """The figure's panels with their data (see `plot_field`); `finish_field_figure` adds the numbers.
    traced_component: the ground truth's `most_dynamic_component`, if known (a run's plot process computes it while
    the run trains)."""
    gt_values, pred_values = as_field_pair(gt, pred, float64=False)  # a float64 copy of the window costs more than a panel
    n_frames, n_particles, n_components = gt_values.shape
    names = list(component_names) if component_names else default_component_names(field_name, n_components)
    if len(names) != n_components:
        raise ValueError(f"{len(names)} component names for {n_components} components")
    frame = middle_frame(n_frames)
    frame_xy = frame_positions(positions, n_frames, n_particles)

    rows, cols = _layout(n_components)
    # A fixed layout: constrained/tight layout engines re-measure every tick label and double the drawing time.
    figure = Figure(figsize=(cols * PANEL_WIDTH, rows * PANEL_HEIGHT))
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, cols, squeeze=False)
    wspace = 0.45 if n_components == 1 else 0.3  # room for the Pred colour bar before the scatter's y label
    figure.subplots_adjust(left=0.05, right=0.93, bottom=0.06, top=0.95, wspace=wspace, hspace=0.3)

    plot_loss(axes[0, 0], loss_history)
    most_dynamic = most_dynamic_component(gt_values) if traced_component is None else traced_component
    plot_traces(
        axes[0, 1], gt_values[:, :, most_dynamic], pred_values[:, :, most_dynamic],
        trace_particles(n_particles, n_traces),
        label=f" ({names[most_dynamic]})",
    )
    scatter_ax = axes[1, 2] if n_components == 1 else axes[0, 3]
    span = scatter_points(scatter_ax, gt_values, pred_values, max_points=max_scatter_points)
    scatter_ax.set_label(SECOND_PROCESS)
    used = [axes[0, 0], axes[0, 1], axes[0, 2], scatter_ax]

    titles = []
    for component, name in enumerate(names):
        if n_components == 1:
            gt_ax, pred_ax = axes[1, 0], axes[1, 1]
        else:
            row, col = 1 + component // 2, component % 2
            gt_ax, pred_ax = axes[row, col], axes[row, col + 2]
        gt_frame = gt_values[frame, :, component]
        vmin, vmax = colour_limits(gt_frame)
        plot_particles(gt_ax, frame_xy, gt_frame, vmin, vmax)
        collection = plot_particles(pred_ax, frame_xy, pred_values[frame, :, component], vmin, vmax)
        figure.colorbar(collection, cax=pred_ax.inset_axes((1.03, 0.1, 0.04, 0.8)))
        pred_ax.set_label(SECOND_PROCESS)
        titles += [(gt_ax, f"GT {name} (frame {frame})", component), (pred_ax, f"Pred {name}", component)]
        used += [gt_ax, pred_ax]
    for ax in axes.flat:
        if ax not in used:  # an odd component count leaves the last row half empty
            ax.axis("off")
    return FieldDraft(figure, gt_values, pred_values, field_name, axes[0, 2], scatter_ax, span, titles)


def finish_field_figure(draft: FieldDraft, info: Mapping[str, Any], ssim: Sequence[float] | None = None,
                        fit: tuple[float, float, float] | None = None) -> Figure:
    """The draft's titles (with each component's SSIM), info panel and fitted line (computed on all values when
    `fit` is None); the figure, not saved."""
    n_frames, n_particles, n_components = draft.gt.shape
    ssim = list(ssim) if ssim else None  # an empty list means "not computed"
    if ssim is not None and len(ssim) != n_components:
        raise ValueError(f"{len(ssim)} SSIM values for {n_components} components")
    info_lines = [] if "field" in info else [f"field: {draft.field_name}"]
    info_lines += [f"{key}: {_format_value(value)}" for key, value in info.items()]
    info_lines.append(f"window: {n_frames} frames × {n_particles} particles × {n_components}")  # fits the panel
    plot_info(draft.info_ax, info_lines)
    if fit is None:
        fit = (r2_score(draft.gt, draft.pred), *slope_intercept(draft.gt, draft.pred))
    label_scatter(draft.scatter_ax, draft.scatter_span, fit)
    for ax, title, component in draft.particle_titles:
        score = f", SSIM {_format_ssim(ssim[component])}" if ssim is not None else ""
        ax.set_title(title + score, fontsize=10, y=TITLE_Y)
    return draft.figure


def field_figure(
    gt: Any,
    pred: Any,
    positions: Any,
    loss_history: Any,
    info: Mapping[str, Any],
    component_names: Sequence[str] | None = None,
    ssim: Sequence[float] | None = None,
    field_name: str = "field",
    n_traces: int = 10,
    max_scatter_points: int = 20_000,
    fit: tuple[float, float, float] | None = None,
) -> Figure:
    """Build the field figure (see `plot_field` for the arguments) on its own Agg canvas, without saving it."""
    draft = draft_field_figure(gt, pred, positions, loss_history, component_names, field_name, n_traces,
                               max_scatter_points)
    return finish_field_figure(draft, info, ssim, fit)


def plot_field(path: str | Path, *figure_args: Any, dpi: int = 80, processes: int = 1, **figure_kwargs: Any) -> Path:
    """Write the run's field figure to `path` (PNG) and return the path; the figure's arguments are
    `field_figure`'s, passed through.

    gt, pred: (T, N, C) in original units; positions: (T, N, 2) (or the middle frame's (N, 2));
    loss_history: losses, or (step, loss) pairs; info: key → value lines for the info panel (inr_type, R²,
    slope, compression, time, params, ...); component_names: panel labels such as "F00" (conf/field's
    `components`; default from field_name); ssim: per-component SSIM shown in the GT/Pred titles (None or []
    to leave it out); fit: (R², slope, intercept) on all values if already known (else computed here). The PNG
    is 4.5·cols × 4·rows inches at `dpi`. processes=2 draws half the panels in a forked process (Linux; the
    caller must not have torch's thread pool running): the same pixels in a little over half the time.
    """
    return save_field_figure(field_figure(*figure_args, **figure_kwargs), path, dpi, processes)


def save_field_figure(figure: Figure, path: str | Path, dpi: int = 80, processes: int = 1) -> Path:
    """`figure` as a PNG at `path` (see `plot_field` for processes=2)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if processes > 1 and hasattr(os, "fork"):
        imsave(path, _drawn_in_two_processes(figure, dpi), format="png",
               pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
    else:
        figure.savefig(path, dpi=dpi, pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
    return path


def _pixels(figure: Figure, dpi: int, hidden: Sequence[Axes] = ()) -> np.ndarray:
    """The figure's RGBA pixels at `dpi` with the `hidden` panels left out (white where they were)."""
    for ax in hidden:
        ax.set_visible(False)
    figure.set_dpi(dpi)
    figure.canvas.draw()
    return np.array(figure.canvas.buffer_rgba())


def _drawn_in_two_processes(figure: Figure, dpi: int) -> np.ndarray:
    """The figure's pixels, half of its panels drawn by a forked process. The panels do not overlap and each is
    drawn on the white figure, so each half's pixels are white where the other half draws: their per-channel
    minimum is the whole figure drawn at once (tested). A fork that fails leaves its half to this process."""
    second = [ax for ax in figure.axes if ax.get_label() == SECOND_PROCESS]
    first = [ax for ax in figure.axes if ax.get_label() != SECOND_PROCESS]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: draw the second half, send it, leave without the parent's exit handlers
        code = 1
        try:
            os.close(read)
            with os.fdopen(write, "wb") as out:
                out.write(_pixels(figure, dpi, hidden=first).tobytes())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    mine = _pixels(figure, dpi, hidden=second)
    with os.fdopen(read, "rb") as pipe:
        theirs = pipe.read()
    _, status = os.waitpid(pid, 0)
    for ax in second:
        ax.set_visible(True)
    if status != 0 or len(theirs) != mine.nbytes:
        for ax in first:
            ax.set_visible(True)
        return _pixels(figure, dpi)
    return np.minimum(mine, np.frombuffer(theirs, dtype=np.uint8).reshape(mine.shape))


def prime_caches() -> None:
    """Draw two small throwaway figures (one component, four), so that matplotlib's lazily built state (the fonts
    loaded, the mathtext parser of log-axis labels, the text layouts of common labels) exists in this process: a
    warm server calls it before it forks its runs, whose field.png then pays none of it (0.03-0.04 s of a figure's
    drawing on the 2-core VM)."""
    rng = np.random.default_rng(0)
    for components in (1, 4):
        values = rng.normal(size=(12, 50, components))
        figure = field_figure(values, values, rng.uniform(size=(50, 2)), np.geomspace(1, 1e-3, 100),
                              {"final_r2": 1.0}, ssim=[1.0] * components)
        figure.set_dpi(80)
        figure.canvas.draw()
