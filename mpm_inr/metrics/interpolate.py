"""1-D interpolation of several columns at once: linear and natural cubic spline, both extended linearly.

Used to carry the SVD baseline's temporal coefficients to held-out frames. Outside the known times both
methods continue along the end tangent: for the natural spline that is the C² continuation (its second
derivative is 0 at the ends), and it never blows up the way a cubic extrapolation can.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_banded

from mpm_inr.errors import ConfigError

METHODS = ("linear", "cubic")


def _check_knots(t_known: np.ndarray, y_known: np.ndarray) -> None:
    if t_known.ndim != 1 or y_known.shape[0] != t_known.shape[0]:
        raise ValueError(f"need t (n,) and y (n, ...), got {t_known.shape} and {y_known.shape}")
    if t_known.shape[0] < 2:
        raise ConfigError(f"interpolation needs at least 2 known frames, got {t_known.shape[0]}")
    if not np.all(np.diff(t_known) > 0):
        raise ValueError("known times must be strictly increasing")


def _segments(t_known: np.ndarray, t_query: np.ndarray) -> np.ndarray:
    """Index j of the segment [t_j, t_j+1] used for each query (end segments for queries outside)."""
    return np.clip(np.searchsorted(t_known, t_query, side="right") - 1, 0, t_known.shape[0] - 2)


def interpolate_linear(t_known: np.ndarray, y_known: np.ndarray, t_query: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation of y_known (n, ...) at t_query (m,), linear extrapolation outside."""
    t_known = np.asarray(t_known, dtype=np.float64)
    y_known = np.asarray(y_known, dtype=np.float64)
    t_query = np.asarray(t_query, dtype=np.float64)
    _check_knots(t_known, y_known)
    j = _segments(t_known, t_query)
    weight = (t_query - t_known[j]) / (t_known[j + 1] - t_known[j])
    weight = weight.reshape(-1, *([1] * (y_known.ndim - 1)))
    return (1.0 - weight) * y_known[j] + weight * y_known[j + 1]


def natural_spline_second_derivatives(t_known: np.ndarray, y_known: np.ndarray) -> np.ndarray:
    """Second derivatives M_i of the natural cubic spline through (t, y) (M_0 = M_{n-1} = 0).

    Solves the tridiagonal system h_{i-1} M_{i-1} + 2 (h_{i-1} + h_i) M_i + h_i M_{i+1} = 6 (Δ_i − Δ_{i-1}),
    Δ_i = (y_{i+1} − y_i) / h_i, as one banded solve for all columns at once (a Python loop over the knots took
    minutes for the held-out rival of the whole simulation: 7 500 knots, every rank and precision it tries).
    """
    n = t_known.shape[0]
    second = np.zeros_like(y_known)
    if n < 3:
        return second
    h = np.diff(t_known)
    slopes = np.diff(y_known, axis=0) / h.reshape(-1, *([1] * (y_known.ndim - 1)))
    rhs = 6.0 * (slopes[1:] - slopes[:-1])  # rows i = 1 .. n-2
    bands = np.zeros((3, n - 2))
    bands[0, 1:] = h[1:-1]  # coefficient of M_{i+1} in row i
    bands[1] = 2.0 * (h[:-1] + h[1:])
    bands[2, :-1] = h[1:-1]  # coefficient of M_{i-1} in row i
    second[1:-1] = solve_banded((1, 1), bands, rhs.reshape(n - 2, -1)).reshape(rhs.shape)
    return second


def interpolate_natural_cubic(t_known: np.ndarray, y_known: np.ndarray, t_query: np.ndarray) -> np.ndarray:
    """Natural cubic spline through (t_known, y_known (n, ...)) evaluated at t_query; linear outside the knots."""
    t_known = np.asarray(t_known, dtype=np.float64)
    y_known = np.asarray(y_known, dtype=np.float64)
    t_query = np.asarray(t_query, dtype=np.float64)
    _check_knots(t_known, y_known)
    second = natural_spline_second_derivatives(t_known, y_known)
    column = (-1, *([1] * (y_known.ndim - 1)))

    j = _segments(t_known, t_query)
    h = (t_known[j + 1] - t_known[j]).reshape(column)
    left = (t_query - t_known[j]).reshape(column)
    right = (t_known[j + 1] - t_query).reshape(column)
    inside = (
        second[j] * right**3 / (6.0 * h)
        + second[j + 1] * left**3 / (6.0 * h)
        + (y_known[j] / h - second[j] * h / 6.0) * right
        + (y_known[j + 1] / h - second[j + 1] * h / 6.0) * left
    )

    # Tangent continuation beyond the ends (second derivative is 0 there).
    h_first = t_known[1] - t_known[0]
    h_last = t_known[-1] - t_known[-2]
    slope_first = (y_known[1] - y_known[0]) / h_first - h_first * second[1] / 6.0
    slope_last = (y_known[-1] - y_known[-2]) / h_last + h_last * second[-2] / 6.0
    before = y_known[0] + slope_first * (t_query - t_known[0]).reshape(column)
    after = y_known[-1] + slope_last * (t_query - t_known[-1]).reshape(column)
    result = np.where((t_query < t_known[0]).reshape(column), before, inside)
    return np.where((t_query > t_known[-1]).reshape(column), after, result)


def interpolate(t_known: np.ndarray, y_known: np.ndarray, t_query: np.ndarray, method: str = "linear") -> np.ndarray:
    """Interpolate columns of y_known at t_query with `method` in METHODS ("linear" or "cubic")."""
    if method == "linear":
        return interpolate_linear(t_known, y_known, t_query)
    if method == "cubic":
        return interpolate_natural_cubic(t_known, y_known, t_query)
    raise ConfigError(f"unknown interpolation method {method!r}; choose one of {', '.join(METHODS)}")
