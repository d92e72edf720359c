"""A bilinear model's temporal basis as a Chebyshev series in t: the codec's alternative to the basis network.

The trained basis g(t) of a bilinear latent-code model (K curves per component and basis group) is a smooth
function of the window time u in [-1, 1]. Over a short window it barely moves, and a few Chebyshev coefficients
per curve hold it to well below the codes' quantisation error, in far fewer bytes than the network's weights (F,
100 frames: the 4-bit weights cost ~6.5 kB, more than the codes). The series is fitted to the trained network
itself, sampled at every frame of the window and half-way between (held-out frames included: the network is
defined there; no data is read), so the file still decodes at any t and, between frames, follows the network.
Coefficients are stored as one row (one scale) per degree, since they decay with the degree, at the codec's
candidate weight bits.

The codes are fitted to the decoded series exactly as to a decoded network (bilinear.fit_from_sums). The sums
they need (the Gram matrix of the basis, the targets projected on it) are linear in the coefficients, so the
targets are projected on the Chebyshev polynomials once, and another degree or precision costs O(n·K·d·C),
not another pass over every value of the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.polynomial import chebyshev
from torch import nn

from mpm_inr.codec import bilinear

#: degrees tried, smallest first; a window of n frames allows up to n - 1 (the series then has n coefficients)
DEGREES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)


def sample_times(n_frames: int) -> np.ndarray:
    """Window times where the network is sampled for the fit: every frame and every half frame."""
    return np.linspace(-1.0, 1.0, 2 * n_frames - 1)


def frame_times(n_frames: int) -> np.ndarray:
    """Window time u in [-1, 1] of each frame of the window (the network's t before t_period), on the grid the
    training and the decoder use."""
    return torch.linspace(-1.0, 1.0, n_frames, dtype=torch.float64).numpy()


def degrees_for(n_frames: int) -> list[int]:
    return [d for d in DEGREES if d <= n_frames - 1] or [0]


@torch.no_grad()
def network_samples(network: nn.Module, u: np.ndarray, t_period: float) -> np.ndarray:
    """(M, G, K, C) float64: the network's basis at window times u, in normalised units."""
    t = torch.from_numpy(u / t_period).float().unsqueeze(-1)
    basis = network.basis_per_group(t).double().cpu().numpy()
    return basis.reshape(len(u), basis.shape[1], network.latent_dim, -1)


def fit_series(samples: np.ndarray, u: np.ndarray, degree: int) -> np.ndarray:
    """(degree + 1, G, K, C) least-squares Chebyshev coefficients of the sampled curves."""
    vander = chebyshev.chebvander(u, degree)
    coefs = np.linalg.lstsq(vander, samples.reshape(len(u), -1), rcond=None)[0]
    return coefs.reshape(degree + 1, *samples.shape[1:])


def evaluate(coefs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(len(u), G, K, C) basis at window times u, in normalised units."""
    vander = chebyshev.chebvander(np.asarray(u, dtype=np.float64), coefs.shape[0] - 1)
    return (vander @ coefs.reshape(coefs.shape[0], -1)).reshape(len(u), *coefs.shape[1:])


@dataclass
class ProjectedTargets:
    """The training targets of each coded group projected on the Chebyshev polynomials up to `max_degree`, in
    original units: everything fit_from_sums needs for any series of at most that degree."""

    projections: list[np.ndarray]  # per group (n_g, D + 1, C): Σ_f Y[p, f, c] T_j(u_f)
    target_sq: list[float]  # per group ||Y_g||²
    poly_gram: np.ndarray  # (D + 1, D + 1): Σ_f T_j(u_f) T_j'(u_f) over the training frames
    std: np.ndarray  # (C,) the normalisation's std: the series is in normalised units

    @classmethod
    def build(cls, values: np.ndarray, mean: np.ndarray, std: np.ndarray, members: list[np.ndarray],
              u_train: np.ndarray, max_degree: int) -> ProjectedTargets:
        vander = chebyshev.chebvander(u_train, max_degree)  # (F, D + 1)
        projections, target_sq = [], []
        for idx in members:
            targets = values[:, idx, :].astype(np.float64) - mean  # (F, n, C)
            flat = vander.T @ targets.reshape(len(u_train), -1)  # one BLAS product: (D + 1, n·C)
            projections.append(flat.reshape(max_degree + 1, idx.size, values.shape[2]).transpose(1, 0, 2))
            target_sq.append(float(np.einsum("fnc,fnc->", targets, targets)))
        return cls(projections, target_sq, vander.T @ vander, np.asarray(std, dtype=np.float64))

    def fits(self, coefs: np.ndarray) -> list[bilinear.GroupFit]:
        """Every coded group's least-squares codes for the series `coefs` (d + 1, G, K, C), d <= max_degree."""
        n_coefs = coefs.shape[0]
        scaled = coefs * self.std  # original units
        poly_gram = self.poly_gram[:n_coefs, :n_coefs]
        out = []
        for g, (proj, sq) in enumerate(zip(self.projections, self.target_sq, strict=True)):
            a = scaled[:, g]  # (d + 1, K, C)
            gram = np.einsum("jkc,ji,ilc->kl", a, poly_gram, a, optimize=True)
            by_row = a.transpose(0, 2, 1).reshape(-1, a.shape[1])  # ((d + 1)·C, K), rows as the projections' (j, c)
            target_basis = np.ascontiguousarray(proj[:, :n_coefs]).reshape(proj.shape[0], by_row.shape[0]) @ by_row
            out.append(bilinear.fit_from_sums(gram, target_basis, sq))
        return out


def predict(coefs: np.ndarray, u: np.ndarray, latents: np.ndarray, group: np.ndarray) -> np.ndarray:
    """(len(u), N, C) normalised prediction Σ_k z_pk g_k(u) of every particle, each through its group's curves."""
    basis = evaluate(coefs, u)
    out = np.zeros((len(u), latents.shape[0], basis.shape[-1]))
    for g in range(basis.shape[1]):
        idx = np.flatnonzero(group == g)
        out[:, idx] = np.einsum("nk,fkc->fnc", latents[idx], basis[:, g])
    return out
