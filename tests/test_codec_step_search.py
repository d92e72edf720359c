"""The code step search (mpm_inr.codec.step_search): the bracket it promises, and fewer R² evaluations than a
bisection where the error follows the quantisation model."""

import math

import pytest

from mpm_inr.codec.step_search import (
    SCAN_CODE_BUDGET,
    SCAN_MIN_POINTS,
    SCAN_POINTS,
    SCAN_REACH,
    SEARCH_RANGE,
    TOLERANCE,
    largest_beyond,
    largest_reaching,
    scan_points,
)

GOAL = 0.995


class Counted:
    """An R² of the step that records every step it was asked for."""

    def __init__(self, error_of):
        self.error_of, self.steps = error_of, []

    def __call__(self, step: float) -> float:
        self.steps.append(step)
        return 1.0 - self.error_of(step)


def assert_bracketed(r2_of: Counted, found: float) -> None:
    """The step found passes, and a step at most TOLERANCE above it was tried and failed."""
    assert r2_of(found) >= GOAL
    assert any(found < s <= found * TOLERANCE * (1 + 1e-12) and r2_of(s) < GOAL for s in r2_of.steps)


def quantised(floor: float, slope: float):
    """1 − R² = floor + slope·s²: uniform rounding noise on an unquantised error."""
    return lambda s: floor + slope * s * s


def dead_zone(floor: float, slope: float):
    """Linear in s where most codes round to zero (coarse steps), quadratic below."""
    return lambda s: floor + slope * (s * s if s < 1 else 2 * s - 1)


@pytest.mark.parametrize("error_of, root", [
    (quantised(0.0, 0.005 / 4.0), 2.0),  # no floor: the pure quantisation model, exact
    (quantised(0.0049, 0.0001 / 6.25), 2.5),  # the floor takes 98 % of the budget (C, 100 frames)
    (dead_zone(0.004, 0.001 / 3.0), 2.0),
])
@pytest.mark.parametrize("guess_factor", [1e-3, 0.3, 0.98, 1.02, 4.0, 1e3])
def test_the_step_found_is_bracketed_to_the_tolerance(error_of, root, guess_factor):
    r2_of = Counted(error_of)
    found = largest_reaching(r2_of, GOAL, root * guess_factor)
    assert found == pytest.approx(root, rel=2 * (TOLERANCE - 1))
    assert_bracketed(r2_of, found)


def bisection_evaluations(guess: float, root: float) -> int:
    """What the search this one replaced spent: halvings or doublings to a bracket of factor 2, then 10
    bisections."""
    return max(1, math.ceil(abs(math.log2(root / guess)))) + 1 + 10


@pytest.mark.parametrize("guess_factor, most", [(1.01, 4), (0.9, 5), (4.0, 7), (1e-3, 10)])
def test_it_takes_fewer_evaluations_than_a_bisection(guess_factor, most):
    """Where the error follows the model, a neighbour's step (within a few %) as the guess costs ~4
    evaluations, a guess a thousand times off ~10; the bisection took 11-22."""
    root = 2.5
    r2_of = Counted(quantised(0.0049, 0.0001 / root ** 2))
    largest_reaching(r2_of, GOAL, root * guess_factor)
    assert len(r2_of.steps) <= most < bisection_evaluations(root * guess_factor, root)


def test_a_goal_no_step_reaches_gives_none_and_one_every_step_reaches_gives_a_large_passing_step():
    assert largest_reaching(Counted(lambda s: 0.01), GOAL, 1.0) is None
    found = largest_reaching(Counted(lambda s: 0.0), GOAL, 1.0)
    assert found is not None and SEARCH_RANGE / 4 <= found <= SEARCH_RANGE


def test_steps_that_cannot_be_coded_fail_and_the_search_goes_on_below_them():
    """r2_of answers -inf or nan where the stored series is degenerate: such a step fails like any other."""
    def error_of(step: float) -> float:
        if step > 3.0:
            return math.inf if step > 10 else math.nan
        return 0.0049 + 0.0001 * (step / 2.0) ** 2

    r2_of = Counted(error_of)
    found = largest_reaching(r2_of, GOAL, 100.0)
    assert found == pytest.approx(2.0, rel=2 * (TOLERANCE - 1))
    assert_bracketed(r2_of, found)


def test_an_error_that_is_not_monotone_in_the_step_still_ends_in_a_bracket():
    """A coarser step can drop a weak code direction and change the error's floor: the search may land on either
    passing stretch, but what it returns passes and a failing step lies within TOLERANCE above it."""
    def error_of(step: float) -> float:
        floor = 0.0040 if step < 1.7 else 0.0046  # a direction dropped past 1.7
        return floor + 0.0004 * (step / 2.0) ** 2

    for guess in (0.01, 1.0, 1.8, 2.5, 50.0):
        r2_of = Counted(error_of)
        assert_bracketed(r2_of, largest_reaching(r2_of, GOAL, guess))


def islands(crossing: float, island: tuple[float, float] | None):
    """Quadratic error crossing the budget at `crossing`, and passing again on `island` (lo, hi) past it: codes
    sitting near one value that a step in the island nearly divides."""
    def error_of(step: float) -> float:
        if island is not None and island[0] <= step <= island[1]:
            return 0.004
        return 0.005 * (step / crossing) ** 2
    return error_of


def test_looking_past_a_crossing_finds_the_island_of_passing_steps_beyond_it():
    """A search lands on the first crossing (2.0); the scan past it finds the island 2.6-2.9 and ends bracketed
    at its top, within its SCAN_POINTS evaluations and a handful more."""
    r2_of = Counted(islands(2.0, (2.6, 2.9)))
    first = largest_reaching(r2_of, GOAL, 1.0)
    assert first == pytest.approx(2.0, rel=2 * (TOLERANCE - 1))
    scan = Counted(islands(2.0, (2.6, 2.9)))
    found = largest_beyond(scan, GOAL, first)
    assert found == pytest.approx(2.9, rel=2 * (TOLERANCE - 1))
    assert_bracketed(scan, found)
    assert len(scan.steps) <= SCAN_POINTS + 12


def test_looking_past_gives_the_step_back_where_nothing_larger_passes_and_stops_at_its_reach():
    r2_of = Counted(islands(2.0, None))
    assert largest_beyond(r2_of, GOAL, 2.0) == 2.0
    assert len(r2_of.steps) == SCAN_POINTS
    everything = Counted(lambda s: 0.0)
    beyond = largest_beyond(everything, GOAL, 1.0)
    assert SCAN_REACH < beyond <= SCAN_REACH * SCAN_REACH ** (1 / SCAN_POINTS) * (1 + 1e-12)


def test_many_codes_are_scanned_at_fewer_steps_and_too_many_not_at_all():
    assert scan_points(9_000) == SCAN_POINTS  # Jp at 100 frames, rank 1
    assert SCAN_MIN_POINTS <= scan_points(240_000) < SCAN_POINTS  # C at 100 frames, the model's layout
    assert scan_points(SCAN_CODE_BUDGET // SCAN_MIN_POINTS + 1) == 0
    assert scan_points(720_000) == 0  # C at 100 frames, components apart
