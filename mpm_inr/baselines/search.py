"""A compressor's rate-distortion points on a fixed geometric grid of error bounds, computed only where a query
needs them.

eps = 2^-x with x = k·GRID_STEP, k an integer (the fine grid). A query (matched accuracy at a run's R², matched
size at a run's bytes) reads:
  1. its start, a point of the octave lattice (every STRIDE-th grid point, eps ratio 2, through the codec's
     `start_k`): for matched accuracy the lattice point nearest the eps that 1 − R² ≈ eps²/3 predicts for the
     target (times the codec's start_scale), for matched size `start_k` itself;
  2. lattice points walked one octave at a time from the start towards where the query's condition flips (or
     X_MIN / X_MAX);
  3. the bracket between the last two, bisected down to one grid step (4 compressions).
The answer is the best point of those that meets the condition: real compressions at grid points, never
interpolations. What a query reads depends only on the query and the codec's points, never on which points other
queries (or `full_band`) computed before, so a cached answer equals a fresh one; and every walk runs on the same
lattice, so queries of one window share their points.

Assumption: R² and bytes are monotone in eps along the walk (one flip, its best point at the flip). Then the
answer equals the best over every grid point of [X_MIN, X_MAX] (the full grid). It holds for ZFP; SZ3's bytes and
R² wobble by a few % between neighbouring bounds on some fields, where the two answers may differ by that wobble
(how often: tests/test_baselines.py, docs/contracts.md). Ties in (bytes, R²) (ZFP's streams change only at powers
of 2) go to the largest eps for matched accuracy and to the smallest for matched size, lossless points (R² = 1)
excepted: the largest eps that is lossless. Those are the edges the bisections find.

Before 2026-12-04 every query also read a coarse band (every 8th grid point from R² 0.97 to 1 − 1e-6): on the
10 000-frame windows of discs_3types, 23-32 points per codec and run where the walk read 12-16 (docs/landscape).
`full_band` still computes that band (every grid point, and the lattice an octave beyond it), for a study that
computes its tables ahead (`python -m mpm_inr.baselines table`) and for the process beside a run's fit, which
fills it a point at a time (`filling_band`) until no query inside it compresses.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Generator, Iterable, Iterator

from mpm_inr.baselines.evaluate import CodecPoint

GRID_STEP = 1.0 / 16.0  # eps ratio 2^(1/16) ≈ 4.4 % between neighbours: ~2 % in SZ3's bytes (contracts.md)
COARSE = 8  # grid steps between the coarse band's points (full_band): eps ratio 2^(1/2)
STRIDE = 16  # grid steps between the walk's lattice points: one octave of eps
X_MIN, X_MAX = -8.0, 30.0  # eps from 256 std (everything rounds to the mean) down to 1e-9 std
K_MIN, K_MAX = round(X_MIN / GRID_STEP), round(X_MAX / GRID_STEP)  # multiples of COARSE
R2_FLOOR = 0.97  # the band starts where R² ≤ this (well below the 0.99 of the loosest targets) ...
R2_CEILING = 1.0 - 1e-6  # ... and ends where R² ≥ this (beyond the tightest targets, 0.99999)
BAND_START_R2 = 0.999  # the lattice's anchor `start_k` (start_exponent): mid-band for every field measured

Condition = Callable[[CodecPoint], bool]


def start_exponent(target_r2: float, start_scale: float) -> float:
    """Integer x whose eps gives 1 − R² ≈ eps²/3 (uniform error of half-width eps·std), times the codec's scale."""
    eps = math.sqrt(3.0 * max(1.0 - target_r2, 1e-18)) * start_scale
    return float(min(max(round(-math.log2(eps)), X_MIN), X_MAX))


