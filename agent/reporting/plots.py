"""Figures of a study, drawn from agent.reporting.report_data (Agg only; each function returns a matplotlib Figure).

- `tree_figure`: the exploration tree of every block, nodes coloured by R² on a -log10(1 - R²) scale;
- `pareto_figure`: per field, R² (nines scale) against training time and against the bytes ratio (raw float32
  bytes / stored bytes), Pareto front drawn; the size panel draws the classical baselines of each window (SVD,
  SZ3, ZFP: the points the runs recorded, plus the window's cache when found) as curves, and the per-rank SVD
  of the `svd` entry only for windows whose runs predate those baselines;
- `heldout_figure`: the same on held-out interleaved frames (SVD interpolates its temporal coefficients);
- `timemodel_figure`: measured training time against the model's leave-one-out prediction, per device.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from agent.reporting.report_data import (
    BASELINES,
    BaselineWindow,
    RunRecord,
    Study,
    SVDHeldOut,
    SVDWindow,
    neglog,
    pareto_front,
)
from agent.reporting.timemodel import TimeModel

CMAP = "viridis"
MARKERS = "osD^vP*Xh<>"
BASELINE_STYLES = {"svd": ("tab:red", "_"), "sz3": ("tab:purple", "^"), "zfp": ("tab:brown", "v")}
WINDOW_LINES = ("-", "-.", ":")  # the per-rank SVD of older runs is dashed
NINES_LABEL = "nines scale: −log10(1 − R²)"
SIZE_LABEL = "bytes ratio (raw float32 bytes / stored bytes; ours: model_bytes, the codec file's when written)"


#: every figure is drawn under matplotlib's defaults (a user's matplotlibrc or a notebook's rcParams cannot change
#: a report's bytes) with a fixed SVG hash salt; PNG metadata holds only the drawing matplotlib's version, no date
STYLE = ("default", {"svg.hashsalt": "mpm-inr", "savefig.dpi": 110})
PNG_METADATA = {"Software": f"matplotlib {matplotlib.__version__}"}


def fixed_style():
    """A context (and decorator) drawing with STYLE, so the same study always gives the same bytes."""
    return plt.style.context(STYLE)


@fixed_style()
def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (drawn with STYLE; metadata: the matplotlib version only); closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata=PNG_METADATA)  # fixed margins: one draw, not two
    plt.close(fig)
    return buf.getvalue()


def _r2_axis(ax, values: Sequence[float], axis: str = "y", runs_max: float | None = None) -> None:
    """Ticks of a -log10(1 - R²) axis labelled in R² (0.9, 0.99, ...). With `runs_max` (the best run's value),
    the axis stops 3 decades above it (at least at R² = 1-1e-6): SVD ranks beyond are in the report's tables."""
    finite = [v for v in values if math.isfinite(v)]
    lo = math.floor(min(finite, default=0.0))
    hi = math.ceil(max(finite, default=1.0))
    if runs_max is not None and math.isfinite(runs_max):
        hi = min(hi, max(6, math.ceil(runs_max) + 3))
        (ax.set_ylim if axis == "y" else ax.set_xlim)(min(lo, 0) - 0.2, hi + 0.2)
    ticks = list(range(min(lo, 0), max(hi, 1) + 1))
    step = max(1, len(ticks) // 10)
    ticks = ticks[::step]
    (ax.set_yticks if axis == "y" else ax.set_xticks)(ticks)
    (ax.set_yticklabels if axis == "y" else ax.set_xticklabels)([r2_label(t) for t in ticks])


def r2_label(t: float) -> str:
    """The R² at -log10(1 - R²) = t: 0.9, 0.99, ..., 0.9999, then 1-1e-5, 1-1e-6, ..."""
    t = round(t)
    if t <= 0:
        return f"{1 - 10.0 ** -t:g}"
    return f"{1 - 10.0 ** -t:.{t}f}" if t <= 4 else f"1-1e-{t}"


# ------------------------------------------------------------------------------------------------ tree


def _layout(runs: Sequence[RunRecord]) -> dict[int, tuple[float, float]]:
    """x: leaf order (children in node-id order), y: depth. Parents sit above the middle of their children."""
    ids = {r.node_id for r in runs}
    children: dict[int | None, list[int]] = {}
    for r in sorted(runs, key=lambda r: r.node_id):
        p = r.parent_id if r.parent_id in ids else None
        children.setdefault(p, []).append(r.node_id)
    pos: dict[int, tuple[float, float]] = {}
    cursor = [0.0]

    def place(nid: int, depth: int) -> float:
        kids = children.get(nid, [])
        if not kids:
            x = cursor[0]
            cursor[0] += 1.0
        else:
            xs = [place(k, depth + 1) for k in kids]
            x = (xs[0] + xs[-1]) / 2
        pos[nid] = (x, -float(depth))
        return x

    for root in children.get(None, []):
        place(root, 0)
    return pos


@fixed_style()
def tree_figure(study: Study) -> Figure:
    blocks = sorted({r.block for r in study.runs})
    n = max(len(blocks), 1)
    height = 2.6 * n + 0.6
    fig, axes = plt.subplots(n, 1, figsize=(9, height), squeeze=False)
    fig.subplots_adjust(left=0.08, right=0.78, bottom=0.3 / height, top=1 - 0.55 / height, hspace=0.35)
    vals = [neglog(r.r2) for r in study.ok_runs if r.r2 is not None]
    norm = Normalize(vmin=min(vals, default=0.0), vmax=max(max(vals, default=1.0), min(vals, default=0.0) + 1e-6))
    cmap = plt.get_cmap(CMAP)
    for ax, b in zip(axes[:, 0], blocks or [0]):
        runs = [r for r in study.runs if r.block == b]
        pos = _layout(runs)
        by_id = {r.node_id: r for r in runs}
        for r in runs:
            if r.parent_id in pos:
                (x0, y0), (x1, y1) = pos[r.parent_id], pos[r.node_id]
                ax.plot([x0, x1], [y0, y1], color="0.6", lw=1, zorder=1)
        for nid, (x, y) in pos.items():
            r = by_id[nid]
            if r.ok:
                ax.scatter([x], [y], s=260, color=cmap(norm(neglog(r.r2))), edgecolors="k", zorder=2)
            else:
                ax.scatter([x], [y], s=260, color="0.85", edgecolors="tab:red", marker="X" if r.status not in ("planned", "running") else "o",
                           zorder=2)
            ax.annotate(str(nid), (x, y), ha="center", va="center", fontsize=7, zorder=3,
                        color="w" if r.ok and norm(neglog(r.r2)) < 0.5 else "k")
        blk = study.state.block(b)
        title = f"block {b}" + (f": {blk.field}, {blk.n_training_frames} frames" if blk else "")
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xticks([])
        depth = max((-y for _, y in pos.values()), default=0)
        ax.set_yticks([-d for d in range(int(depth) + 1)])
        ax.set_yticklabels([str(d) for d in range(int(depth) + 1)])
        ax.set_ylabel("depth")
        ax.set_xlim(-0.7, max((x for x, _ in pos.values()), default=0) + 0.7)
        ax.set_ylim(-depth - 0.6, 0.6)
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    cb = fig.colorbar(sm, cax=fig.add_axes((0.81, 0.3 / height, 0.02, 1 - 0.85 / height)))
    cb.set_label("R² (colour scale: -log10(1 - R²)); grey: failed or unfinished")
    ticks = [t for t in range(math.floor(norm.vmin), math.ceil(norm.vmax) + 1) if norm.vmin <= t <= norm.vmax]
    if len(ticks) < 2:
        ticks = [norm.vmin, norm.vmax]
        cb.set_ticks(ticks)
        cb.set_ticklabels([f"{1 - 10.0 ** -t:.6f}" for t in ticks])
    else:
        cb.set_ticks(ticks)
        cb.set_ticklabels([r2_label(t) for t in ticks])
    fig.suptitle(f"Exploration tree of {study.name}", fontsize=11)
    return fig


# ------------------------------------------------------------------------------------------------ Pareto


def _inr_styles(runs: Sequence[RunRecord]) -> dict[str, tuple[str, str]]:
    names = sorted({r.inr_type for r in runs})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {n: (colours[i % len(colours)], MARKERS[i % len(MARKERS)]) for i, n in enumerate(names)}


def _scatter_runs(ax, runs: Sequence[RunRecord], xkey: str, ykey: str, styles) -> list[float]:
    ys = []
    pts = []
    for inr, (colour, marker) in styles.items():
        sel = [r for r in runs if r.inr_type == inr]
        xy = [(_x(r, xkey), neglog(getattr(r, ykey))) for r in sel]
        xy = [(x, y) for x, y in xy if x is not None and x > 0]
        if xy:
            ax.scatter(*zip(*xy), color=colour, marker=marker, s=36, label=f"{inr} ({len(xy)})", zorder=3)
            pts += xy
            ys += [y for _, y in xy]
    if pts:
        smaller_is_better = xkey == "time"  # more compression is better: the front runs the other way
        front = pareto_front(pts if smaller_is_better else [(-x, y) for x, y in pts])
        fx, fy = zip(*sorted(pts[i] for i in front))
        ax.step(fx, fy, where="post" if smaller_is_better else "pre", color="k", lw=1, alpha=0.6,
                label="Pareto front", zorder=2)
    return ys


#: the plots' own height (inches) that a legend below them never squeezes out
MIN_PLOT_IN = 3.5


def _legend_below(fig: Figure, axes, top_in: float = 0.55, left: float = 0.08, right: float = 0.98) -> None:
    """The legend of one axes (or of several, each label once) under the plots, with a bottom margin sized to
    its rows (fixed layout, no tight bbox)."""
    by_label: dict[str, object] = {}
    for ax in (axes if isinstance(axes, (tuple, list)) else (axes,)):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            by_label.setdefault(label, handle)
    labels, handles = list(by_label), list(by_label.values())
    width = fig.get_size_inches()[0]
    longest = max((len(label) for label in labels), default=1)
    ncol = max(1, min(3, len(labels), int(width / (0.07 * longest + 0.6))))  # ~14 characters per inch at 7 pt
    rows = -(-len(labels) // ncol)
    height = fig.get_size_inches()[1]
    bottom_in = 0.6 + 0.18 * rows
    if height - top_in - bottom_in < MIN_PLOT_IN:  # a long legend (many windows' baselines) gets room of its own
        height = top_in + bottom_in + MIN_PLOT_IN
        fig.set_size_inches(width, height)
    fig.subplots_adjust(left=left, right=right, top=1 - top_in / height, bottom=bottom_in / height, wspace=0.22)
    if handles:
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.005), ncol=ncol, fontsize=7,
                   frameon=False)


def _x(r: RunRecord, key: str) -> float | None:
    return {"time": r.time, "compression": r.compression, "bytes_ratio": r.bytes_ratio}[key]


def _baseline_curves(ax, windows: Sequence[BaselineWindow]) -> list[float]:
    """Each window's SVD, SZ3 and ZFP as (bytes ratio, nines) curves; one line style per window."""
    ys: list[float] = []
    several = len(windows) > 1
    for i, w in enumerate(windows):
        for method, points in w.curves.items():
            colour, marker = BASELINE_STYLES[method]
            xy = [(p.compression, neglog(p.r2)) for p in sorted(points, key=lambda p: -p.compression)]
            ax.plot(*zip(*xy), color=colour, marker=marker, ms=7 if marker == "_" else 4, lw=1,
                    ls=WINDOW_LINES[i % len(WINDOW_LINES)], zorder=1,
                    label=f"{BASELINES[method]} ({len(xy)} pts)" + (f" of {w.label}" if several else ""))
            ys += [y for _, y in xy]
    return ys


def _svd_points(ax, windows: Sequence[SVDWindow], xkey: str, heldout: dict | None = None) -> list[float]:
    ys: list[float] = []
    for i, w in enumerate(windows):
        series = {"": w.r2} if heldout is None else heldout
        for j, (method, r2) in enumerate(series.items()):
            ranks = sorted(r2)
            if xkey == "time":
                t = w.time_s if heldout is None else None
                if t is None:
                    continue
                x = [t] * len(ranks)
            else:
                x = [w.compression.get(k) for k in ranks]
            xy = [(xx, neglog(r2[k]), k) for xx, k in zip(x, ranks) if xx is not None and xx > 0]
            if not xy:
                continue
            several = len({v.dataset for v in windows}) > 1
            label = (f"SVD, {w.frames} frames" + (f" of {w.label}" if several else "")
                     + (f" (hold-out every {w.holdout_every})" if w.holdout_every and not method else "")
                     + (f" ({method} interpolation)" if method else ""))
            ax.plot([p[0] for p in xy], [p[1] for p in xy], color="tab:red", ls="--" if j == 0 else ":", marker="_",
                    ms=12, lw=1, label=label, zorder=1)
            for xx, yy, k in xy:
                ax.annotate(f"r{k}", (xx, yy), xytext=(4, 0), textcoords="offset points", fontsize=6,
                            color="tab:red", va="center")
            ys += [p[1] for p in xy]
    return ys


@fixed_style()
def pareto_figure(study: Study, field: str, windows: Sequence[SVDWindow],
                  baselines: Sequence[BaselineWindow] = ()) -> Figure:
    """R² (nines scale) against training time and against the bytes ratio for one field. The size panel has
    the classical baselines in bytes of every window that recorded them, and the per-rank SVD (values per
    parameter) of the windows that did not; the time panel the SVD's decomposition time."""
    runs = [r for r in study.ok_runs if r.field == field]
    wins = [w for w in windows if w.field == field]
    curves = [b for b in baselines if b.field == field]
    legacy = [w for w in wins if not any(b.key == w.key for b in curves)]
    styles = _inr_styles(runs)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 5.6))
    run_ys = _scatter_runs(a1, runs, "time", "r2", styles)
    ys = run_ys + _svd_points(a1, wins, "time")
    ys += _scatter_runs(a2, runs, "bytes_ratio", "r2", styles) + _svd_points(a2, legacy, "compression")
    ys += _baseline_curves(a2, curves)
    for ax, xlabel in ((a1, "training time [s] (SVD: one decomposition serves every rank)"),
                       (a2, SIZE_LABEL)):
        ax.set_xscale("log")
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(f"R² on training frames ({NINES_LABEL})", fontsize=8)
        ax.grid(alpha=0.3, which="both")
        _r2_axis(ax, ys, runs_max=max(run_ys, default=None))
    a2.axvline(study.min_compression, color="0.5", lw=0.8, ls=":")
    _legend_below(fig, (a1, a2))  # the runs once, the baselines of the size panel too
    fig.suptitle(f"{study.name}: {field} — R² vs training time and size (SVD = truncated SVD, SZ3, ZFP: classical "
                 f"compressors of the same window)", fontsize=10)
    return fig


