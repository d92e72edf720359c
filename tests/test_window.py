"""Field window: centring, held-out frames, normalisation round trip, coordinates."""

import numpy as np
import pytest
import torch

from mpm_inr.data.window import FieldWindow, holdout_mask, holdout_rule, window_bounds
from mpm_inr.errors import ConfigError, DatasetError


def test_window_is_centred_like_the_reference():
    assert window_bounds(10000, 100) == (4950, 5050)
    assert window_bounds(10000, 48) == (4976, 5024)
    assert window_bounds(1000, 1000) == (0, 1000)
    with pytest.raises(ConfigError, match="exceeds the dataset's 1000 frames"):
        window_bounds(1000, 1001)


def test_holdout_is_interior_and_interleaved():
    m = holdout_mask(10, 2)
    assert m.tolist() == [False, True, False, True, False, True, False, True, False, False]
    assert not holdout_mask(10, 0).any()


@pytest.mark.parametrize("n", [3, 4, 7, 100, 10_000])
@pytest.mark.parametrize("every", [2, 3, 4, 7])
def test_a_holdout_mask_gives_back_its_rule(n, every):
    """The codec stores a regular held-out set as its rule: whatever rule it recovers makes the same mask."""
    mask = holdout_mask(n, every)
    rule = holdout_rule(mask)
    assert (rule is None) == (not mask.any())
    if rule is not None:
        assert np.array_equal(holdout_mask(n, rule), mask)


def test_an_irregular_held_out_set_has_no_rule():
    mask = holdout_mask(20, 4)
    mask[5] = True
    assert holdout_rule(mask) is None
    assert holdout_rule(np.eye(1, 20, 19, dtype=bool)[0]) is None  # the last frame: no rule holds it out
    assert holdout_rule(np.zeros(20, dtype=bool)) is None


def _window(normalize=True, holdout=None):
    rng = np.random.default_rng(0)
    values = rng.normal([1.0, 0.0, 0.0, 1.0], [0.1, 0.01, 0.01, 0.2], size=(8, 5, 4)).astype(np.float32)
    pos = rng.random((8, 5, 2)).astype(np.float32)
    return FieldWindow.from_arrays("F", np.arange(8), values, pos, np.zeros(5), np.zeros(5), holdout, normalize)


def test_normalisation_round_trips_and_zscores_each_component():
    w = _window()
    z = w.normalize(w.values)
    assert np.allclose(z.reshape(-1, 4).mean(0), 0, atol=1e-5)
    assert np.allclose(z.reshape(-1, 4).std(0), 1, atol=1e-4)
    assert np.allclose(w.denormalize(z), w.values, atol=1e-6)
    zt = w.normalize(torch.from_numpy(w.values))
    assert torch.allclose(w.denormalize(zt), torch.from_numpy(w.values), atol=1e-6)


def test_stats_use_training_frames_only_and_raw_mode_is_identity():
    held = holdout_mask(8, 2)
    w = _window(holdout=held)
    assert np.allclose(w.mean, w.values[~held].reshape(-1, 4).mean(0), atol=1e-6)
    raw = _window(normalize=False)
    assert np.array_equal(raw.normalize(raw.values), raw.values)


def test_coordinates_share_one_normalisation():
    w = _window()
    src = w.coordinate_source(t_period=2.0, xy_period=1.0, with_positions=True)
    assert torch.allclose(src.t[[0, -1]], torch.tensor([-0.5, 0.5]))
    assert torch.allclose(src.xy, torch.from_numpy(w.positions) * 2 - 1)
    assert src.particle[0] == -1 and src.particle[-1] == 1


def test_chunked_stats_match_float64_numpy_far_from_zero():
    from mpm_inr.data.window import _component_stats

    rng = np.random.default_rng(0)
    values = (1.0 + 1e-3 * rng.standard_normal((75, 40, 4))).astype(np.float32)  # like F: identity + small strain
    values[..., 3] *= 1e4
    keep = np.ones(75, dtype=bool)
    keep[::4] = False
    mean, std = _component_stats(values, keep)
    ref = values[keep].reshape(-1, 4).astype(np.float64)
    np.testing.assert_allclose(mean, ref.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, ref.std(0), rtol=1e-9)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_finiteness_check_finds_one_bad_value(bad):
    from mpm_inr.data.window import _all_finite

    values = np.ones((10, 7, 2), dtype=np.float32)
    assert _all_finite(values) and _all_finite(np.arange(5))
    values[9, 6, 1] = bad
    assert not _all_finite(values)
    big = np.full((4, 3), np.finfo(np.float32).max, dtype=np.float32)  # finite, and its float64 sum stays finite
    assert _all_finite(big)


@pytest.mark.parametrize("array,planted,where", [
    ("F.npy", (5, 3, 1), "frame 15, particle 3, component 1"),
    ("x.npy", (6, 2, 0), "frame 16, particle 2, component 0"),
    ("type.npy", (4,), "particle 4"),
])
def test_a_non_finite_value_is_named_by_frame_and_particle(array, planted, where):
    """The error names the first bad value, not the whole window, and the fix; later NaNs do not hide it."""
    rng = np.random.default_rng(1)
    arrays = {"F.npy": rng.normal(size=(8, 5, 4)).astype(np.float32), "x.npy": rng.random((8, 5, 2)).astype(np.float32),
              "type.npy": np.zeros(5), "object_id.npy": np.zeros(5)}
    arrays[array][planted] = np.nan
    if arrays[array].ndim > 1:
        arrays[array][7, 4] = np.inf  # a later bad value: not the one reported
    with pytest.raises(DatasetError) as err:
        FieldWindow.from_arrays("F", np.arange(10, 18), arrays["F.npy"], arrays["x.npy"], arrays["type.npy"],
                                arrays["object_id.npy"], source="dataset d0")
    assert str(err.value).startswith(f"{array} of dataset d0 holds nan at {where} ")
    assert str(err.value).endswith("delete it and generate it again")
