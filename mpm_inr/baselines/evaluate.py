"""One compressor at one error bound on a window: stored bytes and the R² of the decoded frames.

The bound of component c is eps·std_c (std over the training frames), so every component gets the same
relative accuracy. Each component is compressed on its own, so a point is the sum of per-component streams and
squared errors: `ComponentEvaluator` scores one component at one bound and remembers it under the codec's
`stream_key` (ZFP's streams depend only on the power of two below the bound, so a whole grid of bounds costs
one compression per power of two and component). The training frames are compressed in chunks of CHUNK_FRAMES
consecutive training frames (one chunk for any window up to that size; the whole simulation streams through the
memory map). Held-out frames are never stored: each is interpolated linearly in time between its decoded
neighbours, as the SVD interpolates its temporal coefficients.

A (component, chunk) is the unit of work: on a window of more than one chunk, the chunks of every component a
point needs are shared by `workers` forked processes (forked.py, forked once per evaluator), each returning its
chunk's bytes and squared errors and the decoded frames at its edges, from which the parent scores the held-out
frames between chunks. The sums run in chunk order whatever the number of processes, so every process count gives
the same numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Self

import numpy as np

from mpm_inr.baselines.codecs import SZ3, ZFP
from mpm_inr.baselines.forked import ForkedPool
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


@dataclass(frozen=True)
class ChunkScore:
    """One component's chunk of training frames at one bound (a job of `ComponentEvaluator._compress`): its
    stream's bytes, the squared errors of its training frames and of the held-out frames strictly between its first
    and last rows, and its decoded frames at its first two and last two rows (`edge_rows`): the knots of the
    held-out frames outside every chunk (before the first, between two, after the last), scored by the parent."""

    bytes: int
    ss_train: float
    ss_inside: float
    edge_rows: np.ndarray
    edges: np.ndarray


class ComponentEvaluator:
    """Scores (component, bound) pairs of one codec on one source; the training chunks of a window that fits in
    one chunk are read once and kept. `calls` counts real compressions (the warm path must make none).

    workers: processes for a window of more than one chunk (pysz and zfpy hold the GIL), forked at its first
    compression and kept until `close` (or the end of a `with` block); a window of one chunk is compressed in this
    process, where a fork would cost more than the compression."""

    def __init__(self, source: BaselineSource, codec: SZ3 | ZFP, chunk_frames: int = CHUNK_FRAMES,
                 workers: int = 1) -> None:
        self.source, self.codec, self.chunk_frames = source, codec, chunk_frames
        self.train, self.test = np.sort(source.train), np.sort(source.test)
        self.starts = range(0, self.train.size, chunk_frames)  # first training index of each chunk
        self.processes = max(1, workers) if len(self.starts) > 1 else 1
        self.memo: dict[tuple[int, float], ComponentScore] = {}
        self.calls = 0
        self._kept: dict[int, np.ndarray] = {}
        self._pool = ForkedPool(self.score_chunk, self.processes)

    def close(self) -> None:
        """End the worker processes (the next compression forks new ones)."""
        self._pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        self._pool.__exit__(error_type)

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

    def _holdout_error(self, component: int, knot_rows: np.ndarray, knots: np.ndarray, rows: np.ndarray) -> float:
        """Σ squared error of the held-out `rows`, each interpolated linearly between decoded training frames
        (`knots`, at `knot_rows`)."""
        if not rows.size:
            return 0.0
        predicted = interpolate_linear(self.source.times(knot_rows), knots, self.source.times(rows))
        return _squared_error(predicted, np.asarray(self.source.values[rows, :, component]))

    def score_chunk(self, component: int, lo: int, bound: float) -> ChunkScore:
        """Compress, decode and score one chunk. On long windows this runs in a forked worker: numpy and the
        codec only, never torch (its OpenMP pool does not survive a fork)."""
        rows = self.train[lo:lo + self.chunk_frames]
        truth = np.ascontiguousarray(self._chunk(lo, component))
        stream = self.codec.encode(truth, bound)
        decoded = self.codec.decode(stream, truth.shape)
        inside = self.test[(self.test > rows[0]) & (self.test < rows[-1])]
        edges = sorted({0, min(1, rows.size - 1), max(rows.size - 2, 0), rows.size - 1})
        return ChunkScore(int(stream.size), _squared_error(decoded, truth),
                          self._holdout_error(component, rows, decoded, inside), rows[edges], decoded[edges])

    def _component_score(self, component: int, chunks: list[ChunkScore]) -> ComponentScore:
        """A component's chunks put together: the held-out frames outside every chunk are interpolated between
        the chunks' edges (the last frame of one chunk and the first of the next; the first two or last two
        training frames before the first chunk and after the last)."""
        before = np.searchsorted(self.train, self.test)  # training frames before each held-out frame
        outside = self.test[(before % self.chunk_frames == 0) | (before == self.train.size)]
        knot_rows = np.concatenate([chunk.edge_rows for chunk in chunks])
        knots = np.concatenate([chunk.edges for chunk in chunks])
        ss_test = sum(chunk.ss_inside for chunk in chunks) + self._holdout_error(component, knot_rows, knots, outside)
        return ComponentScore(sum(chunk.bytes for chunk in chunks), sum(chunk.ss_train for chunk in chunks), ss_test)

    def _compress(self, requests: list[tuple[int, float]]) -> list[ComponentScore]:
        """Score each (component, bound): every chunk of each is one job, all of them shared by the processes."""
        self.calls += len(requests)
        jobs = [(component, lo, bound) for component, bound in requests for lo in self.starts]
        chunks = self._pool.map(jobs)
        n = len(self.starts)
        return [self._component_score(component, chunks[i * n:(i + 1) * n])
                for i, (component, _) in enumerate(requests)]

    def point(self, exponent: float) -> CodecPoint:
        """The codec at eps = 2^-exponent on every component, scored as one stream set (the components' streams
        not yet in `memo` are compressed together)."""
        _, std, ss_tot = self.source.train_moments
        bounds = [float(b) for b in 2.0 ** -exponent * np.where(std > 0, std, 1.0)]
        keys = [(c, self.codec.stream_key(bound)) for c, bound in enumerate(bounds)]
        missing = [(c, bounds[c]) for c, key in enumerate(keys) if key not in self.memo]
        for (c, _), score in zip(missing, self._compress(missing), strict=True):
            self.memo[keys[c]] = score
        scores = [self.memo[key] for key in keys]
        r2, per_component = r2_from_sums(np.array([s.ss_train for s in scores]), ss_tot)
        holdout_r2 = holdout_per_component = None
        if self.test.size:
            holdout_r2, holdout_per_component = r2_from_sums(np.array([s.ss_test for s in scores]),
                                                             self.source.test_ss_tot)
        return CodecPoint(float(exponent), sum(s.bytes for s in scores), r2, per_component, holdout_r2,
                          holdout_per_component)


def evaluate_codec(source: BaselineSource, codec: SZ3 | ZFP, exponent: float,
                   chunk_frames: int = CHUNK_FRAMES, workers: int = 1) -> CodecPoint:
    """Compress and decode the training frames of `source` at eps = 2^-exponent and score them."""
    with ComponentEvaluator(source, codec, chunk_frames, workers) as evaluator:
        return evaluator.point(exponent)
