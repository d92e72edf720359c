"""The coarsest quantisation step whose decoded R² still reaches a goal.

Every search of the encoder and of its quantised-SVD rival asks this hundreds of times (a C file at 100 frames
ran 71 searches of ~14 closed-form R² evaluations each, half its encoding time). A plain bisection ignores what
it measures: the error of uniformly quantised codes grows about as the step squared on top of the unquantised
error, 1 − R²(s) ≈ a + b·s². So the bracket grows or shrinks by that model's prediction (the secant of the error
against s²), and is then closed by Illinois false position on s²; where the bracket is narrow, each estimate is
followed by a probe one tolerance past it, which usually ends the search. From a neighbouring search's step a
search takes ~4 evaluations (C, 100 frames: 321 for 71 searches); where the model does not hold (a step that drops
a code direction changes a and b), a round that does not halve the bracket is followed by a bisection.
"""

from __future__ import annotations

import math
from collections.abc import Callable

#: the bracket a search ends with: the step found passes and one at most this factor larger fails (a file
#: ~0.1 % above the optimum's at most)
TOLERANCE = 2.0 ** (1.0 / 1024)
#: how far from the first guess the bracket is sought, either way, before the search gives up (fails) or
#: settles for the largest passing step tried
SEARCH_RANGE = 2.0 ** 20
#: a predicted jump while bracketing is pushed this factor past the prediction, so that a slightly optimistic
#: model still crosses the goal, and moves the step by at least that and at most _MAX_JUMP
_PUSH, _MAX_JUMP = 1.02, 4.0
#: a bracket narrower than this (log of its ends' ratio) is closed by a probe one TOLERANCE past each estimate
_NARROW = math.log(1.1)


def largest_reaching(r2_of: Callable[[float], float], goal: float, guess: float) -> float | None:
    """The largest step s whose r2_of(s) ≥ goal, to TOLERANCE: r2_of(s) passes and r2_of(s · TOLERANCE) fails
    (or a larger tried step failed). None if even a step SEARCH_RANGE times smaller than `guess` fails; the
    largest passing step tried if one SEARCH_RANGE times larger still passes. r2_of may return -inf or nan for a
    step that cannot be coded (it fails)."""
    budget = 1.0 - goal
    passing: tuple[float, float] | None = None  # (step, error 1 − R²) of the largest passing step tried
    failing: tuple[float, float] | None = None  # and of the smallest failing one
    history: list[tuple[float, float]] = []  # every (step, error) tried, in order

    def tried(step: float) -> bool:
        nonlocal passing, failing
        r2 = r2_of(step)
        error = 1.0 - r2 if math.isfinite(r2) else math.inf
        history.append((step, error))
        if r2 >= goal:
            if passing is None or step > passing[0]:
                passing = (step, error)
            return True
        if failing is None or step < failing[0]:
            failing = (step, error)
        return False

    tried(guess)
    while passing is None or failing is None:
        shrink = passing is None  # every step so far fails
        step = _jump(history[-2:], budget, shrink)
        if shrink and step < guess / SEARCH_RANGE:
            return None
        if not shrink and step > guess * SEARCH_RANGE:
            return passing[0]
        tried(step)
    assert passing is not None and failing is not None
    # Illinois false position on the bracket; where the bracket is narrow the estimate is good to well under
    # TOLERANCE, so a probe one TOLERANCE past it on the other side usually closes the search
    scale_lo = scale_hi = 1.0  # Illinois: the weight of the end kept twice in a row is halved
    kept = ""
    bisect = False
    while failing[0] > passing[0] * TOLERANCE:
        width = math.log(failing[0] / passing[0])
        if bisect:
            step = math.sqrt(passing[0] * failing[0])
        else:
            step = _false_position(passing, failing, budget, scale_lo, scale_hi)
        step = min(max(step, passing[0] * TOLERANCE), failing[0] / TOLERANCE)
        passed = tried(step)
        if width < _NARROW:
            if passed and step * TOLERANCE < failing[0]:
                tried(step * TOLERANCE)
            elif not passed and step / TOLERANCE > passing[0]:
                tried(step / TOLERANCE)
        scale_lo, scale_hi = (1.0, scale_hi / 2 if kept == "hi" else 1.0) if passed else \
            (scale_lo / 2 if kept == "lo" else 1.0, 1.0)
        kept = "hi" if passed else "lo"
        bisect = math.log(failing[0] / passing[0]) > width / 2 and not bisect
    return passing[0]


def _jump(last: list[tuple[float, float]], budget: float, shrink: bool) -> float:
    """The next step to try from the only side bracketed so far (`last`: its last one or two (step, error)):
    from two, the secant of the error against the step squared, pushed _PUSH past where it meets the budget;
    from one (or where the secant does not rise with the step), the pure quantisation model 1 − R² = b·s²,
    s · sqrt(budget / error), pushed likewise: an unquantised error a > 0 makes it err short of the goal from
    both sides. The step moves by a factor within [_PUSH, _MAX_JUMP]."""
    step, error = last[-1]
    ratio = _secant_root(last, budget)
    if ratio is None:
        ratio = math.sqrt(budget / error) if 0.0 < error < math.inf and budget > 0 else (0.0 if shrink else math.inf)
    else:
        ratio /= step
    if shrink:
        return step / min(max(_PUSH / ratio if ratio > 0 else math.inf, _PUSH), _MAX_JUMP)
    return step * min(max(ratio * _PUSH, _PUSH), _MAX_JUMP)


def _secant_root(last: list[tuple[float, float]], budget: float) -> float | None:
    """Where the secant of the error against the step squared through two points meets the budget; None for one point,
    non-finite errors, or a secant that does not rise with the step."""
    if len(last) < 2 or not all(math.isfinite(error) for _, error in last):
        return None
    (s1, e1), (s2, e2) = last
    if (e1 - e2) * (s1 - s2) <= 0:
        return None
    return math.sqrt(max(s2 * s2 + (budget - e2) * (s1 * s1 - s2 * s2) / (e1 - e2), 0.0))


def _false_position(passing: tuple[float, float], failing: tuple[float, float], budget: float,
                    scale_lo: float, scale_hi: float) -> float:
    """Where the chord of the error against the step squared, each end's distance to the budget scaled
    (Illinois), meets the budget; the bracket's geometric middle where the failing end's error is not finite."""
    (lo, error_lo), (hi, error_hi) = passing, failing
    if not math.isfinite(error_hi):
        return math.sqrt(lo * hi)
    below, above = (budget - error_lo) * scale_lo, (error_hi - budget) * scale_hi
    if below + above <= 0:
        return math.sqrt(lo * hi)
    return math.sqrt(lo * lo + (hi * hi - lo * lo) * below / (below + above))
