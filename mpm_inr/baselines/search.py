"""A compressor's rate-distortion table on a fixed geometric grid of error bounds, and reading it.

eps = 2^-x with x on the lattice k·GRID_STEP. A window's table (its *band*) is every lattice point from where
the training R² is at most R2_FLOOR up to where it reaches R2_CEILING, computed once per window. Matched
accuracy is the smallest stream of the table reaching the run's R², matched size the highest R² within the run's
bytes: real compressions at lattice points, never interpolations, so the answer costs at most one grid step in
bytes against a continuous search (measured: docs/contracts.md). A run whose R² or bytes lie beyond the band
extends it on demand: whole factors of 2 from the band's edge until the condition flips, then bisection down to
GRID_STEP (about 5 points); those points are cached too. What a query reads depends only on the band and the
query, never on which other runs extended the table before, so a cached answer equals a fresh one. The best point
that meets the condition wins, which tolerates the small non-monotonicities of real compressors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from mpm_inr.baselines.evaluate import CodecPoint

GRID_STEP = 1.0 / 16.0  # eps ratio 2^(1/16) ≈ 4.4 % between neighbours: ~2 % in SZ3's bytes (contracts.md)
X_MIN, X_MAX = -8.0, 30.0  # eps from 256 std (everything rounds to the mean) down to 1e-9 std
R2_FLOOR = 0.97  # the band starts where R² ≤ this (well below the 0.99 of the loosest targets) ...
R2_CEILING = 1.0 - 1e-6  # ... and ends where R² ≥ this (beyond the tightest targets, 0.99999)


def start_exponent(target_r2: float, start_scale: float) -> float:
    """Integer x whose eps gives 1 − R² ≈ eps²/3 (uniform error of half-width eps·std), times the codec's scale."""
    eps = math.sqrt(3.0 * max(1.0 - target_r2, 1e-18)) * start_scale
    return float(min(max(round(-math.log2(eps)), X_MIN), X_MAX))


class Table:
    """The points of one codec on one window: `points[x]`, computed through `evaluate` when missing, and `band`,
    the x of the complete band (empty until `fill_band`)."""

    def __init__(self, evaluate: Callable[[float], CodecPoint], points: dict[float, CodecPoint] | None = None,
                 band: tuple[float, float] | None = None) -> None:
        self.evaluate = evaluate
        self.points = dict(points or {})
        self.band = band

    def get(self, x: float) -> CodecPoint:
        if x not in self.points:
            self.points[x] = self.evaluate(x)
        return self.points[x]

    def fill_band(self, start: float) -> None:
        """Every lattice point from R² ≤ R2_FLOOR to R² ≥ R2_CEILING, walking down then up from `start`."""
        lo = hi = _snap(start)
        while self.get(lo).r2 > R2_FLOOR and lo - GRID_STEP >= X_MIN:
            lo -= GRID_STEP
        while self.get(hi).r2 < R2_CEILING and hi + GRID_STEP <= X_MAX:
            hi += GRID_STEP
        self.band = (lo, hi)

    def band_xs(self) -> list[float]:
        if self.band is None:
            raise RuntimeError("the band is not computed")
        lo, hi = self.band
        return [lo + k * GRID_STEP for k in range(round((hi - lo) / GRID_STEP) + 1)]

    def _walk(self, meets: Callable[[CodecPoint], bool], edge: float, direction: float) -> list[float]:
        """From the band's `edge`, whole factors of 2 in `direction` (the last one cut at X_MIN / X_MAX) until
        `meets` flips, then bisection of the last bracket down to GRID_STEP. Returns the x visited."""
        holds = meets(self.get(edge))
        per_unit = round(1.0 / GRID_STEP)
        k, k_end = round(edge / GRID_STEP), round((X_MAX if direction > 0 else X_MIN) / GRID_STEP)
        visited, flipped = [], None
        while k != k_end:
            k = min(k + per_unit, k_end) if direction > 0 else max(k - per_unit, k_end)
            visited.append(k * GRID_STEP)
            if meets(self.get(k * GRID_STEP)) != holds:
                flipped = k
                break
        if flipped is None:
            return visited
        inside = round(visited[-2] / GRID_STEP) if len(visited) > 1 else round(edge / GRID_STEP)
        outside = flipped  # the condition as at the edge at `inside`, flipped at `outside`
        while abs(outside - inside) > 1:
            middle = inside + (outside - inside) // 2
            visited.append(middle * GRID_STEP)
            if meets(self.get(middle * GRID_STEP)) == holds:
                inside = middle
            else:
                outside = middle
        return visited

    def _considered(self, meets: Callable[[CodecPoint], bool], grows_up: bool) -> list[CodecPoint]:
        """The band, plus the walk beyond it that the condition asks for: up while the top still meets (or until
        something meets, if nothing in the band does), down likewise at the bottom. `grows_up`: the condition
        holds for larger x (accuracy) rather than smaller x (a byte budget)."""
        xs = self.band_xs()
        lo, hi = xs[0], xs[-1]
        any_meets = any(meets(self.get(x)) for x in xs)
        if grows_up:
            xs += self._walk(meets, hi, 1.0) if not any_meets else []
            xs += self._walk(meets, lo, -1.0) if meets(self.get(lo)) else []
        else:
            xs += self._walk(meets, hi, 1.0) if meets(self.get(hi)) else []
            xs += self._walk(meets, lo, -1.0) if not any_meets else []
        return [self.get(x) for x in xs]

    def matched_accuracy(self, target_r2: float) -> CodecPoint | None:
        """The smallest stream whose training R² reaches target_r2 (None if none does)."""
        meeting = [p for p in self._considered(lambda p: p.r2 >= target_r2, True) if p.r2 >= target_r2]
        return min(meeting, key=lambda p: (p.bytes, -p.r2)) if meeting else None

    def matched_size(self, budget_bytes: int) -> CodecPoint | None:
        """The highest training R² in at most budget_bytes (None if none fits)."""
        fitting = [p for p in self._considered(lambda p: p.bytes <= budget_bytes, False) if p.bytes <= budget_bytes]
        return max(fitting, key=lambda p: (p.r2, -p.bytes)) if fitting else None


def _snap(x: float) -> float:
    return min(max(round(x / GRID_STEP) * GRID_STEP, X_MIN), X_MAX)


def on_grid(xs: Iterable[float]) -> bool:
    """Whether every x is a lattice point within [X_MIN, X_MAX] (a cache file's points must be)."""
    return all(isinstance(x, float) and X_MIN <= x <= X_MAX and _snap(x) == x for x in xs)
