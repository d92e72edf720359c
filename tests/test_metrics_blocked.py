"""The kinograph SSIM scored a block of rows at a time is the whole-image score to the last digit, and its memory
is one float64 map, not a dozen float64 copies of the image."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
import torch
from scipy.ndimage import correlate1d

from mpm_inr.metrics import (
    R2Accumulator,
    evaluate_all,
    kinograph_reference,
    pooled_scores,
)
from mpm_inr.metrics.image import (
    SSIM_BLOCK_VALUES,
    SSIM_RADIUS,
    SSIM_TAPS,
    kinograph_frame_sums,
    kinograph_ssim,
    nanmean,
    ssim_interior,
)


def whole_image_ssim(gt_image: np.ndarray, pred_image: np.ndarray, data_range: float) -> float:
    """The unblocked computation `ssim_interior` replaced: every filtered image of the whole image at once."""
    a, b = np.asarray(gt_image, dtype=np.float64), np.asarray(pred_image, dtype=np.float64)
    r = SSIM_RADIUS
    interior = (slice(r, -r), slice(r, -r))
    ux, uy, uxx, uyy, uxy = (correlate1d(correlate1d(image, SSIM_TAPS, axis=0), SSIM_TAPS, axis=1)[interior]
                             for image in (a, b, a * a, b * b, a * b))
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    numerator = (2 * ux * uy + c1) * (2 * (uxy - ux * uy) + c2)
    denominator = (ux * ux + uy * uy + c1) * ((uxx - ux * ux) + (uyy - uy * uy) + c2)
    return float((numerator / denominator).mean())


def _field(n_frames: int, n_particles: int, n_components: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = np.cumsum(rng.normal(size=(n_frames, n_particles, n_components)), axis=0).astype(np.float32)
    pred = (gt + 0.3 * rng.normal(size=gt.shape)).astype(np.float32)
    return gt, pred


@pytest.mark.parametrize("block_values", [1, 500, 2000, 10**9])
@pytest.mark.parametrize("shape", [(40, 300), (13, 97), (25, 64)])
def test_blocked_ssim_is_the_whole_image_score_to_the_last_digit(shape, block_values) -> None:
    n_frames, n_particles = shape
    gt, pred = _field(n_frames, n_particles, 1, seed=n_particles)
    gt_image, pred_image = gt[:, :, 0].T, pred[:, :, 0].T  # the kinograph's float32 views, particles x frames
    data_range = float(gt_image.max()) - float(gt_image.min())
    expected = whole_image_ssim(gt_image, pred_image, data_range)
    assert ssim_interior(gt_image, pred_image, data_range, block_values=block_values) == expected


def test_kinograph_ssim_over_several_blocks_equals_the_whole_image_scores(monkeypatch) -> None:
    monkeypatch.setitem(SSIM_BLOCK_VALUES, "cpu", 1000)  # blocks of 33 particles
    gt, pred = _field(30, 500, 3, seed=7)
    expected = []
    for c in range(3):
        image = gt[:, :, c].T
        expected.append(whole_image_ssim(image, pred[:, :, c].T, float(image.max()) - float(image.min())))
    assert kinograph_ssim(gt, pred) == nanmean(expected)
    assert kinograph_ssim(gt.astype(np.float64), pred.astype(np.float64)) == nanmean(expected)  # float32 upcasts exactly


def _peak_traced_bytes(compute) -> int:
    """Peak memory traced while `compute()` runs (numpy reports its buffers to tracemalloc)."""
    tracemalloc.start()
    try:
        compute()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_blocked_ssim_holds_one_float64_map_not_copies_of_the_image(monkeypatch) -> None:
    """Scoring a float32 component holds the float64 SSIM map plus small blocks; the whole-image computation held a
    dozen float64 images (measured too, so the bound is seen to bite)."""
    monkeypatch.setitem(SSIM_BLOCK_VALUES, "cpu", 2000)
    gt, pred = _field(40, 3000, 1, seed=11)
    image_float64 = gt.size * 8
    assert _peak_traced_bytes(lambda: kinograph_ssim(gt, pred)) < 1.25 * image_float64
    whole = _peak_traced_bytes(lambda: whole_image_ssim(gt[:, :, 0].T, pred[:, :, 0].T, float(np.ptp(gt))))
    assert whole > 5 * image_float64


def _drifting_positions(n_frames: int, n_particles: int, seed: int) -> np.ndarray:
    xy = np.random.default_rng(seed).uniform(size=(n_particles, 2))
    return (xy[None] + 0.01 * np.arange(n_frames)[:, None, None]).astype(np.float32)


def test_evaluate_all_is_the_same_with_a_kept_kinograph_reference(monkeypatch) -> None:
    """The ground truth's side computed once and reused (a multirun's later jobs) changes no digit, whether the
    reference keeps the filtered images or only the data ranges."""
    monkeypatch.setitem(SSIM_BLOCK_VALUES, "cpu", 1000)
    gt, pred = _field(30, 400, 4, seed=5)
    positions = _drifting_positions(30, 400, seed=5)
    plain = evaluate_all(gt, pred, positions, n_params=100)
    kept = kinograph_reference(gt)
    assert kept.filtered is not None and len(kept.filtered) == 4
    ranges_only = kinograph_reference(gt, max_bytes=0)
    assert ranges_only.filtered is None
    for reference in (kept, ranges_only):
        assert evaluate_all(gt, pred, positions, n_params=100, kinograph=reference) == plain
    expected = [whole_image_ssim(gt[:, :, c].T, pred[:, :, c].T, float(gt[:, :, c].max()) - float(gt[:, :, c].min()))
                for c in range(4)]
    assert plain["kinograph_ssim"] == nanmean(expected)
    assert evaluate_all(gt, pred, positions[15], n_params=100) == plain  # the middle frame's positions alone


def test_a_reference_of_another_window_is_refused() -> None:
    gt, pred = _field(30, 400, 2, seed=6)
    with pytest.raises(ValueError, match="kinograph reference"):
        kinograph_ssim(gt[:20], pred[:20], reference=kinograph_reference(gt))


def test_pooled_scores_are_evaluate_all_s() -> None:
    gt, pred = _field(12, 300, 3, seed=8)
    metrics = evaluate_all(gt, pred, _drifting_positions(12, 300, seed=8), n_params=10)
    pooled = pooled_scores(gt, pred)
    assert (pooled.r2, pooled.mse, pooled.pearson_r2, pooled.slope, pooled.intercept, pooled.r2_per_component) == (
        metrics["final_r2"], metrics["final_mse"], metrics["pearson_r2"], metrics["slope"], metrics["intercept"],
        metrics["r2_per_component"])


def test_evaluate_all_copies_no_window(monkeypatch) -> None:
    """Numpy's peak during a whole evaluation of a float32 window stays under the window's own size: no float64 (nor
    float32) copy of the values or of the positions, only per-frame chunks (torch's, not traced) and the float64
    SSIM map of one component at a time (half the float32 window of a 4-component field)."""
    monkeypatch.setitem(SSIM_BLOCK_VALUES, "cpu", 2000)
    gt, pred = _field(40, 3000, 4, seed=9)
    positions = _drifting_positions(40, 3000, seed=9)
    assert _peak_traced_bytes(lambda: evaluate_all(gt, pred, positions, n_params=10)) < 0.75 * gt.nbytes


def test_one_pass_extremes_flag_the_constant_frames_and_components_as_amin_and_amax_do() -> None:
    gt, pred = _field(6, 50, 2, seed=12)
    gt[2, :, 1] = 0.5  # a constant frame of one component
    gt[:, :, 0] = 1.0  # a constant component
    g, p = torch.as_tensor(gt, dtype=torch.float64), torch.as_tensor(pred, dtype=torch.float64)
    defined = kinograph_frame_sums(g, p)[2]
    assert torch.equal(defined, (g.amax(dim=1) != g.amin(dim=1)).double())
    assert defined[:, 0].sum() == 0 and defined[2, 1] == 0 and defined[:, 1].sum() == 5
    accumulator = R2Accumulator()
    accumulator.update(g, p)
    assert math.isnan(accumulator.compute().r2_per_component[0])  # constant: undefined, as before
