"""A least-recently-used memo bounded by bytes, for the codec's searches.

A step search revisits the same few sets of kept directions many times, so their stored series and code fits
are worth keeping; but each fit holds two (particles x directions) float64 arrays, and over the whole simulation
(S with its components apart: 36 000 rows, hundreds of directions) an unbounded memo grew past 15 GB within
minutes. Evicting the least recently used entries changes only the time a revisit takes, never a result: every
value is a pure function of its key.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import numpy as np

V = TypeVar("V")

#: bytes a memo keeps by default: a 100-frame search never evicts (C, split: 200 MB at most), a 1 000-frame S
#: search fills it (seed 2, split: the same file, 160 s unbounded, 157 s bounded), the whole simulation keeps a
#: few entries
DEFAULT_BUDGET = 1 << 30


class BytesMemo(Generic[V]):
    """Values made by `make()` on a miss, the least recently used dropped while the total passes `budget` bytes
    (the newest is always kept, whatever its size)."""

    def __init__(self, size_of: Callable[[V], int], budget: int = DEFAULT_BUDGET) -> None:
        if budget < 0:
            raise ValueError(f"a memo's budget must be >= 0 bytes, got {budget}")
        self.size_of, self.budget = size_of, budget
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self.bytes = 0
        self.misses = 0

    def get(self, key: Hashable, make: Callable[[], V]) -> V:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key][0]
        self.misses += 1
        value = make()
        size = self.size_of(value)
        self._items[key] = (value, size)
        self.bytes += size
        while self.bytes > self.budget and len(self._items) > 1:
            self.bytes -= self._items.popitem(last=False)[1][1]
        return value

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items


def array_bytes(*arrays: np.ndarray | None) -> int:
    """Bytes the arrays hold (None counts nothing)."""
    return sum(a.nbytes for a in arrays if a is not None)
