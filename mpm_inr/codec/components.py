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
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mpm_inr.data.window import FieldWindow

#: the encoding key and value that mark a split file (format 8)
KEY, SPLIT = "components", "split"


def is_split(encoding: dict) -> bool:
    return encoding.get(KEY) == SPLIT


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
