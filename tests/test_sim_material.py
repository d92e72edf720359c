"""Material law: closed-form SVD against LAPACK, hardening clamp, stress formula, snow plasticity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpm_inr.sim.material import (
    JELLY,
    LIQUID,
    SNOW,
    MaterialParams,
    hardening,
    lame,
    material_update,
    mm,
    saved_stress_reference,
    svd2x2,
    svd2x2_polar,
)

P = MaterialParams()


def _cf(F_np: np.ndarray) -> torch.Tensor:
    """(N, 2, 2) numpy -> component-first (2, 2, N) torch."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(F_np, 0, -1)))


def _np(t: torch.Tensor) -> np.ndarray:
    return np.moveaxis(t.numpy(), -1, 0)


def _random_F(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    F = np.eye(2) + 0.6 * rng.standard_normal((n, 2, 2))
    F[: n // 4] *= -1.0  # inverted rows too
    F[n // 4: n // 4 + 3] = np.eye(2)  # coincident singular values
    th = 0.7
    F[n // 4 + 3] = [[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]
    return F


def test_svd2x2_reconstructs_and_matches_lapack_sign_fixed():
    F = _random_F(4000)
    U, s, Vh = svd2x2(_cf(F).double())
    rec = _np(mm(U * s[None], Vh))
    np.testing.assert_allclose(rec, F, atol=1e-12)
    # U and Vh are proper rotations
    for R in (_np(U), _np(Vh)):
        np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
        np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(2), R.shape), atol=1e-12)
    # singular values: LAPACK's, with the sign of det F moved onto the last one (the reference's sign fix)
    sig = np.linalg.svd(F, compute_uv=False)
    sign = np.sign(np.linalg.det(F))
    np.testing.assert_allclose(s[0].numpy(), sig[:, 0], atol=1e-12)
    np.testing.assert_allclose(s[1].numpy(), sign * sig[:, 1], atol=1e-12)
    assert (s[0].numpy() >= np.abs(s[1].numpy()) - 1e-12).all()


def test_svd2x2_float32_accuracy():
    F = _random_F(2000, seed=1)
    U, s, Vh = svd2x2(_cf(F).float())
    np.testing.assert_allclose(_np(mm(U * s[None], Vh)), F, atol=2e-6)


def test_hardening_is_clamped_and_jelly_constant():
    Jp = torch.tensor([0.1, 0.75, 0.9, 1.0, 1.2, 5.0, 0.5])
    mtype = torch.tensor([SNOW, SNOW, SNOW, SNOW, SNOW, SNOW, JELLY])
    h = hardening(Jp, mtype, P)
    expect = np.clip(np.exp(10 * (1 - Jp.numpy())), 0.1, 5.0)
    expect[-1] = 0.3
    np.testing.assert_allclose(h.numpy(), expect, rtol=1e-6)
    assert h[0] == 5.0 and h[5] == pytest.approx(0.1)
    mu, lam = lame(torch.ones(3), torch.tensor([LIQUID, JELLY, SNOW]), P)
    assert mu[0] == 0.0 and mu[2] == pytest.approx(1000 / 2.4) and lam[0] == pytest.approx(1000 * 0.2 / 0.72)


def test_material_update_matches_independent_formula():
    n = 3000
    rng = np.random.default_rng(2)
    F = np.eye(2) + 0.05 * rng.standard_normal((n, 2, 2))
    mtype = np.repeat([LIQUID, JELLY, SNOW], n // 3)
    Jp = np.where(mtype == SNOW, rng.uniform(0.7, 1.5, n), 1.0)
    dt = 7.5e-5
    out = material_update(_cf(F), torch.from_numpy(Jp), torch.from_numpy(mtype), dt, P)
    F_new, S = _np(out.F), _np(out.S)
    # S is symmetric and equals -dt * tau evaluated on the *projected* F with h from the old Jp
    np.testing.assert_allclose(S, np.swapaxes(S, 1, 2), atol=1e-15)
    np.testing.assert_allclose(S, saved_stress_reference(F_new, Jp, mtype, dt, P), rtol=1e-9, atol=1e-15)
    liquid = mtype == LIQUID
    J = np.linalg.det(F[liquid])
    np.testing.assert_allclose(F_new[liquid], np.sqrt(J)[:, None, None] * np.eye(2), rtol=1e-12)
    jelly = mtype == JELLY
    np.testing.assert_allclose(F_new[jelly], F[jelly], atol=1e-12)  # no 1e-6 I drift
    snow = mtype == SNOW
    sig = np.linalg.svd(F_new[snow], compute_uv=False)
    assert sig.min() >= P.snow_sig_min - 1e-12 and sig.max() <= P.snow_sig_max + 1e-12
    # plastic volume change went into Jp: Jp_new * det(F_new) == Jp_old * det(F_trial) for snow
    np.testing.assert_allclose(out.Jp.numpy()[snow] * np.linalg.det(F_new[snow]),
                               Jp[snow] * np.linalg.det(F[snow]), rtol=1e-12)
    np.testing.assert_array_equal(out.Jp.numpy()[~snow], 1.0)


def test_inverted_snow_element_does_not_produce_nan():
    F = np.array([[[1.0, 0.0], [0.0, -0.2]], [[1e-8, 0.0], [0.0, 1e-8]]])
    mtype = np.array([SNOW, SNOW])
    out = material_update(_cf(F).float(), torch.ones(2), torch.from_numpy(mtype), 7.5e-5, P)
    assert torch.isfinite(out.S).all() and torch.isfinite(out.F).all() and torch.isfinite(out.Jp).all()


def test_trig_free_svd_matches_closed_form_svd():
    F = _random_F(3000, seed=3)
    F[5] = [[1.0, 2.0], [2.0, -1.0]]  # q == 0: a pure reflection-like matrix
    U, s, Vh = svd2x2(_cf(F))
    s2, R, K = svd2x2_polar(_cf(F))
    np.testing.assert_allclose(s2.numpy(), s.numpy(), atol=1e-12)
    np.testing.assert_allclose(_np(R), _np(mm(U, Vh)), atol=1e-9)
    alt = np.stack([np.full(3000, 1.1), np.full(3000, 0.9)])  # arbitrary replacement singular values
    via_uv = mm(U * torch.from_numpy(alt)[None], Vh)
    via_rk = 0.5 * (1.1 + 0.9) * R + 0.5 * (1.1 - 0.9) * K
    np.testing.assert_allclose(_np(via_rk), _np(via_uv), atol=1e-9)
