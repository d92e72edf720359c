"""The Chebyshev polynomials' Gram matrix over the training frames, block-diagonal by stretch.

A piecewise series (chebyshev.Stretches) has P stretches of d + 1 polynomials each, its coefficients ordered
degree-major (row j·P + p is degree j of stretch p). A training frame lies in one stretch, so Σ_f T_j(u_f) T_j'(u_f)
couples only a stretch's own polynomials: the Gram matrix is P blocks of (d + 1)², interleaved. Held dense it is
((d + 1)·P)²: curves frame by frame over the whole simulation (5 000 two-frame stretches of degree 1) make it
10 000² (0.8 GB), its Cholesky factor and triangular solves took minutes a time, and a product with it cost ~2 s
per fit of a step search that makes hundreds. Block by block each is O(P·(d + 1)²) per column.

Up to BLOCKWISE_MIN_COEFS coefficients the dense matrix is used as before, so every file of a window of at most
4 096 frames (and every series of fewer coefficients) is the same bit for bit; past it the blocks, whose results
agree with the dense ones to rounding (tests/test_codec_block_gram.py).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
from numpy.polynomial import chebyshev
from scipy.linalg import solve_triangular

from mpm_inr.codec import bilinear

#: a series of more coefficients per curve than this has its Gram matrix handled block by block
BLOCKWISE_MIN_COEFS = 4096


def blockwise(n_coefs: int) -> bool:
    """Whether a series of `n_coefs` coefficients per curve is handled block by block."""
    return n_coefs > BLOCKWISE_MIN_COEFS


def dense(blocks: np.ndarray) -> np.ndarray:
    """((D + 1)·P, (D + 1)·P) the degree-major matrix of P blocks (P, D + 1, D + 1)."""
    count, size = blocks.shape[0], blocks.shape[1]
    out = np.zeros((size * count, size * count))
    for p in range(count):
        out[p::count, p::count] = blocks[p]
    return out


def leading(blocks: np.ndarray, n_coefs: int) -> np.ndarray:
    """(P, d + 1, d + 1) each block's leading part: a series of `n_coefs` = (d + 1)·P coefficients."""
    per = n_coefs // blocks.shape[0]
    return blocks[:, :per, :per]


def times(blocks: np.ndarray, x: np.ndarray) -> np.ndarray:
    """G @ x for (..., (d + 1)·P, K) `x`, G the degree-major matrix of `blocks` (P, d + 1, d + 1)."""
    count, per = blocks.shape[0], blocks.shape[1]
    stacked = x.reshape(*x.shape[:-2], per, count, x.shape[-1])
    return np.einsum("pij,...jpk->...ipk", blocks, stacked).reshape(x.shape)


def cholesky(blocks: np.ndarray) -> np.ndarray:
    """(P, d + 1, d + 1) the lower Cholesky factor of each block, with bilinear.ridged's ridge of the whole
    matrix (its mean diagonal), so the factor is the dense matrix's, block by block."""
    per = blocks.shape[1]
    diagonal = np.einsum("pii->pi", blocks)
    ridge = bilinear.ridge(float(np.mean(diagonal))) if blocks.size else 0.0
    return np.linalg.cholesky(blocks + ridge * np.eye(per))


def whitened_rows(lower: np.ndarray, proj: np.ndarray) -> np.ndarray:
    """(n, C·n_coefs) each particle's projections (n, n_coefs, C) whitened, L⁻¹ P_cᵀ for every component side by
    side: `lower` dense (n_coefs, n_coefs), or blocks (P, d + 1, d + 1) solved by forward substitution over the
    degrees, every stretch at once and in the projections' own layout (over the whole simulation each copy of
    them is 2.9 GB: the dense path's transposes make three)."""
    n_particles, n_coefs, n_comp = proj.shape
    if lower.ndim == 2:
        whitened = solve_triangular(lower, proj.transpose(1, 0, 2).reshape(n_coefs, n_particles * n_comp),
                                    lower=True, check_finite=False)
        return whitened.reshape(n_coefs, n_particles, n_comp).transpose(1, 2, 0).reshape(n_particles, -1)
    count, per = lower.shape[0], lower.shape[1]
    out = proj.reshape(n_particles, per, count, n_comp).copy()
    for j in range(per):
        for i in range(j):
            out[:, j] -= lower[None, :, j, i, None] * out[:, i]
        out[:, j] /= lower[None, :, j, j, None]
    out = out.reshape(n_particles, n_coefs, n_comp)
    return out.reshape(n_particles, -1) if n_comp == 1 else out.transpose(0, 2, 1).reshape(n_particles, -1)


def unwhiten(lower: np.ndarray, whitened: np.ndarray) -> np.ndarray:
    """L⁻ᵀ w for (n_coefs, m) `whitened`: a whitened basis back in the polynomials (whitened_rows' inverse
    transpose), by back substitution for blocks."""
    if lower.ndim == 2:
        return np.linalg.solve(lower.T, whitened)
    count, per = lower.shape[0], lower.shape[1]
    out = whitened.reshape(per, count, -1).copy()
    for j in reversed(range(per)):
        for i in range(j + 1, per):
            out[j] -= lower[:, i, j, None] * out[i]
        out[j] /= lower[:, j, j, None]
    return out.reshape(whitened.shape)


def sparse_vander(piece: np.ndarray, x: np.ndarray, weight: np.ndarray, count: int,
                  degree: int) -> scipy.sparse.csr_matrix:
    """(len(x), (d + 1)·P) a piecewise series' Vandermonde matrix (chebyshev.Stretches.vander) from where each
    time falls (Stretches.locate): its stretch's polynomials, and the next stretch's at its first frame in a gap
    between two. At most 2·(d + 1) non-zeros a row."""
    rows = np.arange(piece.size)
    gap = np.flatnonzero(weight < 1.0)
    degrees = np.arange(degree + 1)
    own = weight[:, None] * chebyshev.chebvander(x, degree)
    next_first = (1.0 - weight[gap])[:, None] * chebyshev.chebvander(-np.ones(1), degree)
    row_index = np.concatenate([np.repeat(rows, degree + 1), np.repeat(gap, degree + 1)])
    col_index = np.concatenate([(degrees[None, :] * count + piece[:, None]).ravel(),
                                (degrees[None, :] * count + piece[gap, None] + 1).ravel()])
    data = np.concatenate([own.ravel(), next_first.ravel()])
    return scipy.sparse.csr_matrix((data, (row_index, col_index)), shape=(piece.size, (degree + 1) * count))


def sparse_lstsq(vander: scipy.sparse.csr_matrix, values: np.ndarray) -> np.ndarray:
    """Least-squares coefficients (n_coefs, m) of (len, m) `values` on a sparse Vandermonde matrix, by its normal
    equations (sparse and banded by stretch: a dense lstsq of the whole simulation's 20 000 × 10 000 did not
    finish in 20 minutes). Squaring the condition number is harmless here: a stretch's low-degree Chebyshev
    polynomials at its own frames are well conditioned."""
    normal = (vander.T @ vander).tocsc()
    return scipy.sparse.linalg.splu(normal).solve(np.asarray(vander.T @ values))
