"""A compressor's rate-distortion points on a fixed geometric grid of error bounds, computed only where a query
needs them.

eps = 2^-x with x = k·GRID_STEP, k an integer (the fine grid). A query (matched accuracy at a run's R², matched
size at a run's bytes) reads:
  1. the coarse band: every COARSE-th grid point (eps ratio 2^(1/2)) from where the training R² is at most
     R2_FLOOR up to where it reaches R2_CEILING, the same for every query of the window;
  2. beyond the band, when the query's condition holds (or fails) all the way to its edge: steps of COARSE,
     doubling, until the condition flips (or X_MIN / X_MAX);
  3. in every bracket between neighbours of 1-2 where the condition flips, bisection down to one grid step
     (3 compressions per bracket of COARSE).
The answer is the best point of those that meets the condition: real compressions at grid points, never
interpolations. What a query reads depends only on the query and the codec's points, never on which points other
queries (or `full_band`) computed before, so a cached answer equals a fresh one.

Assumption: R² and bytes are monotone in eps inside each bracket that 3. bisects (one flip per bracket, its best
point at the flip). Then the answer equals the best over every grid point of [X_MIN, X_MAX] (the full grid). It
holds for ZFP; SZ3's bytes and R² wobble by a few % between neighbouring bounds on some fields, where the two
answers may differ by that wobble (how often: tests/test_baselines.py, docs/contracts.md). The coarse band
tolerates non-monotonicities across brackets: every flip between coarse points is refined, and every coarse point
is a candidate. Ties in (bytes, R²) (ZFP's streams change only at powers of 2) go to the largest eps
for matched accuracy and to the smallest for matched size, lossless points (R² = 1) excepted: the largest eps that
is lossless. Those are the edges the bisections find.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable

from mpm_inr.baselines.evaluate import CodecPoint

GRID_STEP = 1.0 / 16.0  # eps ratio 2^(1/16) ≈ 4.4 % between neighbours: ~2 % in SZ3's bytes (contracts.md)
COARSE = 8  # grid steps between the coarse band's points: eps ratio 2^(1/2)
X_MIN, X_MAX = -8.0, 30.0  # eps from 256 std (everything rounds to the mean) down to 1e-9 std
K_MIN, K_MAX = round(X_MIN / GRID_STEP), round(X_MAX / GRID_STEP)  # multiples of COARSE
R2_FLOOR = 0.97  # the band starts where R² ≤ this (well below the 0.99 of the loosest targets) ...
R2_CEILING = 1.0 - 1e-6  # ... and ends where R² ≥ this (beyond the tightest targets, 0.99999)
BAND_START_R2 = 0.999  # where the coarse band's walk starts (start_exponent): mid-band for every field measured

Condition = Callable[[CodecPoint], bool]


def start_exponent(target_r2: float, start_scale: float) -> float:
    """Integer x whose eps gives 1 − R² ≈ eps²/3 (uniform error of half-width eps·std), times the codec's scale."""
    eps = math.sqrt(3.0 * max(1.0 - target_r2, 1e-18)) * start_scale
    return float(min(max(round(-math.log2(eps)), X_MIN), X_MAX))