@fixed_style()
def heldout_figure(study: Study, field: str, windows: Sequence[SVDWindow], held: Sequence[SVDHeldOut]) -> Figure:
    """Held-out R² of the INRs against compression, with the SVD's interpolated held-out R² per rank."""
    runs = [r for r in study.ok_runs if r.field == field and r.holdout_r2 is not None]
    styles = _inr_styles(runs)
    fig, ax = plt.subplots(figsize=(7.5, 5.4))
    run_ys = _scatter_runs(ax, runs, "compression", "holdout_r2", styles)
    ys = list(run_ys)
    for h in held:
        if h.window[1] != field or not h.r2:
            continue
        w = next((w for w in windows if w.key == h.key), None)
        if w is not None:
            ys += _svd_points(ax, [w], "compression", heldout=h.r2)
    ax.set_xscale("log")
    ax.set_xlabel("compression ratio (values / parameters)")
    ax.set_ylabel("R² on held-out frames")
    ax.grid(alpha=0.3, which="both")
    _r2_axis(ax, ys, runs_max=max(run_ys, default=None))
    _legend_below(fig, ax, left=0.13, right=0.97)
    ax.set_title(f"{study.name}: {field} on held-out interleaved frames", fontsize=10)
    return fig


# ------------------------------------------------------------------------------------------------ time model


@fixed_style()
def timemodel_figure(model: TimeModel) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 5))
    lo, hi = math.inf, 0.0
    for i, (_, f) in enumerate(sorted(model.fits.items())):
        pred = f.loo if f.loo is not None else f.fitted
        kind = "leave-one-out" if f.loo is not None else "in-sample"
        ax.scatter(f.actual, pred, marker=MARKERS[i % len(MARKERS)], s=30, label=f"{f.label} ({kind}, {f.n} runs)")
        for nid, x, y in zip(f.node_ids, f.actual, pred):
            ax.annotate(str(nid), (x, y), xytext=(3, 3), textcoords="offset points", fontsize=6)
        lo = min(lo, float(min(f.actual.min(), pred.min())))
        hi = max(hi, float(max(f.actual.max(), pred.max())))
    if hi > 0:
        lo = max(lo, 1e-3)
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, ls="--", label="y = x")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("measured training time [s]")
    ax.set_ylabel("predicted training time [s]")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.set_title("Training-time model: time ≈ a·W + c·steps + b", fontsize=10)
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.11, top=0.93)
    return fig
