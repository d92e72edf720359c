"""Deterministic bisection on log2 of a compressor's error bound.

eps = 2^-x. The search walks x in whole steps (factors of 2) from a start set by the target, until the
condition flips, then bisects the bracket down to RESOLUTION (eps within 2^(1/32) ≈ 2 %), at most MAX_STEPS
points. The points it visits depend only on the target and the codec, never on what was evaluated before, so a
cached point is reused exactly and a cache hit gives the same answer as a fresh search. The answer is the best
visited point that meets the condition (the smallest stream reaching the R², or the highest R² within the bytes),
which tolerates the small non-monotonicities of real compressors.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from mpm_inr.baselines.evaluate import CodecPoint

X_MIN, X_MAX = -8.0, 30.0  # eps from 256 std (everything rounds to the mean) down to 1e-9 std
RESOLUTION = 1.0 / 32.0
MAX_STEPS = 20


def start_exponent(target_r2: float, start_scale: float) -> float:
    """Integer x whose eps gives 1 − R² ≈ eps²/3 (uniform error of half-width eps·std), times the codec's scale."""
    eps = math.sqrt(3.0 * max(1.0 - target_r2, 1e-18)) * start_scale
    return float(min(max(round(-math.log2(eps)), X_MIN), X_MAX))


def size_start(known: CodecPoint, budget_bytes: int, n_values: int) -> float:
    """Integer x where a stream of budget_bytes should lie, from one known point: halving eps costs about one more
    bit per value (uniform quantisation at high rate), so the walk to the bracket takes a step or two instead of
    one per factor of 2 between the run's R² and its bytes. Still a function of the inputs only."""
    x = known.exponent + 8.0 * (budget_bytes - known.bytes) / max(n_values, 1)
    return float(min(max(round(x), X_MIN), X_MAX))


def bisect(evaluate: Callable[[float], CodecPoint], meets: Callable[[CodecPoint], bool], start: float,
           meets_above: bool) -> list[CodecPoint]:
    """Visit points from `start`; `meets_above`: the condition holds for larger x (smaller eps: accuracy) rather
    than smaller x (larger eps: a byte budget). Returns the visited points, in order."""
    visited: list[CodecPoint] = []

    def visit(x: float) -> bool:
        visited.append(evaluate(x))
        return meets(visited[-1])

    toward_meeting = 1.0 if meets_above else -1.0
    x = start
    holds = visit(x)
    step = -toward_meeting if holds else toward_meeting  # walk away from meeting while it holds, else toward it
    good, bad = (x, None) if holds else (None, x)
    while len(visited) < MAX_STEPS and X_MIN <= x + step <= X_MAX:
        x += step
        if visit(x) == holds:
            good, bad = (x, bad) if holds else (good, x)
            continue
        good, bad = (good, x) if holds else (x, bad)
        break
    while good is not None and bad is not None and abs(good - bad) > RESOLUTION and len(visited) < MAX_STEPS:
        middle = (good + bad) / 2.0
        if visit(middle):
            good = middle
        else:
            bad = middle
    return visited


def matched_accuracy(evaluate: Callable[[float], CodecPoint], target_r2: float,
                     start_scale: float) -> tuple[CodecPoint | None, int]:
    """The smallest visited stream whose training R² reaches target_r2 (None if none did), and the path length."""
    visited = bisect(evaluate, lambda p: p.r2 >= target_r2, start_exponent(target_r2, start_scale), True)
    meeting = [p for p in visited if p.r2 >= target_r2]
    return (min(meeting, key=lambda p: (p.bytes, -p.r2)) if meeting else None), len(visited)


def matched_size(evaluate: Callable[[float], CodecPoint], budget_bytes: int,
                 start: float) -> tuple[CodecPoint | None, int]:
    """The visited point with the highest training R² in at most budget_bytes (None if none fits)."""
    visited = bisect(evaluate, lambda p: p.bytes <= budget_bytes, start, False)
    fitting = [p for p in visited if p.bytes <= budget_bytes]
    return (max(fitting, key=lambda p: (p.r2, -p.bytes)) if fitting else None), len(visited)
