"""Material law of the MLS-MPM generator: fixed-corotated elasticity, snow plasticity, saved stress.

Three materials share one constitutive model and differ only in parameters: 0 liquid (mu = 0, F forgets its
shape), 1 jelly (constant softened hardening), 2 snow (hardening from the plastic volume ratio Jp, singular
values clamped). Tensors are component-first: a batch of 2x2 matrices is (2, 2, N) and a batch of vectors
(2, N), so every op runs over a contiguous particle axis (broadcasting over tiny trailing axes is many times
slower in torch on CPU). The 2x2 SVD is closed form; `torch.linalg.svd` on thousands of tiny matrices is slow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

LIQUID, JELLY, SNOW = 0, 1, 2
MATERIAL_NAMES = ("liquid", "jelly", "snow")


@dataclass(frozen=True)
class MaterialParams:
    """Constants of the material law (defaults are the reference dataset's)."""

    youngs_modulus: float = 1000.0
    poisson_ratio: float = 0.2
    densities: tuple[float, float, float] = (1.0, 0.5, 0.25)
    hardening_coeff: float = 10.0  # h = exp(coeff * (1 - Jp))
    hardening_min: float = 0.1  # Taichi's clamp; the reference left h unclamped and some seeds blew up
    hardening_max: float = 5.0
    jelly_hardening: float = 0.3
    snow_sig_min: float = 1.0 - 2.5e-2  # 2.5 % elastic compression before snow yields
    snow_sig_max: float = 1.0 + 4.5e-3  # 0.45 % elastic stretch
    sig_floor: float = 1e-6  # soft floor on singular values (reference behaviour)
    min_J: float = 1e-4  # clamp that keeps a collapsing liquid finite (reference HEAD)

    @property
    def mu0(self) -> float:
        return self.youngs_modulus / (2.0 * (1.0 + self.poisson_ratio))

    @property
    def lambda0(self) -> float:
        nu = self.poisson_ratio
        return self.youngs_modulus * nu / ((1.0 + nu) * (1.0 - 2.0 * nu))

    @classmethod
    def from_config(cls, cfg: Mapping) -> MaterialParams:
        """Build from the `physics` mapping of a scenario config (keys named as the fields)."""
        kw = {}
        for f in fields(cls):
            if f.name in cfg and cfg[f.name] is not None:
                v = cfg[f.name]
                kw[f.name] = tuple(float(x) for x in v) if f.name == "densities" else float(v)
        return cls(**kw)


# ------------------------------------------------------------------------------------- 2x2 helpers, (2,2,N)
_EYE: dict[tuple, Tensor] = {}


def _eye(like: Tensor) -> Tensor:
    """Cached (2, 2, 1) identity (torch.eye costs ~0.2 ms a call on CPU, more than the rest of a mul chain)."""
    key = (like.device, like.dtype)
    if key not in _EYE:
        with torch.inference_mode(False):
            _EYE[key] = torch.eye(2, dtype=like.dtype, device=like.device)[:, :, None]
    return _EYE[key]


def mm(A: Tensor, B: Tensor) -> Tensor:
    """Batched 2x2 product of component-first matrices (2, 2, N) @ (2, 2, N)."""
    return A[:, 0:1] * B[0:1] + A[:, 1:2] * B[1:2]


def rotation(c: Tensor, s: Tensor) -> Tensor:
    """Rotation matrices [[c, -s], [s, c]] as (2, 2, N)."""
    return torch.stack((torch.stack((c, -s)), torch.stack((s, c))))


def svd2x2(F: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Closed-form sign-fixed SVD of (2, 2, N) matrices: F = U diag(s) Vh with U, Vh proper rotations.

    Returns (U, s, Vh) with s of shape (2, N), s1 >= |s2| and sign(s2) = sign(det F). This is the
    reference's LAPACK SVD after its sign fix (negate the last singular value when det U or det Vh < 0), so an
    inverted element shows up as s2 < 0. Where singular values coincide U and Vh are not unique, but
    U diag(s) Vh and the polar rotation U Vh are, and they are all the material law uses.
    """
    a, b, c, d = F[0, 0], F[0, 1], F[1, 0], F[1, 1]
    e, f = 0.5 * (a + d), 0.5 * (a - d)
    g, h = 0.5 * (c + b), 0.5 * (c - b)
    q = torch.sqrt(e * e + h * h)
    r = torch.sqrt(f * f + g * g)
    a1 = torch.atan2(g, f)
    a2 = torch.atan2(h, e)
    phi = 0.5 * (a2 + a1)
    theta = 0.5 * (a2 - a1)
    s = torch.stack((q + r, q - r))
    return rotation(torch.cos(phi), torch.sin(phi)), s, rotation(torch.cos(theta), torch.sin(theta))


# ------------------------------------------------------------------------------------------- the material law
@dataclass
class ParticleMaterial:
    """Per-particle constants of the material law, built once per simulation from the material types.

    The material-dependent branches of the law become clamps with per-particle bounds and products with
    per-particle coefficients: on CPU `torch.where` costs about three elementwise ops, a clamp one.
    """

    liquid: Tensor  # bool (N,)
    snow: Tensor  # bool (N,)
    h_lo: Tensor  # hardening bounds: [h_min, h_max], or [0.3, 0.3] for jelly (constant h)
    h_hi: Tensor
    mu0: Tensor  # mu0 for solids, 0 for the liquid
    sig_lo: Tensor  # snow: [snow_sig_min, snow_sig_max]; others: (-inf, inf), i.e. no plasticity
    sig_hi: Tensor

    @classmethod
    def build(cls, mtype: Tensor, p: MaterialParams, dtype: torch.dtype = torch.float32) -> ParticleMaterial:
        def per(values: tuple[float, float, float]) -> Tensor:
            return torch.tensor(values, dtype=dtype, device=mtype.device)[mtype]

        inf = float("inf")
        hj = p.jelly_hardening
        return cls(liquid=mtype == LIQUID, snow=mtype == SNOW,
                   h_lo=per((p.hardening_min, hj, p.hardening_min)), h_hi=per((p.hardening_max, hj, p.hardening_max)),
                   mu0=per((0.0, p.mu0, p.mu0)),
                   sig_lo=per((-inf, -inf, p.snow_sig_min)), sig_hi=per((inf, inf, p.snow_sig_max)))


def hardening(Jp_old: Tensor, mtype: Tensor | ParticleMaterial, p: MaterialParams) -> Tensor:
    """h per particle from the plastic volume ratio *before* this step's plasticity, clamped to
    [hardening_min, hardening_max]; jelly has the constant h = jelly_hardening."""
    pm = mtype if isinstance(mtype, ParticleMaterial) else ParticleMaterial.build(mtype, p, Jp_old.dtype)
    return torch.clamp(torch.exp(p.hardening_coeff * (1.0 - Jp_old)), pm.h_lo, pm.h_hi)


def lame(h: Tensor, mtype: Tensor | ParticleMaterial, p: MaterialParams) -> tuple[Tensor, Tensor]:
    """(mu, lambda) per particle; the liquid has no shear modulus."""
    pm = mtype if isinstance(mtype, ParticleMaterial) else ParticleMaterial.build(mtype, p, h.dtype)
    return pm.mu0 * h, p.lambda0 * h


def kirchhoff_stress(F: Tensor, R: Tensor, J: Tensor, mu: Tensor, lam: Tensor) -> Tensor:
    """Fixed-corotated Kirchhoff stress tau = 2 mu (F - R) F^T + lambda J (J - 1) I, as (2, 2, N).

    tau is symmetric in exact arithmetic ((F - R) F^T = F F^T - U S U^T); the off-diagonal is averaged so
    that it is also symmetric bit for bit in float32.
    """
    tau = (2.0 * mu) * mm(F - R, F.transpose(0, 1))
    iso = lam * J * (J - 1.0)
    tau[0, 0] += iso
    tau[1, 1] += iso
    off = 0.5 * (tau[0, 1] + tau[1, 0])
    tau[0, 1] = off
    tau[1, 0] = off
    return tau


@dataclass
class MaterialUpdate:
    """Result of the per-particle material step: projected F, updated Jp and the saved S = -dt tau."""

    F: Tensor
    Jp: Tensor
    S: Tensor


def svd2x2_polar(F: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The same sign-fixed SVD as `svd2x2`, in a trig-free form that the material step uses.

    With e, f, g, h = (a + d)/2, (a - d)/2, (c + b)/2, (c - b)/2 of F = [[a, b], [c, d]], q = |(e, h)| and
    r = |(f, g)|, F = q R + r K where R = U Vh is the polar rotation (angle atan2(h, e)) and K is a
    reflection (angle atan2(g, f), times diag(1, -1)). Then s = (q + r, q - r) and, for any replacement
    singular values s', U diag(s') Vh = (s'1 + s'2)/2 R + (s'1 - s'2)/2 K. No atan2, sin or cos is needed.
    Returns (s (2, N), R (2, 2, N), K (2, 2, N)); where q or r is 0 the angle is taken as 0, as atan2(0, 0).
    """
    a, b, c, d = F[0, 0], F[0, 1], F[1, 0], F[1, 1]
    e, f = 0.5 * (a + d), 0.5 * (a - d)
    g, h = 0.5 * (c + b), 0.5 * (c - b)
    q = torch.sqrt(e * e + h * h)
    r = torch.sqrt(f * f + g * g)
    qpos, rpos = q > 0, r > 0
    qs, rs = torch.where(qpos, q, 1.0), torch.where(rpos, r, 1.0)
    cr, sr = torch.where(qpos, e / qs, 1.0), h / qs  # h == 0 where q == 0
    ck, sk = torch.where(rpos, f / rs, 1.0), g / rs  # g == 0 where r == 0
    R = torch.stack((torch.stack((cr, -sr)), torch.stack((sr, cr))))
    K = torch.stack((torch.stack((ck, sk)), torch.stack((sk, -ck))))
    return torch.stack((q + r, q - r)), R, K


def material_update(F_trial: Tensor, Jp: Tensor, mtype: Tensor | ParticleMaterial, dt: float,
                    p: MaterialParams) -> MaterialUpdate:
    """Hardening, SVD, snow plasticity, F reconstruction and stress, in the reference's order (spec 3.2-3.6).

    `F_trial` is (I + dt C) F as (2, 2, N); `mtype` the material types or their prebuilt `ParticleMaterial`.
    The hardening uses `Jp` before this step's update. No 1e-6 I is added to F (the reference's HEAD drift
    bug). Jp of liquid and jelly is left untouched (exactly 1).
    """
    pm = mtype if isinstance(mtype, ParticleMaterial) else ParticleMaterial.build(mtype, p, F_trial.dtype)
    mu, lam = lame(hardening(Jp, pm, p), pm, p)
    sig, R, K = svd2x2_polar(F_trial)
    fl = p.sig_floor
    sig = torch.maximum(sig, fl + 0.01 * (sig - fl))  # soft floor: below fl, sig -> fl + 0.01 (sig - fl)
    sig_p = torch.clamp(sig, pm.sig_lo, pm.sig_hi)  # snow plasticity (a no-op for the other materials)
    Jp_new = torch.where(pm.snow, Jp * ((sig[0] / sig_p[0]) * (sig[1] / sig_p[1])), Jp)
    J = (sig_p[0] * sig_p[1]).clamp(min=p.min_J)
    F_solid = (0.5 * (sig_p[0] + sig_p[1])) * R + (0.5 * (sig_p[0] - sig_p[1])) * K  # U diag(sig_p) Vh
    F_new = torch.where(pm.liquid, torch.sqrt(J) * _eye(F_trial), F_solid)
    tau = kirchhoff_stress(F_new, R, J, mu, lam)
    return MaterialUpdate(F=F_new, Jp=Jp_new, S=(-dt) * tau)


def saved_stress_reference(F: np.ndarray, Jp_prev: np.ndarray, mtype: np.ndarray, dt: float,
                           p: MaterialParams = MaterialParams()) -> np.ndarray:
    """S recomputed in float64 numpy from saved F[k+1] (N, 2, 2), Jp[k] and type, as (N, 2, 2).

    An independent check of the saved S: it uses numpy's LAPACK SVD and the polar rotation with det +1
    instead of the closed form above. Note h uses the *previous* frame's Jp.
    """
    F = np.asarray(F, dtype=np.float64)
    U, _, Vh = np.linalg.svd(F)
    flip = np.linalg.det(U) * np.linalg.det(Vh) < 0  # improper U Vh: apply the reference's sign fix
    U[flip, :, 1] *= -1.0
    R = U @ Vh
    J = np.maximum(np.linalg.det(F), p.min_J)
    h = np.clip(np.exp(p.hardening_coeff * (1.0 - np.asarray(Jp_prev, np.float64))), p.hardening_min,
                p.hardening_max)
    h = np.where(mtype == JELLY, p.jelly_hardening, h)
    mu = np.where(mtype == LIQUID, 0.0, p.mu0 * h)
    lam = p.lambda0 * h
    tau = 2.0 * mu[:, None, None] * ((F - R) @ np.swapaxes(F, 1, 2))
    tau = tau + (lam * J * (J - 1.0))[:, None, None] * np.eye(2)
    return -dt * tau


__all__ = [
    "JELLY",
    "LIQUID",
    "MATERIAL_NAMES",
    "SNOW",
    "MaterialParams",
    "MaterialUpdate",
    "ParticleMaterial",
    "hardening",
    "kirchhoff_stress",
    "lame",
    "material_update",
    "mm",
    "rotation",
    "saved_stress_reference",
    "svd2x2",
    "svd2x2_polar",
]
