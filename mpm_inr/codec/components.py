"""A file that codes each particle's components apart: the window as N·C one-component series.

The model's bilinear layout gives a particle one code for all its components, over K curves per component: a
rank-K factorisation of the (frames·components × particles) matrix. The truncated SVD factors the other way,
(frames × particles·components): every particle-component gets its own coefficients over shared scalar curves,
and one that barely moves costs a zero. On S and C that layout is the smaller one (S, 1 000 frames, seed 2, R²
0.995: the SVD needs rank 20; a bilinear model K = 102 per disc), and over long windows a Chebyshev series of its
curves costs a fraction of the SVD's stored temporal factors (the whole simulation's S, seed 1, rank 168: 292 kB
of the SVD's 1.64 MB file; 74 kB as 64 stretches of degree 32). A split file stores that: one basis group over
every particle-component, its curves a (piecewise) series, its codes per particle-component, each centred on its
component's value (mean or rest); the curves are in original units. Nothing in it comes from the network's
weights: its curves are the window's best series of their rank and degree (encode.SeriesTargets.window_samples).

A 2×2 tensor field's file codes its parts instead of its components (format 12, `components: parts`): the
isotropic, normal-deviatoric, shear and rotation parts of each particle's tensor (TENSOR_PARTS). They are an
orthonormal basis of 2×2 matrices, so every error, SS_tot and R² is the same in either set, and the float truncated
SVD of the window is unchanged (a rotation of each particle's columns); what changes is what the codes quantise.
S is symmetric, so its rotation part is exactly zero, and a liquid particle's stress is a pressure, so its
deviatoric parts are zero too (at 1 000 frames 15 000 of 36 000 particle-parts are constant and stored by value,
where 6 000 particle-components were: a liquid's S01 and S10); C's trace (the velocity divergence) varies far
less than its deviatoric part (C00 and C11 correlate at -0.89); F stays near a rotation (F00 ≈ F11, F01 ≈ -F10).
Coding correlated components one by one spends bits on what they share: at the same R², C at 1 000 frames (seed
2, R² 0.995) 206.6 -> 196.7 kB, S 98.5 -> 85.6 kB; at 100 frames S (seed 0, R² 0.999) 34.6 -> 28.7 kB, C 60.6 ->
58.5 kB, F (seed 2, R² 0.999) 7.4 -> 7.1 kB (`compression_cpu_avx2_discs_3types_tensor_parts_2026-12-07.md` in
docs/benchmarks). The quantised SVD given the same parts gains as much: they are a choice of what to factorise.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mpm_inr.data.window import FieldWindow

#: the encoding key and values that mark a split file: its components apart (format 8), or its tensor parts apart
#: (format 12)
KEY, SPLIT, PARTS = "components", "split", "parts"

_HALF = np.sqrt(0.5)
#: (4, 4) orthonormal: column j is part j of a row-major 2×2 tensor (a00, a01, a10, a11): (a00 + a11)/√2
#: (isotropic), (a00 - a11)/√2 (normal deviatoric), (a01 + a10)/√2 (shear), (a01 - a10)/√2 (rotation)
TENSOR_PARTS = np.array([[_HALF, _HALF, 0.0, 0.0],
                         [0.0, 0.0, _HALF, _HALF],
                         [0.0, 0.0, _HALF, -_HALF],
                         [_HALF, -_HALF, 0.0, 0.0]])


def is_split(encoding: dict) -> bool:
    """Whether the file codes each particle's components (or tensor parts) apart."""
    return encoding.get(KEY) in (SPLIT, PARTS)


def split_kind(n_components: int) -> str:
    """The split layout of a field of `n_components`: a 2×2 tensor's (four components, row-major as
    mpm_inr.config.fields declares them) by its parts, any other by its components."""
    return PARTS if n_components == TENSOR_PARTS.shape[0] else SPLIT


def in_parts(window: FieldWindow) -> FieldWindow:
    """The window with its components replaced by TENSOR_PARTS' parts where it is a 2×2 tensor field (a float32
    copy, written a block of frames at a time: 1.4 GB over the whole simulation), its mean with them; any other
    window as it is."""
    if split_kind(window.n_components) != PARTS:
        return window
    mean = _butterflies(np.asarray(window.mean), _TENSOR_PAIRS, _PART_PAIRS)
    return dataclasses.replace(window, values=values_in_parts(window.values), mean=mean,
                               std=np.ones_like(window.std), cache_key=None)


def values_in_parts(values: np.ndarray) -> np.ndarray:
    """(T, N, 4) a 2×2 tensor field's values as TENSOR_PARTS' parts, a float32 copy written a block of frames at
    a time."""
    parts = np.empty(values.shape, dtype=np.float32)
    per_block = max(1, (1 << 25) // max(values[0].size, 1))
    for lo in range(0, values.shape[0], per_block):
        parts[lo:lo + per_block] = _butterflies(values[lo:lo + per_block], _TENSOR_PAIRS, _PART_PAIRS)
    return parts


def from_parts(values: np.ndarray, encoding: dict) -> np.ndarray:
    """(..., C) decoded values back in components where the file codes tensor parts (float32), else as they are."""
    if encoding.get(KEY) != PARTS:
        return values
    return _butterflies(values, _PART_PAIRS, _TENSOR_PAIRS)


#: the components (a00, a11) and (a01, a10) whose sums and differences are the parts (0, 1) and (2, 3)
_TENSOR_PAIRS, _PART_PAIRS = ((0, 3), (1, 2)), ((0, 1), (2, 3))


def _butterflies(values: np.ndarray, sources: tuple[tuple[int, int], ...],
                 targets: tuple[tuple[int, int], ...]) -> np.ndarray:
    """float32: of each pair (x, y) of `values`' last axis in `sources`, (x + y)/√2 and (x - y)/√2 into the pair
    of `targets` (TENSOR_PARTS one way, its transpose the other). Sums and differences, not a product with the
    matrix: a product's fused multiply-adds leave ~1e-17 of S01 - S10 where S is symmetric, and the rotation part
    would not be the exact zero that is stored by value."""
    out = np.empty(values.shape, dtype=np.float32)
    for (i, j), (a, b) in zip(sources, targets, strict=True):
        x, y = values[..., i].astype(np.float64), values[..., j].astype(np.float64)
        out[..., a], out[..., b] = (x + y) * _HALF, (x - y) * _HALF
    return out


def split_centre(centre: np.ndarray, n_particles: int) -> np.ndarray:
    """(N·C, 1) float64: each particle-component's centre, its component's value of `centre` (C,) as the file
    stores it (float32)."""
    return np.tile(np.asarray(centre, dtype=np.float32).astype(np.float64), n_particles)[:, None]


def split_window(window: FieldWindow) -> FieldWindow:
    """The window as N·C particles of one component (a view of its values, no copy), each centred on its
    component's `mean` (bilinear.target_blocks takes a centre per particle), in original units (std 1)."""
    n_frames, n_particles, n_comp = window.values.shape
    return dataclasses.replace(
        window, values=window.values.reshape(n_frames, n_particles * n_comp, 1),
        material=np.repeat(window.material, n_comp), object_id=np.repeat(window.object_id, n_comp),
        mean=split_centre(window.mean, n_particles), std=np.ones(1, dtype=np.float32), cache_key=None)


def join(values: np.ndarray, n_components: int) -> np.ndarray:
    """(F, N·C, 1) -> (F, N, C)."""
    return values.reshape(values.shape[0], -1, n_components)
