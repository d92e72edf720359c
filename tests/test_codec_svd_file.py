"""The quantised SVD as a real file (mpm_inr.codec.svd_file): the same container as ours, decoded at any t, and
refused in one line where its parts do not fit its window."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mpm_inr.codec import CodecError, format, load
from mpm_inr.codec.__main__ import main as codec_main
from mpm_inr.codec.quantise import dequantise_tensor, quantise_tensor
from mpm_inr.codec.svd_baseline import bare_window, quantised_svd, quantised_svd_holdout
from mpm_inr.codec.svd_file import SVDParts
from mpm_inr.codec.window_meta import window_section
from mpm_inr.metrics.interpolate import interpolate


def _window(seed: int = 0) -> np.ndarray:
    """(T, N, C) = (30, 40, 2): smooth in time, rank 2, off-centre components."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, 30)[:, None]
    flat = np.hstack([np.sin(2 * t), t ** 2]) @ rng.normal(size=(2, 80))
    return (flat.reshape(30, 40, 2) + [1.0, -3.0]).astype(np.float32)


def _named_window(values: np.ndarray, held_out: np.ndarray | None = None) -> dict:
    mask = np.zeros(values.shape[0], dtype=bool) if held_out is None else held_out
    return window_section("Jp", 4950, values.shape[0], values.shape[1], values.shape[2], mask, 1.0)


def test_the_rival_decodes_from_its_file_at_every_frame_and_between_frames(tmp_path):
    """What the search scored is what the file decodes to; between two frames the temporal factors are
    interpolated linearly; the file's window names its frames and field."""
    values = _window()
    point = quantised_svd(values, 0.999, window=_named_window(values))
    path = tmp_path / "rival.mpmc"
    assert point.write(path) == point.n_bytes
    model = load(path)
    np.testing.assert_allclose(model.decode_window(), point.decode(values.shape[1]), rtol=1e-6, atol=1e-6)
    assert model.frames[0] == 4950 and model.meta["window"]["field"] == "Jp"
    between = model.predict([4950.25, 4960.0])
    frames = model.predict([4950, 4951])
    np.testing.assert_allclose(between[0], 0.75 * frames[0] + 0.25 * frames[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(between[1], model.predict([4960])[0])
    with pytest.raises(CodecError, match="must lie in the window"):
        model.predict([4949.5])


def test_a_held_out_rival_file_interpolates_its_fitted_frames_as_it_names(tmp_path):
    """A file fitted on the training frames alone holds U at those and decodes the held-out frames by the
    interpolation it names (cubic here), as the held-out rival's search scored them."""
    values = _window(1)
    held_out = np.zeros(30, dtype=bool)
    held_out[2:28:4] = True
    train = np.flatnonzero(~held_out)
    u = np.linalg.svd(values[train].reshape(len(train), -1) - np.tile([1.0, -3.0], 40), full_matrices=False)[0][:, :2]
    stored_u = quantise_tensor(u.T, 8)
    ints = np.arange(160, dtype=np.int16).reshape(2, 80) - 80
    parts = SVDParts(stored_u, ints, 0.01, np.array([1.0, -3.0], np.float32), "cubic")
    meta, blobs = parts.contents(_named_window(values, held_out), transposed=True)
    assert meta["encoding"]["interpolation"] == "cubic" and meta["window"]["holdout_every"] == 4
    format.write(tmp_path / "held_out.mpmc", meta, blobs)
    model = load(tmp_path / "held_out.mpmc")
    temporal = dequantise_tensor(stored_u).T.astype(np.float64)
    expected = interpolate(train.astype(float), temporal, np.flatnonzero(held_out).astype(float), "cubic") @ (
        ints * 0.01) + np.tile([1.0, -3.0], 40)
    got = model.predict(4950 + np.flatnonzero(held_out))
    np.testing.assert_allclose(got.reshape(got.shape[0], -1), expected, rtol=1e-5, atol=1e-5)


def test_the_held_out_rival_is_sized_as_the_file_it_would_write():
    """Its bytes are its real file's in the interpolation it keeps, within the budget."""
    values = _window(2)
    test = np.arange(2, 28, 4)
    train = np.setdiff1d(np.arange(30), test)
    point = quantised_svd_holdout(values, train, test, 900)
    assert point is not None and point.n_bytes <= 900
    named = quantised_svd_holdout(values, train, test, 900, window=bare_window(30, 40, 2, np.isin(np.arange(30),
                                                                                                   test)))
    assert (named.rank, named.bits, named.n_bytes) == (point.rank, point.bits, point.n_bytes)


@pytest.mark.parametrize("damage", ["codes", "basis", "centre", "interpolation", "missing"])
def test_a_rival_file_whose_parts_do_not_fit_its_window_is_refused_in_one_line(damage, tmp_path):
    values = _window()
    point = quantised_svd(values, 0.99, window=_named_window(values))
    meta, blobs = point.parts.contents(point.window, transposed=False)
    encoding = meta["encoding"]
    if damage == "codes":
        blobs["codes"] = blobs["codes"][:-encoding["codes"]["shape"][1]]
        encoding["codes"]["shape"][0] -= 1
    elif damage == "basis":
        meta["window"]["n_frames"] += 1
    elif damage == "centre":
        encoding["centre"] = encoding["centre"] + [0.0]
    elif damage == "interpolation":
        encoding["interpolation"] = "quintic"
    else:
        del encoding["step"]
    path = tmp_path / "bad.mpmc"
    format.write(path, meta, blobs)
    with pytest.raises(CodecError, match="inconsistent") as err:
        load(path)
    assert "\n" not in str(err.value)


def test_the_cli_reads_and_decodes_a_rival_file(tmp_path, capsys):
    values = _window()
    point = quantised_svd(values, 0.999, window=_named_window(values))
    path = tmp_path / "rival.mpmc"
    point.write(path)
    assert codec_main(["info", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "svd" and info["inr_type"] is None and info["bytes"] == point.n_bytes
    assert codec_main(["decode", str(path), "-o", str(tmp_path / "out"), "--t", "4950.5"]) == 0
    decoded = np.load(tmp_path / "out" / "Jp.npy")
    np.testing.assert_allclose(decoded[0], load(path).predict([4950.5])[0])
