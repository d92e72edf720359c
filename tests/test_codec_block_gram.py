"""The polynomials' Gram matrix block by block (codec.block_gram): past BLOCKWISE_MIN_COEFS coefficients a curve
(curves frame by frame over the whole simulation) every product, factor, solve and fit goes stretch by stretch;
each must give the dense path's numbers to rounding, and below the threshold the dense path is used unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from mpm_inr.codec import block_gram, chebyshev


def _spd_blocks(count: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(count, size, size + 2))
    return a @ a.transpose(0, 2, 1)


@pytest.mark.parametrize("count,size", [(7, 1), (5, 2), (4, 3)])
def test_products_factors_and_solves_by_block_equal_the_dense_matrixs(count, size):
    blocks = _spd_blocks(count, size)
    gram = block_gram.dense(blocks)
    assert np.count_nonzero(gram) == count * size * size  # block-diagonal, interleaved degree-major
    x = np.random.default_rng(1).normal(size=(3, count * size, 4))
    np.testing.assert_allclose(block_gram.times(blocks, x), gram @ x, rtol=1e-12, atol=1e-12)
    lower = block_gram.cholesky(blocks)
    dense_lower = np.linalg.cholesky(gram + 1e-10 * np.mean(np.diag(gram)) * np.eye(gram.shape[0]))
    np.testing.assert_allclose(block_gram.dense(lower), dense_lower, rtol=1e-12, atol=1e-12)
    proj = np.random.default_rng(2).normal(size=(6, count * size, 3))  # (n, n_coefs, C)
    rows = block_gram.whitened_rows(lower, proj)
    np.testing.assert_allclose(rows, block_gram.whitened_rows(dense_lower, proj), rtol=1e-10, atol=1e-12)
    by_hand = np.linalg.solve(dense_lower, proj.transpose(1, 0, 2).reshape(count * size, -1))  # L⁻¹ P_cᵀ
    np.testing.assert_allclose(rows, by_hand.reshape(-1, 6, 3).transpose(1, 2, 0).reshape(6, -1), rtol=1e-10,
                               atol=1e-12)
    rhs = x[0]
    np.testing.assert_allclose(block_gram.unwhiten(lower, rhs), block_gram.unwhiten(dense_lower, rhs), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(block_gram.unwhiten(lower, rhs), np.linalg.solve(dense_lower.T, rhs), rtol=1e-10,
                               atol=1e-12)


@pytest.mark.parametrize("count,degree", [(50, 1), (8, 3)])
def test_the_sparse_vandermonde_matrix_and_its_least_squares_fit_are_the_dense_ones(count, degree):
    """Every frame and half frame, the gaps between stretches included (there a time blends two stretches)."""
    n_frames = 100
    stretches = chebyshev.Stretches(count, n_frames)
    u = chebyshev.sample_times(n_frames)
    sparse = block_gram.sparse_vander(*stretches.locate(u), count, degree)
    np.testing.assert_allclose(sparse.toarray(), stretches.vander(u, degree), rtol=0, atol=1e-15)
    values = np.random.default_rng(2).normal(size=(u.size, 6))
    np.testing.assert_allclose(block_gram.sparse_lstsq(sparse, values),
                               np.linalg.lstsq(stretches.vander(u, degree), values, rcond=None)[0], rtol=1e-8,
                               atol=1e-10)


def _projected(count: int, n_frames: int = 60):
    rng = np.random.default_rng(3)
    values = rng.normal(size=(n_frames, 40, 1)).cumsum(axis=0)
    stretches = chebyshev.Stretches(count, n_frames)
    return chebyshev.ProjectedTargets.build(values, values.mean(axis=(0, 1)), np.ones(1), [np.arange(40)],
                                            chebyshev.frame_times(n_frames), 1, None, stretches, max_rank=8)


def test_a_frame_by_frame_series_searched_block_by_block_is_the_dense_search(monkeypatch):
    """The best series, its spectrum, a fit's sums and a series fitted to samples: the same whether the Gram
    matrix is held dense (at most BLOCKWISE_MIN_COEFS coefficients) or by blocks (forced here on 30 stretches)."""
    dense = _projected(30)
    series = dense.best_series(0, 1, 5)
    singular = dense.singular_values(0, 1)
    fit = dense.fits_group(series, 0)
    u = chebyshev.sample_times(60)
    samples = chebyshev.evaluate(series, u, dense.stretches)
    refitted = chebyshev.fit_series(samples[:, None], u, 1, dense.stretches)
    monkeypatch.setattr(block_gram, "BLOCKWISE_MIN_COEFS", 0)
    blocks = _projected(30)
    assert blocks.gram_factor(60).shape == (30, 2, 2)  # the blocks themselves, never the dense matrix
    np.testing.assert_allclose(blocks.singular_values(0, 1), singular, rtol=1e-10)
    by_block = blocks.best_series(0, 1, 5)
    signs = np.sign(np.sum(by_block * series, axis=(0, 2)))  # singular vectors are defined up to their sign
    np.testing.assert_allclose(by_block * signs[None, :, None], series, rtol=1e-8, atol=1e-10)
    by_block_fit = blocks.fits_group(series, 0)
    np.testing.assert_allclose(by_block_fit.gram, fit.gram, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(by_block_fit.coefs, fit.coefs, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(chebyshev.fit_series(samples[:, None], u, 1, blocks.stretches), refitted,
                               rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(refitted[:, 0], series, rtol=1e-8, atol=1e-10)  # samples of a series fit to it


def test_below_the_threshold_the_dense_path_is_taken():
    """Every window up to FRAME_WISE_MAX_FRAMES frames keeps its files bit for bit: the dense factor."""
    assert not block_gram.blockwise(2 * 2048 // 2) and block_gram.blockwise(10_000)
    assert _projected(30).gram_factor(60).shape == (60, 60)
