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
    """Past the first precision, the caps are searched about its best (halving strides from AROUND_STRIDE, then
    one at a time each way until two in a row are no smaller), not over the whole range again: a handful of step
    searches, and the nearby best found."""
    visited = []

    def fake(kept_series, constant_fit, bits, ss_tot, goal, cap=None, guess=None):
        visited.append(cap)
        return None if cap < 5 else (1000 + (cap - 19) ** 2, {"step": 1.0, "cap": cap}, {})

    monkeypatch.setattr(encode_module, "_series_at_goal", fake)
    points = encode_module._fewer_directions(capped_series(72), 6, [], 1.0, 0.99, top=40, around=20)
    assert min(points, key=lambda p: p[0])[1]["cap"] == 19
    assert len(visited) == len(set(visited)) <= 5 and all(17 <= cap <= 21 for cap in visited)
    visited.clear()
    encode_module._fewer_directions(capped_series(72), 6, [], 1.0, 0.99, top=12, around=30)
    assert visited and max(visited) == 11  # never at or past the top


def test_the_caps_walk_on_past_a_cap_whose_file_jitters_larger(monkeypatch):
    """A file's LZMA size jitters from one cap to the next: a cap one below the best that comes out larger does not
    end the walk, the next one down is tried too and kept where smaller (S, 1 000 frames, seed 2: 18 directions
    98.9 kB, 17 99.7 kB, 16 98.5 kB); two caps in a row no smaller end it."""
    sizes = {20: 1030, 19: 1012, 18: 1000, 17: 1010, 16: 995, 15: 1001, 14: 1003, 13: 990}
    visited = []

    def fake(kept_series, constant_fit, bits, ss_tot, goal, cap=None, guess=None):
        visited.append(cap)
        return (sizes[cap], {"step": 1.0, "cap": cap}, {}) if cap in sizes else None

    monkeypatch.setattr(encode_module, "_series_at_goal", fake)
    points = encode_module._fewer_directions(capped_series(72), 6, [], 1.0, 0.99, top=21, around=18)
    assert min(points, key=lambda p: p[0])[1]["cap"] == 16
    assert visited == [18, 17, 16, 15, 14]  # up from 16, 17 and 18 are known and no smaller


def _layout(n_bytes: int, seed: int, constant: int = 0) -> encode_module._Searched:
    """A layout's search with two points of incompressible codes (`n_bytes` and 5 % more), as _Ranked gets it."""
    rng = np.random.default_rng(seed)
    points = [encode_module.Point(size, {"step": 1.0, "r2_estimate": 0.999}, {"codes": rng.bytes(size)})
              for size in (n_bytes, int(n_bytes * 1.05))]
    return encode_module._Searched({"kind": "bilinear", "layout": seed}, {"mask": bytes(constant)}, points,
                                   {"goal_r2": 0.995, "ceiling_r2": 0.999}, np.zeros(1, dtype=bool))


def test_a_layout_screening_far_above_the_best_is_compressed_only_once_the_nearer_files_are_used(monkeypatch):
    """Compressing for real costs 0.3 s a C file at 100 frames: a layout whose best point (with its particle
    blobs) screens beyond SCREEN_MARGIN of the best layout's waits until the slope guard asks past the others."""
    compressed = []
    real = encode_module.format.compress  # a payload's bytes here: the codes and an empty mask
    monkeypatch.setattr(encode_module.format, "compress", lambda data: compressed.append(len(data)) or real(data))
    near, close, far = _layout(20_000, 0), _layout(20_400, 1), _layout(24_000, 2)
    ranked = encode_module._Ranked([("mean", far), ("mean", close), ("value", near)])
    # each near layout's best finalist: its other, 5 % larger, is estimated past CALIBRATED_MARGIN
    assert sorted(compressed) == [20_000, 20_400]
    assert ranked.smallest.meta["layout"] == 0
    files = ranked.by_size()
    assert [next(files)[1].meta["layout"] for _ in range(2)] == [0, 1] and len(compressed) == 2
    centre, last = next(files)
    assert (centre, last.meta["layout"], len(compressed)) == ("mean", 2, 3)
    assert last.n_bytes > ranked.smallest.n_bytes and next(files, None) is None


def test_a_layout_whose_finalists_hold_many_bytes_is_compressed_when_its_search_ends(monkeypatch):
    """Over the whole simulation a point's codes are tens of MB: such a layout is not held past its search."""
    monkeypatch.setattr(encode_module, "HELD_MAX_BYTES", 30_000)
    small, large = _layout(10_000, 0), _layout(20_000, 1)
    assert encode_module._held(small) is small
    finished = encode_module._held(large)
    assert isinstance(finished, encode_module._Candidate) and finished.n_bytes > 20_000
    assert finished.search["goal_r2"] == 0.995 and finished.meta["encoding"]["step"] == 1.0