class Table:
    """The points of one codec on one window, `points[x]`, computed through `evaluate` when a query needs them.
    `start_scale`: the codec's (codecs.py), which places the walks' lattice and their starts."""

    def __init__(self, evaluate: Callable[[float], CodecPoint], start_scale: float,
                 points: dict[float, CodecPoint] | None = None) -> None:
        self.evaluate = evaluate
        self.start_scale = start_scale
        self.start_k = STRIDE * round(start_exponent(BAND_START_R2, start_scale) / GRID_STEP / STRIDE)
        self.points = dict(points or {})
        self.band: tuple[float, float] | None = None  # (x of both ends), once `full_band` has computed it

    def at(self, k: int) -> CodecPoint:
        x = k * GRID_STEP
        if x not in self.points:
            self.points[x] = self.evaluate(x)
        return self.points[x]

    def coarse_band(self) -> list[int]:
        """Every COARSE-th grid index, walked down from start_k until R² ≤ R2_FLOOR and up until R² ≥ R2_CEILING
        (or the grid's ends)."""
        walk = self._coarse_walk()
        while True:
            try:
                next(walk)
            except StopIteration as done:
                lo, hi = done.value
                return list(range(lo, hi + 1, COARSE))

    def _coarse_walk(self) -> Generator[int, None, tuple[int, int]]:
        """`coarse_band`'s walk, yielding each index it compresses; returns the band's ends."""
        lo = hi = self.start_k
        yield from self._read(lo)
        while self.at(lo).r2 > R2_FLOOR and lo - COARSE >= K_MIN:
            lo -= COARSE
            yield from self._read(lo)
        while self.at(hi).r2 < R2_CEILING and hi + COARSE <= K_MAX:
            hi += COARSE
            yield from self._read(hi)
        return lo, hi

    def _read(self, k: int) -> Iterator[int]:
        """Compute the point at grid index k if the table lacks it, yielding k when it did."""
        if k * GRID_STEP not in self.points:
            self.at(k)
            yield k

    def full_band(self) -> tuple[float, float]:
        """Every grid point between the coarse band's ends (their x), and the walks' lattice points an octave beyond
        each end: what a study computes ahead of its runs (`python -m mpm_inr.baselines table`), so that a query
        whose start and flip lie inside the band compresses nothing."""
        for _ in self.filling_band():
            pass
        return self.band

    def filling_band(self) -> Iterator[int]:
        """`full_band` a point at a time: yields each grid index it compresses (after compressing it), so a caller
        can store them as they come and stop anywhere. The coarse band first, then its lattice octaves beyond each end,
        then the band's other grid points by the depth a query's bisection reaches them (search.py: halves of the
        lattice's octaves, quarters, eighths, then every grid step): stopped early, it has saved every query of
        the band the same number of compressions. Sets `band` when done."""
        lo, hi = yield from self._coarse_walk()
        below = self.start_k + STRIDE * ((lo - self.start_k) // STRIDE)  # the lattice point at or below lo
        above = self.start_k - STRIDE * ((self.start_k - hi) // STRIDE)  # ... at or above hi
        beyond = [min(max(k, K_MIN), K_MAX) for k in (below - STRIDE, below, above, above + STRIDE)]
        by_depth = sorted(range(lo, hi + 1), key=lambda k: (-_depth(k - self.start_k), k))
        for k in dict.fromkeys(beyond + by_depth):  # a walk's start or overshoot beyond the band, then the band
            yield from self._read(k)
        self.band = (lo * GRID_STEP, hi * GRID_STEP)

    def _accuracy_start(self, target_r2: float) -> int:
        """The lattice point nearest the bound 1 − R² ≈ eps²/3 predicts for target_r2 (start_exponent)."""
        k = round(start_exponent(target_r2, self.start_scale) / GRID_STEP)
        return min(max(self.start_k + STRIDE * round((k - self.start_k) / STRIDE), K_MIN), K_MAX)

    def _walk(self, meets: Condition, start: int, grows_up: bool) -> list[int]:
        """From `start`, lattice steps (cut at the grid's ends) towards where `meets` flips: down (larger eps)
        while an accuracy condition holds or a byte budget fails, up otherwise; until it flips or the grid ends."""
        holds = meets(self.at(start))
        direction = 1 if holds != grows_up else -1
        visited, k = [start], start
        while (step := min(max(k + direction * STRIDE, K_MIN), K_MAX)) != k:
            k = step
            visited.append(k)
            if meets(self.at(k)) != holds:
                break
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

    def _candidates(self, meets: Condition, start: int, grows_up: bool) -> list[CodecPoint]:
        """The points a query reads (module docstring), walked by `meets` from `start`. `grows_up`: it holds for
        larger x (accuracy) rather than smaller x (a byte budget)."""
        ks = sorted(self._walk(meets, start, grows_up))
        refined = [k for left, right in itertools.pairwise(ks) if meets(self.at(left)) != meets(self.at(right))
                   for k in self._bisect(meets, left, right)]
        return [self.at(k) for k in ks + refined]

    def matched_accuracy(self, target_r2: float) -> CodecPoint | None:
        """The smallest stream whose training R² reaches target_r2 (None if none does)."""
        meets = lambda p: p.r2 >= target_r2
        meeting = [p for p in self._candidates(meets, self._accuracy_start(target_r2), True) if meets(p)]
        return min(meeting, key=lambda p: (p.bytes, -p.r2, p.exponent)) if meeting else None

    def matched_size(self, budget_bytes: int) -> CodecPoint | None:
        """The highest training R² in at most budget_bytes (None if none fits). The walk treats a lossless point
        (R² = 1) as the end: a smaller eps only adds bytes, so the smallest lossless x is what it looks for."""
        improvable = self._candidates(lambda p: p.bytes <= budget_bytes and p.r2 < 1.0, self.start_k, False)
        fitting = [p for p in improvable if p.bytes <= budget_bytes]
        return max(fitting, key=lambda p: (p.r2, -p.bytes, p.exponent if p.r2 < 1.0 else -p.exponent)) \
            if fitting else None


def _depth(offset: int) -> int:
    """How many times 2 divides a grid offset from the lattice, capped at the lattice's octave (0 for odd)."""
    depth = 0
    while depth < STRIDE.bit_length() - 1 and offset % (2 ** (depth + 1)) == 0:
        depth += 1
    return depth


def on_grid(xs: Iterable[float]) -> bool:
    """Whether every x is a grid point within [X_MIN, X_MAX] (a cache file's points must be)."""
    return all(isinstance(x, float) and X_MIN <= x <= X_MAX and round(x / GRID_STEP) * GRID_STEP == x for x in xs)
