"""The ground truth's kinograph reference (`metrics.kinograph_reference`) computed beside the fit, when the run
leaves a core free.

The reference is the half of the kinograph SSIM that depends on the ground truth alone: the filtered interiors of
its particles x frames images. A multirun's later jobs take it from the window cache, but a warm-served run (a
fresh fork) or a run in its own interpreter computed it after its fit: 0.09 s for 100 frames of C on the 2-core
VM. A forked process computes it during the fit into memory shared with the run (`shared_array`), so the run reads
it without a copy; it is the same function on the same values, so the score is the same to the last digit. A
process that fails leaves the reference to the run.
"""

from __future__ import annotations

from typing import Self

import numpy as np

from mpm_inr.baselines.forked import ForkedTask, can_fork, shared_array
from mpm_inr.metrics import KinographReference, kinograph_reference
from mpm_inr.metrics.image import filtered_interior_shape


class KinographAside:
    """`reference()` of a (T, N, C) ground truth, computed from `start_for` on in a forked process."""

    def __init__(self, gt: np.ndarray, interior: tuple[int, int]) -> None:
        self.gt = gt
        n_components = gt.shape[2]
        self._filtered = tuple((shared_array(interior), shared_array(interior)) for _ in range(n_components))
        self._ranges = shared_array((n_components,))
        self._task = ForkedTask(self._fill)

    @classmethod
    def start_for(cls, gt: np.ndarray) -> KinographAside | None:
        """A started process; None where the reference keeps no filtered images (nothing worth computing
        beside) or the platform cannot fork."""
        interior = filtered_interior_shape(gt.shape)
        if interior is None or not can_fork():
            return None
        aside = cls(gt, interior)
        aside._task.start()
        return aside

    def _fill(self) -> None:
        """In the forked process (numpy and scipy only, never torch)."""
        reference = kinograph_reference(self.gt, keep_filtered=True)
        assert reference.filtered is not None  # filtered_interior_shape said it keeps them
        for (u, uu), (shared_u, shared_uu) in zip(reference.filtered, self._filtered, strict=True):
            shared_u[...], shared_uu[...] = u, uu
        self._ranges[:] = reference.data_ranges

    def reference(self) -> KinographReference | None:
        """Wait for the process; its reference, or None when it failed (the run computes it then)."""
        if self._task.wait() != 0:
            return None
        return KinographReference(tuple(self.gt.shape), tuple(float(r) for r in self._ranges), self._filtered)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self._task.kill()
