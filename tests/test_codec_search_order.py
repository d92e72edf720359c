"""The order in which the encoder searches weight precisions and direction caps: fewer step searches for the same
smallest file where the file's size is unimodal in them, and no search repeated or spent on a cap that changes
nothing."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from mpm_inr.codec import bilinear
from mpm_inr.codec import encode as encode_module
from mpm_inr.codec.encode import precision_walk, smallest_bits

BITS = (16, 8, 6, 5, 4, 3)


def walked(sizes: dict[int, float], start: int | None = None) -> tuple[dict[int, float], list[int]]:
    asked: list[int] = []

    def size_at(bits: int) -> float:
        asked.append(bits)
        return sizes[bits]

    return precision_walk(BITS, size_at, start), asked


def test_the_walk_goes_coarser_while_the_file_shrinks_and_stops_where_it_grows():
    found, asked = walked({16: 1000, 8: 900, 6: 850, 5: 870, 4: 800, 3: 990})
    assert asked == [16, 8, 6, 5] and smallest_bits(found) == 6  # 4 bits, past a larger file, is not searched


def test_the_walk_turns_finer_where_a_coarser_file_is_larger_and_asks_each_precision_once():
    sizes = {16: 1000, 8: 900, 6: 850, 5: 870, 4: 880, 3: 990}
    found, asked = walked(sizes, start=5)
    assert asked == [5, 4, 6, 8] and smallest_bits(found) == 6
    assert len(asked) == len(set(asked)) and found == {b: sizes[b] for b in asked}


def test_the_walk_goes_on_through_equal_files_and_stops_at_one_that_misses_the_goal():
    found, asked = walked({16: 500, 8: 500, 6: 500, 5: 450, 4: math.inf, 3: 100})
    assert asked == [16, 8, 6, 5, 4] and smallest_bits(found) == 5 and 4 not in found  # only files that reach it
    found, asked = walked({16: 500, 8: 500, 6: 500, 5: 500, 4: 500, 3: 500})
    assert smallest_bits(found) == 3  # a tie goes to the coarsest, where the next degree's walk starts


def test_the_walk_from_a_precision_that_misses_the_goal_goes_finer():
    found, asked = walked({16: 700, 8: 600, 6: 650, 5: math.inf, 4: math.inf, 3: math.inf}, start=5)
    assert asked == [5, 4, 6, 8, 16] and smallest_bits(found) == 8


def capped_series(top: int) -> SimpleNamespace:
    return SimpleNamespace(fits=[bilinear.GroupFit(np.eye(top), np.zeros((5, top)), 0.0, np.eye(top),
                                                   np.zeros((5, top)))])


def test_fewer_directions_start_below_the_most_any_group_kept(monkeypatch):
    """A cap at or past the directions the uncapped file keeps is that file again (a search landing a rounding
    apart): the caps start one below it, not below K."""
    visited = []

    def fake(kept_series, constant_fit, bits, ss_tot, goal, cap=None, guess=None):
        visited.append(cap)
        return None if cap < 3 else (1000 + cap, {"step": 1.0}, {})

    monkeypatch.setattr(encode_module, "_series_at_goal", fake)
    encode_module._fewer_directions(capped_series(18), 6, [], 1.0, 0.99, top=10)
    assert visited == [9, 8, 7, 6, 5, 4, 3, 2]


def test_fewer_directions_at_the_next_precision_are_searched_about_the_best_cap(monkeypatch):
    """Past the first precision, the caps are searched about its best (halving strides from AROUND_STRIDE), not
    over the whole range again: a handful of step searches, and the nearby best found."""
    visited = []

    def fake(kept_series, constant_fit, bits, ss_tot, goal, cap=None, guess=None):
        visited.append(cap)
        return None if cap < 5 else (1000 + (cap - 19) ** 2, {"step": 1.0, "cap": cap}, {})

    monkeypatch.setattr(encode_module, "_series_at_goal", fake)
    points = encode_module._fewer_directions(capped_series(72), 6, [], 1.0, 0.99, top=40, around=20)
    assert min(points, key=lambda p: p[0])[1]["cap"] == 19
    assert len(visited) == len(set(visited)) <= 5 and all(18 <= cap <= 21 for cap in visited)
    visited.clear()
    encode_module._fewer_directions(capped_series(72), 6, [], 1.0, 0.99, top=12, around=30)
    assert visited and max(visited) == 11  # never at or past the top