class Table:
    """The points of one codec on one window, `points[x]`, computed through `evaluate` when a query needs them.
    `start_scale`: the codec's (codecs.py), where the coarse band's walk starts."""

    def __init__(self, evaluate: Callable[[float], CodecPoint], start_scale: float,
                 points: dict[float, CodecPoint] | None = None) -> None:
        self.evaluate = evaluate
        self.start_k = COARSE * round(start_exponent(BAND_START_R2, start_scale) / GRID_STEP / COARSE)
        self.points = dict(points or {})

    def at(self, k: int) -> CodecPoint:
        x = k * GRID_STEP
        if x not in self.points:
            self.points[x] = self.evaluate(x)
        return self.points[x]

    def coarse_band(self) -> list[int]:
        """Every COARSE-th grid index, walked down from start_k until R² ≤ R2_FLOOR and up until R² ≥ R2_CEILING
        (or the grid's ends)."""
        lo = hi = self.start_k
        while self.at(lo).r2 > R2_FLOOR and lo - COARSE >= K_MIN:
            lo -= COARSE
        while self.at(hi).r2 < R2_CEILING and hi + COARSE <= K_MAX:
            hi += COARSE
        return list(range(lo, hi + 1, COARSE))

    def full_band(self) -> tuple[float, float]:
        """Every grid point between the coarse band's ends (their x): what a study computes ahead of its runs
        (`python -m mpm_inr.baselines table`), so that no query inside the band compresses."""
        band = self.coarse_band()
        for k in range(band[0], band[-1] + 1):
            self.at(k)
        return band[0] * GRID_STEP, band[-1] * GRID_STEP

    def _gallop(self, meets: Condition, edge: int, direction: int) -> list[int]:
        """From the band's edge, steps of COARSE doubling each time (cut at the grid's end) until `meets` flips."""
        holds, end = meets(self.at(edge)), K_MAX if direction > 0 else K_MIN
        visited, k, step = [], edge, COARSE
        while k != end:
            k = min(k + step, end) if direction > 0 else max(k - step, end)
            visited.append(k)
            if meets(self.at(k)) != holds:
                break
            step *= 2
        return visited

    def _bisect(self, meets: Condition, inside: int, outside: int) -> list[int]:
        """Grid indices visited narrowing [inside, outside] (the condition differs at the two) to one step."""
        visited, holds = [], meets(self.at(inside))
        while abs(outside - inside) > 1:
            middle = (inside + outside) // 2
            visited.append(middle)
            if meets(self.at(middle)) == holds:
                inside = middle
            else:
                outside = middle
        return visited

    def _candidates(self, meets: Condition, grows_up: bool) -> list[CodecPoint]:
        """The points a query reads (module docstring), walked by `meets`. `grows_up`: it holds for larger x
        (accuracy) rather than smaller x (a byte budget)."""
        band = self.coarse_band()
        lo, hi = band[0], band[-1]
        any_meets = any(meets(self.at(k)) for k in band)
        up = not any_meets if grows_up else meets(self.at(hi))
        down = meets(self.at(lo)) if grows_up else not any_meets
        ks = sorted(band + (self._gallop(meets, hi, 1) if up else []) + (self._gallop(meets, lo, -1) if down else []))
        refined = [k for left, right in itertools.pairwise(ks) if meets(self.at(left)) != meets(self.at(right))
                   for k in self._bisect(meets, left, right)]
        return [self.at(k) for k in ks + refined]

    def matched_accuracy(self, target_r2: float) -> CodecPoint | None:
        """The smallest stream whose training R² reaches target_r2 (None if none does)."""
        meeting = [p for p in self._candidates(lambda p: p.r2 >= target_r2, True) if p.r2 >= target_r2]
        return min(meeting, key=lambda p: (p.bytes, -p.r2, p.exponent)) if meeting else None

    def matched_size(self, budget_bytes: int) -> CodecPoint | None:
        """The highest training R² in at most budget_bytes (None if none fits). The walk treats a lossless point
        (R² = 1) as the end: a smaller eps only adds bytes, so the smallest lossless x is what it looks for."""
        improvable = [p for p in self._candidates(lambda p: p.bytes <= budget_bytes and p.r2 < 1.0, False)]
        fitting = [p for p in improvable if p.bytes <= budget_bytes]
        return max(fitting, key=lambda p: (p.r2, -p.bytes, p.exponent if p.r2 < 1.0 else -p.exponent)) \
            if fitting else None


def on_grid(xs: Iterable[float]) -> bool:
    """Whether every x is a grid point within [X_MIN, X_MAX] (a cache file's points must be)."""
    return all(isinstance(x, float) and X_MIN <= x <= X_MAX and round(x / GRID_STEP) * GRID_STEP == x for x in xs)
