"""One compressor at one error bound on a window: stored bytes and the R² of the decoded frames.

The bound of component c is eps·std_c (std over the training frames), so every component gets the same
relative accuracy. Each component is compressed on its own, so a point is the sum of per-component streams and
squared errors: `ComponentEvaluator` scores one component at one bound and remembers it under the codec's
`stream_key` (ZFP's streams depend only on the power of two below the bound, so a whole grid of bounds costs
one compression per power of two and component). The training frames are compressed in chunks of CHUNK_FRAMES
consecutive training frames (one chunk for any window up to that size; the whole simulation streams through the
memory map). Held-out frames are never stored: each is interpolated linearly in time between its decoded
neighbours, as the SVD interpolates its temporal coefficients.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mpm_inr.baselines.codecs import SZ3, ZFP
from mpm_inr.baselines.source import BaselineSource
from mpm_inr.metrics.interpolate import interpolate_linear
from mpm_inr.metrics.regression import r2_from_sums

CHUNK_FRAMES = 512  # training frames per compressed chunk: 18 MB of float32 per component at 9000 particles


@dataclass(frozen=True)
class CodecPoint:
    """A compressor at eps = 2^-exponent: bytes stored, training R², held-out R² (None without held-out frames)."""

    exponent: float
    bytes: int
    r2: float
    r2_per_component: list[float]
    holdout_r2: float | None
    holdout_r2_per_component: list[float] | None

    @property
    def eps(self) -> float:
        return 2.0 ** -self.exponent

    def as_record(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ComponentScore:
    """One component at one bound: its streams' bytes and the squared errors on training and held-out frames."""

    bytes: int
    ss_train: float
    ss_test: float


def _squared_error(decoded: np.ndarray, truth: np.ndarray) -> float:
    """Σ (decoded − truth)² in float64 (truth of any float dtype, cast inside the subtraction)."""
    residual = decoded.astype(np.float64)
    residual -= truth
    return float(np.einsum("ij,ij->", residual, residual))


class ComponentEvaluator:
    """Scores (component, bound) pairs of one codec on one source; the training chunks of a window that fits in
    one chunk are read once and kept. `calls` counts real compressions (the warm path must make none)."""

    def __init__(self, source: BaselineSource, codec: SZ3 | ZFP, chunk_frames: int = CHUNK_FRAMES) -> None:
        self.source, self.codec, self.chunk_frames = source, codec, chunk_frames
        self.train, self.test = np.sort(source.train), np.sort(source.test)
        self.memo: dict[tuple[int, float], ComponentScore] = {}
        self.calls = 0
        self._kept: dict[int, np.ndarray] = {}

    def _chunk(self, lo: int, component: int) -> np.ndarray:
        """The training chunk starting at `lo` (frames × particles) of one component: a window of one chunk is
        read once (every component) and kept; longer windows read only the component asked, at each call."""
        if lo in self._kept:
            return self._kept[lo][:, :, component]
        rows = self.train[lo:lo + self.chunk_frames]
        if self.train.size <= self.chunk_frames:
            self._kept[lo] = np.asarray(self.source.values[rows], dtype=np.float32)
            return self._kept[lo][:, :, component]
        return np.asarray(self.source.values[rows, :, component], dtype=np.float32)

    def score(self, component: int, bound: float) -> ComponentScore:
        key = (component, self.codec.stream_key(bound))
        if key not in self.memo:
            self.memo[key] = self._compress(component, bound)
        return self.memo[key]

    def _compress(self, component: int, bound: float) -> ComponentScore:
        self.calls += 1
        train, test, codec = self.train, self.test, self.codec
        n_bytes, ss_train, ss_test = 0, 0.0, 0.0
        previous: tuple[np.ndarray, np.ndarray] | None = None  # (time, decoded frame) ending the last chunk
        for lo in range(0, train.size, self.chunk_frames):
            rows = train[lo:lo + self.chunk_frames]
            truth = np.ascontiguousarray(self._chunk(lo, component))
            stream = codec.encode(truth, bound)
            n_bytes += stream.size
            decoded = codec.decode(stream, truth.shape)
            ss_train += _squared_error(decoded, truth)
            knots_t, knots = self.source.times(rows), decoded
            if previous is not None:
                knots_t, knots = np.concatenate([previous[0], knots_t]), np.concatenate([previous[1], knots])
            last = lo + self.chunk_frames >= train.size
            after_previous = test > train[lo - 1] if lo > 0 else np.ones(test.size, dtype=bool)
            mine = test[after_previous & ((test <= rows[-1]) | last)]
            if mine.size:
                predicted = interpolate_linear(knots_t, knots, self.source.times(mine))
                ss_test += _squared_error(predicted, np.asarray(self.source.values[mine, :, component]))
            previous = (self.source.times(rows[-1:]), decoded[-1:])
        return ComponentScore(int(n_bytes), ss_train, ss_test)

    def point(self, exponent: float) -> CodecPoint:
        """The codec at eps = 2^-exponent on every component, scored as one stream set."""
        _, std, ss_tot = self.source.train_moments
        bounds = 2.0 ** -exponent * np.where(std > 0, std, 1.0)
        scores = [self.score(c, float(bounds[c])) for c in range(self.source.n_components)]
        r2, per_component = r2_from_sums(np.array([s.ss_train for s in scores]), ss_tot)
        holdout_r2 = holdout_per_component = None
        if self.test.size:
            holdout_r2, holdout_per_component = r2_from_sums(np.array([s.ss_test for s in scores]),
                                                             self.source.test_ss_tot)
        return CodecPoint(float(exponent), sum(s.bytes for s in scores), r2, per_component, holdout_r2,
                          holdout_per_component)


def evaluate_codec(source: BaselineSource, codec: SZ3 | ZFP, exponent: float,
                   chunk_frames: int = CHUNK_FRAMES) -> CodecPoint:
    """Compress and decode the training frames of `source` at eps = 2^-exponent and score them."""
    return ComponentEvaluator(source, codec, chunk_frames).point(exponent)
