"""Gridded SSIM and kinograph metrics: hand cases and agreement with scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from mpm_inr.metrics import (
    grid_particles,
    kinograph_r2,
    kinograph_ssim,
    ssim_image,
    ssim_per_component,
)


def smooth_image(size: int = 64, seed: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    rng = np.random.default_rng(seed)
    return np.sin(6 * x + rng.uniform()) * np.cos(4 * y) + 0.5 * x


def disc_particles(n: int = 4000, frames: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Positions (T, N, 2) of a disc drifting right and a smooth 2-component field on it."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = np.sqrt(rng.uniform(size=n))
    xy = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)
    positions = xy[None] + np.linspace(0, 0.2, frames)[:, None, None] * [1.0, 0.0]
    t = np.arange(frames)[:, None]
    field = np.stack([np.sin(3 * xy[:, 0] + 0.1 * t), xy[:, 1] ** 2 + 0.05 * t], axis=-1)
    return positions, field


def test_grid_particles_averages_per_cell() -> None:
    positions = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.2, 0.1]])
    values = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
    images, mask = grid_particles(positions, values, grid=2)
    assert mask.all()
    # row = y, column = x; cell (0, 0) holds particles 0 and 4
    np.testing.assert_allclose(images[0], [[3.0, 2.0], [3.0, 4.0]])

    images, mask = grid_particles(positions, values, grid=3)
    assert mask.sum() == 4 and not mask[1, 1]
    assert math.isnan(images[0, 1, 1])


def test_ssim_image_matches_scikit_image_wang_settings() -> None:
    gt = smooth_image()
    pred = gt + 0.05 * np.random.default_rng(1).normal(size=gt.shape)
    expected = structural_similarity(
        gt, pred, data_range=gt.max() - gt.min(), gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim_image(gt, pred) == pytest.approx(expected, abs=1e-12)
    assert ssim_image(gt, pred, mask=np.ones_like(gt, dtype=bool)) == pytest.approx(expected, abs=1e-12)
    assert ssim_image(gt, gt) == pytest.approx(1.0, abs=1e-12)


def test_ssim_data_range_comes_from_ground_truth_only() -> None:
    gt = smooth_image()
    wild = gt.copy()
    wild[10, 10] = 1e3  # a huge outlier in the prediction must not rescale the constants
    assert ssim_image(gt, wild) == pytest.approx(ssim_image(gt, wild, data_range=float(np.ptp(gt))))


def test_ssim_undefined_cases() -> None:
    assert math.isnan(ssim_image(np.ones((16, 16)), np.ones((16, 16))))  # no GT spread
    assert math.isnan(ssim_image(np.arange(4.0).reshape(2, 2), np.zeros((2, 2))))  # too small for any window
    small = smooth_image(5)
    assert ssim_image(small, small) == pytest.approx(1.0)  # 5-pixel window


def test_ssim_per_component_scores_each_component() -> None:
    positions, field = disc_particles()
    gt = field
    assert ssim_per_component(gt, gt, positions) == pytest.approx([1.0, 1.0], abs=1e-12)

    rng = np.random.default_rng(2)
    pred = gt.copy()
    pred[..., 1] += 0.2 * np.ptp(gt[..., 1]) * rng.normal(size=gt[..., 1].shape)
    scores = ssim_per_component(gt, pred, positions)
    assert scores[0] == pytest.approx(1.0, abs=1e-12) and scores[1] < 0.9

    halved = ssim_per_component(gt, 0.5 * gt, positions)  # no slope correction
    assert all(score < 0.99 for score in halved)


def test_ssim_per_component_uses_the_middle_frame_positions() -> None:
    positions, field = disc_particles(frames=5)
    middle_only = ssim_per_component(field, field * 1.1, positions[2])
    assert ssim_per_component(field, field * 1.1, positions) == middle_only
    with pytest.raises(ValueError):
        ssim_per_component(field, field, positions[:, :10])
    with pytest.raises(ValueError, match="grid"):
        ssim_per_component(field, field, positions, grid=4)


def test_kinograph_r2_hand_case() -> None:
    gt = np.zeros((2, 3, 2))
    pred = np.zeros((2, 3, 2))
    gt[0, :, 0], pred[0, :, 0] = [0, 1, 2], [0, 1, 3]  # SS_tot 2, SS_res 1 → 0.5
    gt[1, :, 0], pred[1, :, 0] = [1, 1, 1], [5, 5, 5]  # constant frame: undefined, skipped
    gt[0, :, 1], pred[0, :, 1] = [0, 2, 4], [0, 2, 4]  # 1.0
    gt[1, :, 1], pred[1, :, 1] = [0, 2, 4], [2, 2, 2]  # frame mean predicted: 0.0
    # component 0: 0.5; component 1: mean(1.0, 0.0) = 0.5
    assert kinograph_r2(gt, pred) == pytest.approx(0.5)


def test_kinograph_metrics_are_not_slope_corrected() -> None:
    rng = np.random.default_rng(3)
    gt = np.cumsum(rng.normal(size=(30, 40, 2)), axis=0)
    assert kinograph_r2(gt, gt) == 1.0
    assert kinograph_ssim(gt, gt) == pytest.approx(1.0, abs=1e-12)
    assert kinograph_r2(gt, 0.5 * gt) < 0.9
    assert kinograph_ssim(gt, 0.5 * gt) < 0.99


def test_kinograph_ssim_is_the_mean_of_per_component_image_ssim() -> None:
    rng = np.random.default_rng(4)
    gt = np.cumsum(rng.normal(size=(20, 30, 2)), axis=0)
    pred = gt + rng.normal(size=gt.shape)
    expected = []
    for c in range(2):
        image = gt[:, :, c].T  # particles × frames
        expected.append(
            structural_similarity(
                image, pred[:, :, c].T, data_range=np.ptp(image), gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False,
            )
        )
    assert kinograph_ssim(gt, pred) == pytest.approx(np.mean(expected), abs=1e-12)


@pytest.mark.parametrize("use_torch", [False, True])
@pytest.mark.parametrize("shape", [(11, 11), (20, 30), (57, 13), (200, 90)])
def test_interior_ssim_is_the_scikit_image_score(shape, use_torch) -> None:
    from mpm_inr.metrics.image import ssim_interior

    rng = np.random.default_rng(shape[0])
    gt = np.cumsum(rng.normal(size=shape), axis=1)
    pred = 0.8 * gt + rng.normal(scale=0.5, size=shape)
    score = ssim_interior(gt, pred, float(np.ptp(gt)), "cpu", use_torch=use_torch)
    assert score == pytest.approx(ssim_image(gt, pred), abs=1e-12)
    flat = np.ones(shape)
    assert math.isnan(ssim_interior(flat, pred, 0.0, "cpu", use_torch=use_torch))  # no spread in the GT: undefined


def test_kinograph_ssim_on_torch_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    gt = np.cumsum(rng.normal(size=(40, 300, 3)), axis=0)
    pred = gt + rng.normal(size=gt.shape)
    assert kinograph_ssim(gt, pred, use_torch=True) == pytest.approx(kinograph_ssim(gt, pred), abs=1e-12)
