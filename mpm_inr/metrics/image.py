"""Image-structured scores of a particle field: SSIM of the gridded middle frame and the kinograph metrics.

One canonical SSIM is used for every reported number: scikit-image `structural_similarity` with the settings of
Wang et al. (2004) — an 11-tap Gaussian window (σ = 1.5), population covariances, K1 = 0.01, K2 = 0.03 — and an
explicit `data_range` taken from the *ground-truth* image (max − min), so the score never depends on what the
prediction did. Images smaller than 11 pixels on a side use the largest odd window that fits (at least 3);
smaller images, and ground truth without any spread (data_range 0), score NaN ("undefined"), and averages over
components skip NaN. Big images (the kinograph) are scored by `ssim_interior`, which computes that same number
(to 1e-12) faster: scipy on a CPU, torch on a GPU.

Unlike the reference, no prediction is slope-corrected before scoring: a prediction at half amplitude must lose.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.ndimage import correlate1d
from skimage.metrics import structural_similarity

from mpm_inr.metrics._arrays import (
    as_field,
    as_field_pair,
    frame_chunks,
    frame_positions,
    middle_frame,
)

SSIM_SIGMA = 1.5
SSIM_MAX_WINDOW = 11  # 2 * int(3.5 * sigma + 0.5) + 1, the Gaussian filter's extent in scikit-image
MIN_GRID = SSIM_MAX_WINDOW


def nanmean(values: Any) -> float:
    """Mean over the defined (non-NaN) values; NaN if there are none (without numpy's warning)."""
    array = np.asarray(values, dtype=np.float64)
    defined = array[~np.isnan(array)]
    return float(defined.mean()) if defined.size else float("nan")


def ssim_image(
    gt_image: np.ndarray,
    pred_image: np.ndarray,
    data_range: float | None = None,
    mask: np.ndarray | None = None,
) -> float:
    """SSIM of two 2-D images (Wang et al. settings), averaged over `mask` pixels if a mask is given.

    `data_range` defaults to the ground-truth range over the mask. The border where the window does not fit is
    excluded from the mean, as scikit-image does. NaN when the image is too small or the range is 0.
    """
    gt_image = np.asarray(gt_image, dtype=np.float64)
    pred_image = np.asarray(pred_image, dtype=np.float64)
    if gt_image.shape != pred_image.shape or gt_image.ndim != 2:
        raise ValueError(f"ssim_image needs two 2-D images of one shape, got {gt_image.shape} and {pred_image.shape}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != gt_image.shape:
            raise ValueError(f"mask shape {mask.shape} differs from image shape {gt_image.shape}")
        if not mask.any():
            return float("nan")
    window = min(SSIM_MAX_WINDOW, min(gt_image.shape))
    window -= 1 - window % 2  # largest odd size that fits
    if window < 3:
        return float("nan")
    if data_range is None:
        reference = gt_image[mask] if mask is not None else gt_image
        data_range = float(reference.max() - reference.min())
    if not (np.isfinite(data_range) and data_range > 0):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN predictions propagate as NaN, which is the answer
        _, ssim_map = structural_similarity(
            gt_image,
            pred_image,
            data_range=data_range,
            gaussian_weights=True,
            sigma=SSIM_SIGMA,
            use_sample_covariance=False,
            win_size=window,
            full=True,
        )
    pad = (window - 1) // 2
    interior = (slice(pad, -pad), slice(pad, -pad))
    if mask is None:
        return float(ssim_map[interior].mean())
    inner_mask = mask[interior]
    if inner_mask.any():
        return float(ssim_map[interior][inner_mask].mean())
    return float(ssim_map[mask].mean())  # every occupied cell is on the border: use them rather than nothing


SSIM_RADIUS = int(3.5 * SSIM_SIGMA + 0.5)  # the 11-tap window's half width
SSIM_TAPS = np.exp(-0.5 * (np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1) / SSIM_SIGMA) ** 2)
SSIM_TAPS /= SSIM_TAPS.sum()  # scikit-image's Gaussian taps (σ 1.5, truncated at 3.5σ)
#: values per block image in `ssim_interior` (rows x columns): each of its ~15 float64 temporaries stays in cache
#: on a CPU; a GPU takes bigger blocks
SSIM_BLOCK_VALUES = {"cpu": 2**15, "gpu": 2**24}


def ssim_interior(gt_image: Any, pred_image: Any, data_range: float, device: str = "cpu",
                  use_torch: bool | None = None, block_values: int | None = None,
                  gt_filtered: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """`ssim_image` without a mask, for big images (the kinograph): the same number, several times faster, in
    bounded memory.

    The score is the mean over the interior, where the 11-tap window fits, so no border mode is involved: the
    separable filter with scikit-image's Gaussian taps gives exactly the interior of its filtered images. The
    image is scored a block of rows at a time (each block with the window's half width of extra rows either side),
    so only the float64 SSIM map (one value per interior pixel) spans the whole image: a block's interior is the
    same arithmetic on the same neighbours as the whole image's, and the map's mean is taken once, over the whole
    map, so the score is the unblocked one to the last digit (tested). Any float dtype goes in (a float32 view of
    the window is upcast a block at a time). On a CPU the filter is scipy's `correlate1d` in float64 (scikit-image
    itself also filters the border and keeps more temporaries: 1.2 s against 0.36 s for a 9000 x 400 image on one
    thread, unblocked). On a GPU (or with use_torch=True) it is two 'valid' torch convolutions on `device`
    (equal to 1e-12). gt_filtered: the ground truth's filtered interior (`gt_filtered_interior`), which scipy then
    need not recompute (the torch path ignores it).
    """
    n_rows, n_cols = np.shape(gt_image)
    if min(n_rows, n_cols) < 2 * SSIM_RADIUS + 1 or not (np.isfinite(data_range) and data_range > 0):
        return ssim_image(gt_image, pred_image, data_range)  # small or flat: scikit-image's rules
    use_torch = not device.startswith("cpu") if use_torch is None else use_torch
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2  # K1, K2 of Wang et al.
    ssim_map = np.empty((n_rows - 2 * SSIM_RADIUS, n_cols - 2 * SSIM_RADIUS))
    for rows, block in _row_blocks(n_rows, n_cols, block_values, use_torch):
        if use_torch:
            ssim_map[rows] = _ssim_block_torch(gt_image[block], pred_image[block], c1, c2, device)
            continue
        gt_side = _filtered_scipy(gt_image[block]) if gt_filtered is None else (gt_filtered[0][rows],
                                                                                gt_filtered[1][rows])
        ssim_map[rows] = _ssim_formula(*gt_side, *_filtered_scipy(pred_image[block], gt_image[block]), c1, c2)
    return float(ssim_map.mean())


def gt_filtered_interior(gt_image: Any, block_values: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The interior of the ground-truth image's local means (of values, of squares), float64: the half of the
    kinograph SSIM that depends on the ground truth alone, which a window's later runs can reuse. Computed by the
    same blocks and arithmetic as `ssim_interior`'s, so a score from it is the same to the last digit."""
    n_rows, n_cols = np.shape(gt_image)
    out = (np.empty((n_rows - 2 * SSIM_RADIUS, n_cols - 2 * SSIM_RADIUS)), np.empty((n_rows - 2 * SSIM_RADIUS,
                                                                                     n_cols - 2 * SSIM_RADIUS)))
    for rows, block in _row_blocks(n_rows, n_cols, block_values, False):
        out[0][rows], out[1][rows] = _filtered_scipy(gt_image[block])
    return out


def _row_blocks(n_rows: int, n_cols: int, block_values: int | None, use_torch: bool):
    """(interior rows, image rows with the window's halo) of each block of an image."""
    if block_values is None:
        block_values = SSIM_BLOCK_VALUES["gpu" if use_torch else "cpu"]
    step = max(4 * SSIM_RADIUS, block_values // n_cols)  # a long image still gets blocks taller than their halo
    n_interior = n_rows - 2 * SSIM_RADIUS
    for lo in range(0, n_interior, step):
        hi = min(lo + step, n_interior)
        yield slice(lo, hi), slice(lo, hi + 2 * SSIM_RADIUS)


def _valid_filter(image: np.ndarray) -> np.ndarray:
    """The interior of the separable Gaussian filter: rows first, then the columns of the interior rows alone; per
    pixel the arithmetic of filtering the whole image along both axes."""
    r = SSIM_RADIUS
    return correlate1d(correlate1d(image, SSIM_TAPS, axis=0)[r:-r], SSIM_TAPS, axis=1)[:, r:-r]


def _filtered_scipy(rows: Any, other_rows: Any | None = None) -> tuple[np.ndarray, ...]:
    """Local means of a block of rows: (u, u of squares), and with `other_rows` also u of the product."""
    a = np.asarray(rows, dtype=np.float64)
    if other_rows is None:
        return _valid_filter(a), _valid_filter(a * a)
    b = np.asarray(other_rows, dtype=np.float64)
    return _valid_filter(a), _valid_filter(a * a), _valid_filter(a * b)


def _ssim_block_torch(gt_rows: Any, pred_rows: Any, c1: float, c2: float, device: str) -> np.ndarray:
    """The SSIM map of a block of rows by two 'valid' torch convolutions on `device`, back on the host."""
    images = torch.as_tensor(np.stack((np.asarray(gt_rows, dtype=np.float64), np.asarray(pred_rows, dtype=np.float64))),
                             device=device)
    a_t, b_t = images[0], images[1]
    kernel = torch.as_tensor(SSIM_TAPS, device=device)
    filtered = torch.stack((a_t, b_t, a_t * a_t, b_t * b_t, a_t * b_t)).unsqueeze(1)
    filtered = torch.nn.functional.conv2d(filtered, kernel.view(1, 1, -1, 1))
    ux, uy, uxx, uyy, uxy = torch.nn.functional.conv2d(filtered, kernel.view(1, 1, 1, -1)).squeeze(1)
    numerator = (2 * ux * uy + c1) * (2 * (uxy - ux * uy) + c2)
    denominator = (ux * ux + uy * uy + c1) * ((uxx - ux * ux) + (uyy - uy * uy) + c2)
    return (numerator / denominator).cpu().numpy()


def _ssim_formula(ux: np.ndarray, uxx: np.ndarray, uy: np.ndarray, uyy: np.ndarray, uxy: np.ndarray, c1: float,
                  c2: float) -> np.ndarray:
    """Wang et al.'s SSIM map from the local means, in place on a few block-sized temporaries. The same float
    operations in the same order as
    (2·ux·uy + c1)(2(uxy − ux·uy) + c2) / ((ux² + uy² + c1)((uxx − ux²) + (uyy − uy²) + c2)), so the same bits."""
    numerator = np.multiply(2, ux)
    numerator *= uy
    numerator += c1
    ux_uy = np.multiply(ux, uy)
    covariance = np.subtract(uxy, ux_uy, out=ux_uy)
    covariance *= 2
    covariance += c2
    numerator *= covariance
    ux2, uy2 = np.multiply(ux, ux), np.multiply(uy, uy)
    denominator = np.add(ux2, uy2)
    denominator += c1
    variances = np.subtract(uxx, ux2, out=ux2)
    variances += np.subtract(uyy, uy2, out=uy2)
    variances += c2
    denominator *= variances
    numerator /= denominator
    return numerator


def grid_particles(positions: np.ndarray, values: np.ndarray, grid: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Bin particles into a grid×grid image by averaging the values of the particles in each cell.

    positions: (N, 2) as (x, y); values: (N, C). The grid spans the particles' bounding box; row = y, column = x.
    Returns (images (C, grid, grid) with NaN in empty cells, occupied-cell mask (grid, grid)). Deterministic and
    cheap (one bincount per component), unlike the reference's griddata interpolation.
    """
    positions = np.asarray(positions, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    cells = np.zeros((positions.shape[0], 2), dtype=np.int64)
    for axis in range(2):
        coordinate = positions[:, axis]
        low, high = float(coordinate.min()), float(coordinate.max())
        scale = grid / (high - low) if high > low else 0.0
        cells[:, axis] = np.clip(((coordinate - low) * scale).astype(np.int64), 0, grid - 1)
    flat = cells[:, 1] * grid + cells[:, 0]
    counts = np.bincount(flat, minlength=grid * grid).astype(np.float64)
    mask = counts > 0
    images = np.full((values.shape[1], grid * grid), np.nan)
    for component in range(values.shape[1]):
        sums = np.bincount(flat, weights=values[:, component], minlength=grid * grid)
        images[component, mask] = sums[mask] / counts[mask]
    return images.reshape(-1, grid, grid), mask.reshape(grid, grid)


def ssim_per_component(gt: Any, pred: Any, positions: Any, grid: int = 64) -> list[float]:
    """SSIM per component of the middle frame (T // 2), gridded to grid×grid by per-cell averaging.

    Empty cells are filled with the ground-truth image's mean in *both* images (so the fill carries no
    information from the prediction) and excluded from the average of the SSIM map.
    positions: (T, N, 2) or the middle frame's (N, 2).
    """
    if grid < MIN_GRID:
        raise ValueError(f"grid must be at least {MIN_GRID} cells for an {SSIM_MAX_WINDOW}-pixel SSIM window, got {grid}")
    gt_values, pred_values = as_field_pair(gt, pred, float64=False)  # grid_particles upcasts the one frame it reads
    n_frames, n_particles, _ = gt_values.shape
    frame = middle_frame(n_frames)
    frame_xy = frame_positions(positions, n_frames, n_particles)
    gt_images, mask = grid_particles(frame_xy, gt_values[frame], grid)
    pred_images, _ = grid_particles(frame_xy, pred_values[frame], grid)
    scores = []
    for gt_image, pred_image in zip(gt_images, pred_images):
        fill = gt_image[mask].mean()
        gt_image[~mask] = fill
        pred_image[~mask] = fill
        scores.append(ssim_image(gt_image, pred_image, mask=mask))
    return scores


def kinograph_r2(gt: Any, pred: Any) -> float:
    """Mean over components of the mean over frames of R² across particles (the reference's kinograph R²).

    Each component is a particles × frames image; every frame (column) is scored with R² about that frame's
    mean, which isolates spatial fidelity from the temporal trend. Frames where all particles share one value
    are undefined and skipped (the reference scored them 0). No slope correction.
    """
    gt_values, pred_values = as_field_pair(gt, pred, float64=False)
    sums = [kinograph_frame_sums(g, p) for g, p in frame_chunks(gt_values, pred_values)]
    return kinograph_r2_from_sums(torch.cat(sums, dim=1).cpu().numpy())


def kinograph_frame_sums(gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """(3, t, C): per frame and component, SS_res and SS_tot across particles, and 1 where the frame's ground
    truth is not constant, for float64 chunks of whole frames (t, N, C)."""
    centred = gt - gt.mean(dim=1, keepdim=True)
    residual = pred - gt
    low, high = torch.aminmax(gt, dim=1)  # one pass: a third of amin and amax apart on a CPU, the same values
    defined = high != low
    return torch.stack([(residual * residual).sum(dim=1), (centred * centred).sum(dim=1), defined.to(gt.dtype)])


def kinograph_r2_from_sums(sums: np.ndarray) -> float:
    """The kinograph R² from `kinograph_frame_sums` of every frame, concatenated along frames: (3, T, C)."""
    ss_res, ss_tot, defined = sums[0], sums[1], sums[2] > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        per_frame = 1.0 - ss_res / np.where(defined, ss_tot, 1.0)
    # Undefined frames (and components without a defined frame) are left out; a non-finite prediction is not.
    per_component = [per_frame[defined[:, c], c].mean() for c in range(per_frame.shape[1]) if defined[:, c].any()]
    return float(np.mean(per_component)) if per_component else float("nan")


#: the ground truth's filtered kinograph images are kept (`KinographReference`) up to this size: float64, two images
#: per component, 16 bytes per value (4x the float32 window; 52 MB for F at 100 frames of 9000 particles)
KINOGRAPH_REFERENCE_MAX_BYTES = 128 * 2**20


@dataclass(frozen=True)
class KinographReference:
    """The ground-truth side of the kinograph SSIM, the same for every run on one window: per component the data
    range and, for images up to KINOGRAPH_REFERENCE_MAX_BYTES, the filtered interiors (`gt_filtered_interior`),
    which save 40 % of the score on a CPU. Kept with a cached window (`window_cache.derived`), so a multirun's later
    jobs pay only the prediction's side."""

    shape: tuple[int, ...]
    data_ranges: tuple[float, ...]
    filtered: tuple[tuple[np.ndarray, np.ndarray], ...] | None = None


def filtered_interior_shape(shape: tuple[int, ...], max_bytes: int = KINOGRAPH_REFERENCE_MAX_BYTES
                            ) -> tuple[int, int] | None:
    """The shape of each filtered interior a `KinographReference` of a (T, N, C) ground truth keeps (two per
    component, float64); None where it keeps none (an image too small for the window, or over max_bytes)."""
    n_frames, n_particles, n_components = shape
    if min(n_frames, n_particles) <= 2 * SSIM_RADIUS:
        return None
    interior = (n_particles - 2 * SSIM_RADIUS, n_frames - 2 * SSIM_RADIUS)
    return interior if 16 * interior[0] * interior[1] * n_components <= max_bytes else None


def kinograph_reference(gt: Any, keep_filtered: bool = True,
                        max_bytes: int = KINOGRAPH_REFERENCE_MAX_BYTES) -> KinographReference:
    """The `KinographReference` of a (T, N, C) ground truth; keep_filtered=False (a GPU scores with torch) or an
    image over max_bytes keeps the data ranges alone."""
    gt_values = as_field(gt, "gt", float64=False)
    images = [gt_values[:, :, c].T for c in range(gt_values.shape[2])]
    filtered = None
    if keep_filtered and filtered_interior_shape(gt_values.shape, max_bytes) is not None:
        filtered = tuple(gt_filtered_interior(image) for image in images)
    ranges = tuple(float(image.max()) - float(image.min()) for image in images)  # in float64, as ssim_image takes it
    return KinographReference(gt_values.shape, ranges, filtered)


def kinograph_ssim(gt: Any, pred: Any, device: str = "cpu", use_torch: bool | None = None,
                   reference: KinographReference | None = None) -> float:
    """Mean over components of the SSIM of the particles × frames image, data_range from the GT image
    (`ssim_interior` on `device`: scipy on a CPU, torch on a GPU or with use_torch=True). reference: the ground
    truth's `kinograph_reference`, computed here when not given; the score is the same either way."""
    gt_values, pred_values = as_field_pair(gt, pred, float64=False)  # each image is upcast a block at a time
    if reference is None:
        reference = kinograph_reference(gt_values, keep_filtered=False)
    if reference.shape != gt_values.shape:
        raise ValueError(f"kinograph reference of shape {reference.shape} for ground truth of shape {gt_values.shape}")
    scores = []
    for c in range(gt_values.shape[2]):
        gt_filtered = reference.filtered[c] if reference.filtered is not None else None
        scores.append(ssim_interior(gt_values[:, :, c].T, pred_values[:, :, c].T, reference.data_ranges[c], device,
                                    use_torch, gt_filtered=gt_filtered))
    return nanmean(scores)
