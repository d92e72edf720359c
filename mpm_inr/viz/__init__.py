"""Figures of a run: the field plot (`field.png`) and panel helpers for notebooks."""

from mpm_inr.viz.field_plot import (
    field_figure,
    plot_field,
    plot_info,
    plot_loss,
    plot_particles,
    plot_scatter,
    plot_traces,
    trace_particles,
)

__all__ = [
    "field_figure",
    "plot_field",
    "plot_info",
    "plot_loss",
    "plot_particles",
    "plot_scatter",
    "plot_traces",
    "trace_particles",
]
