"""The coarsest quantisation step whose decoded R² still reaches a goal.

Every search of the encoder and of its quantised-SVD rival asks this hundreds of times (a C file at 100 frames
ran 71 searches of ~14 closed-form R² evaluations each, half its encoding time). A plain bisection ignores what
it measures: the error of uniformly quantised codes grows about as the step squared on top of the unquantised
error, 1 − R²(s) ≈ a + b·s². So the bracket grows or shrinks by that model's prediction (the secant of the error
against s²), and is then closed by Illinois false position on s²; where the bracket is narrow, each estimate is
followed by a probe one tolerance past it, which usually ends the search. From a neighbouring search's step a
search takes ~4 evaluations (C, 100 frames: 321 for 71 searches); where the model does not hold (a step that drops
a code direction changes a and b), a round that does not halve the bracket is followed by a bisection.

The error need not grow with the step everywhere: where many codes sit near one non-zero value, a step that
nearly divides it leaves them little error, and steps past the first crossing pass again on islands. The
search lands on a crossing, and which one depended on where it started (the 100-frame files moved by up to
±30 % from a bisection to this search, both ours and the rival's). So an encoder looks past its finalists'
steps (largest_beyond) on a grid as fine as the codes' count allows (scan_points), on both sides alike.
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
#: a finalist's step is looked past (largest_beyond) up to this factor, at most at this many steps (1.1 % apart)
SCAN_REACH, SCAN_POINTS = 2.0, 64
#: code errors evaluated per finalist's scan: fewer steps where the codes are many (scan_points). Where few codes
#: sit at a few values the islands of passing steps are narrow (F's rival at 100 frames, seed 1, rank 1 not
#: centred: its search crossed at step 1.51, and steps pass again at 1.63 and at 1.92-1.94, 1 % wide, where its
#: file is 3 986 bytes against 4 616 at 1.63); where many codes spread the error is smooth. A 100-frame F file
#: (36 k codes) is scanned at 58 steps, C's in the model's layout (0.24 M) at 8, C's components apart (0.7 M)
#: and the whole simulation's S (8 M) not at all; each finalist that is scanned keeps its float codes alive
#: until the search's end
SCAN_CODE_BUDGET = 1 << 21
#: fewer steps than this are not worth a scan
SCAN_MIN_POINTS = 8


def scan_points(n_codes: int) -> int:
    """The steps a finalist of `n_codes` codes is scanned at past its own (0: not scanned)."""
    points = min(SCAN_POINTS, SCAN_CODE_BUDGET // max(n_codes, 1))
    return points if points >= SCAN_MIN_POINTS else 0


def largest_reaching(r2_of: Callable[[float], float], goal: float, guess: float) -> float | None:
    """The largest step s whose r2_of(s) ≥ goal, to TOLERANCE: r2_of(s) passes and r2_of(s · TOLERANCE) fails
    (or a larger tried step failed). None if even a step SEARCH_RANGE times smaller than `guess` fails; the
    largest passing step tried if one SEARCH_RANGE times larger still passes. r2_of may return -inf or nan for a
    step that cannot be coded (it fails)."""
    search = _Bracket(r2_of, goal)
    search.tried(guess)
    while search.passing is None or search.failing is None:
        shrink = search.passing is None  # every step so far fails
        step = _jump(search.history[-2:], search.budget, shrink)
        if shrink and step < guess / SEARCH_RANGE:
            return None
        if not shrink and step > guess * SEARCH_RANGE:
            return search.passing[0]
        search.tried(step)
    return search.closed()


def largest_beyond(r2_of: Callable[[float], float], goal: float, step: float, reach: float = SCAN_REACH,
                   points: int = SCAN_POINTS) -> float:
    """A passing `step` (largest_reaching's) or a larger one that passes too: the largest of `points` steps
    spaced evenly in log up to `reach` times it that passes, refined to TOLERANCE against the next. The error of
    rounded codes need not grow with the step: where many codes sit near one non-zero value (F, Jp uncentred: the
    identity, Jp = 1), a step that divides it leaves them little error, and passing steps come in islands (F at
    100 frames, seed 2, the rival's rank-1 file uncentred: passing again at 1.07-1.13 and 1.29 times the first
    crossing; Jp, seed 0: at 1.49-1.88 times). Costs `points` evaluations or a few more, so an encoder asks it
    only of its finalists."""
    search = _Bracket(r2_of, goal)
    ratio = reach ** (1.0 / points)
    grid = [step * ratio ** j for j in range(1, points + 1)]
    outcomes = [(s, search.tried(s), search.history[-1]) for s in grid]
    passed = [s for s, ok, _ in outcomes if ok]
    if not passed:
        return step
    top = passed[-1]
    if top == grid[-1]:
        if search.tried(top * ratio):
            return top * ratio  # still passing just past the reach: the search goes no further
        search.failing = search.history[-1]
    else:
        search.failing = next(point for s, ok, point in outcomes if s > top)  # the grid's next step, failing
    return search.closed()


class _Bracket:
    """The steps a search has tried: the largest passing one and the smallest failing one above it, and every
    (step, error 1 − R²) in order."""

    def __init__(self, r2_of: Callable[[float], float], goal: float) -> None:
        self.r2_of, self.goal, self.budget = r2_of, goal, 1.0 - goal
        self.passing: tuple[float, float] | None = None
        self.failing: tuple[float, float] | None = None
        self.history: list[tuple[float, float]] = []

    def tried(self, step: float) -> bool:
        r2 = self.r2_of(step)
        error = 1.0 - r2 if math.isfinite(r2) else math.inf
        self.history.append((step, error))
        if r2 >= self.goal:
            if self.passing is None or step > self.passing[0]:
                self.passing = (step, error)
            return True
        if self.failing is None or step < self.failing[0]:
            self.failing = (step, error)
        return False

    def closed(self) -> float:
        """The bracket closed to TOLERANCE by Illinois false position; where it is narrow the estimate is good to
        well under TOLERANCE, so a probe one TOLERANCE past it on the other side usually ends the search."""
        assert self.passing is not None and self.failing is not None
        scale_lo = scale_hi = 1.0  # Illinois: the weight of the end kept twice in a row is halved
        kept = ""
        bisect = False
        while self.failing[0] > self.passing[0] * TOLERANCE:
            passing, failing = self.passing, self.failing
            width = math.log(failing[0] / passing[0])
            if bisect:
                step = math.sqrt(passing[0] * failing[0])
            else:
                step = _false_position(passing, failing, self.budget, scale_lo, scale_hi)
            step = min(max(step, passing[0] * TOLERANCE), failing[0] / TOLERANCE)
            passed = self.tried(step)
            if width < _NARROW:
                if passed and step * TOLERANCE < self.failing[0]:
                    self.tried(step * TOLERANCE)
                elif not passed and step / TOLERANCE > self.passing[0]:
                    self.tried(step / TOLERANCE)
            scale_lo, scale_hi = (1.0, scale_hi / 2 if kept == "hi" else 1.0) if passed else \
                (scale_lo / 2 if kept == "lo" else 1.0, 1.0)
            kept = "hi" if passed else "lo"
            bisect = math.log(self.failing[0] / self.passing[0]) > width / 2 and not bisect
        return self.passing[0]


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
