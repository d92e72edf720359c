"""One compressor at one error bound on a window: stored bytes and the R² of the decoded frames.

The bound of component c is eps·std_c (std over the training frames), so every component gets the same
relative accuracy. The training frames are compressed in chunks of CHUNK_FRAMES consecutive training frames
(one chunk for any window up to that size; the whole simulation streams through the memory map). Held-out
frames are never stored: each is interpolated linearly in time between its decoded neighbours, as the SVD
interpolates its temporal coefficients.
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


def _squared_error(decoded: np.ndarray, truth: np.ndarray) -> np.ndarray:
    residual = (decoded.astype(np.float64) - truth).reshape(-1, truth.shape[-1])
    return np.einsum("ij,ij->j", residual, residual)


def evaluate_codec(source: BaselineSource, codec: SZ3 | ZFP, exponent: float,
                   chunk_frames: int = CHUNK_FRAMES) -> CodecPoint:
    """Compress and decode the training frames of `source` at eps = 2^-exponent and score them."""
    _, std, ss_tot = source.train_moments
    bounds = 2.0 ** -exponent * np.where(std > 0, std, 1.0)
    train, test = np.sort(source.train), np.sort(source.test)
    n_components = source.n_components
    ss_train, ss_test = np.zeros(n_components), np.zeros(n_components)
    n_bytes = 0
    previous: tuple[np.ndarray, np.ndarray] | None = None  # (time, decoded frame) ending the last chunk
    for lo in range(0, train.size, chunk_frames):
        rows = train[lo:lo + chunk_frames]
        truth = np.asarray(source.values[rows], dtype=np.float32)
        decoded = np.empty_like(truth)
        for c in range(n_components):
            stream = codec.encode(truth[:, :, c], bounds[c])
            n_bytes += stream.size
            decoded[:, :, c] = codec.decode(stream, truth.shape[:2])
        ss_train += _squared_error(decoded, truth.astype(np.float64))
        knots_t, knots = rows.astype(np.float64), decoded.reshape(rows.size, -1)
        if previous is not None:
            knots_t, knots = np.concatenate([previous[0], knots_t]), np.concatenate([previous[1], knots])
        last = lo + chunk_frames >= train.size
        mine = test[(test > knots_t[0] if previous is not None else True) & ((test <= rows[-1]) | last)]
        if mine.size:
            predicted = interpolate_linear(knots_t, knots, mine.astype(np.float64)).reshape(mine.size, -1, n_components)
            ss_test += _squared_error(predicted, np.asarray(source.values[mine], dtype=np.float64))
        previous = (rows[-1:].astype(np.float64), decoded[-1:].reshape(1, -1))
    r2, per_component = r2_from_sums(ss_train, ss_tot)
    holdout_r2 = holdout_per_component = None
    if test.size:
        holdout_r2, holdout_per_component = r2_from_sums(ss_test, source.test_ss_tot)
    return CodecPoint(float(exponent), int(n_bytes), r2, per_component, holdout_r2, holdout_per_component)
