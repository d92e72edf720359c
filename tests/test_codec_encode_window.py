"""`python -m mpm_inr.codec encode-window`: a dataset's window as a file with no model trained (the split file
alone), scored from what the written file decodes to, refusing bad options in one line before it reads a frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mpm_inr.codec import CodecSettings, components, format, load
from mpm_inr.codec import encode as encode_module
from mpm_inr.codec.__main__ import main as codec_main
from mpm_inr.data.dataset import dataset_dir, open_dataset
from mpm_inr.data.window import FieldWindow
from mpm_inr.metrics import r2_score


@pytest.fixture
def dataset(data_root) -> Path:
    return dataset_dir(data_root, "discs_small", 0)


def _encoded(capsys, *args: str) -> tuple[dict, str]:
    """The report encode-window prints, and what it wrote to stderr."""
    assert codec_main(["encode-window", *args, "--threads", "1"]) == 0
    out = capsys.readouterr()
    return json.loads(out.out), out.err


def test_a_window_encodes_with_no_model_to_a_split_file_scored_from_the_file(dataset, tmp_path, capsys):
    path = tmp_path / "s.mpmc"
    report, _ = _encoded(capsys, str(dataset), "--field", "S", "--frames", "20", "--target-r2", "0.99",
                         "-o", str(path))
    window = FieldWindow.from_dataset(open_dataset(dataset), "S", 20)
    model = load(path)
    decoded = model.decode_window()
    assert report["bytes"] == path.stat().st_size and report["ratio"] == window.values.size * 4 / report["bytes"]
    assert report["target_met"] and report["r2"] >= 0.99
    assert report["r2"] == pytest.approx(r2_score(window.values, decoded), abs=1e-12)
    assert report["components"] == components.PARTS and model.network is None
    box = format.read(path)
    assert "model" not in box.meta  # no model took part, and the file names none
    assert codec_main(["info", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["inr_type"] is None
    between = model.predict([float(model.frames[0]) + 2.5])
    assert between.shape == (1,) + window.values.shape[1:] and np.isfinite(between).all()


def test_a_window_with_held_out_frames_is_scored_there_too(dataset, tmp_path, capsys):
    report, _ = _encoded(capsys, str(dataset), "--field", "C", "--frames", "20", "--holdout-every", "4",
                         "--target-r2", "0.99", "-o", str(tmp_path / "c.mpmc"))
    window = FieldWindow.from_dataset(open_dataset(dataset), "C", 20, 4)
    held = window.test_frames
    decoded = load(tmp_path / "c.mpmc").predict(window.frames[held])
    assert report["target_met"] and report["holdout_r2"] == pytest.approx(r2_score(window.values[held], decoded),
                                                                          abs=1e-12)


def test_the_window_file_is_the_split_file_the_model_encoder_searches(dataset, tmp_path):
    """encode_window's search is encode_model's split search (one function, _split_files), so at a model's K·C
    curves it finds the same file the model's encoder would consider."""
    window = FieldWindow.from_dataset(open_dataset(dataset), "C", 20)
    settings = CodecSettings(target_r2=0.99)
    report = encode_module.encode_window(window, tmp_path / "w.mpmc", settings, max_rank=16)
    gt = window.values.astype(np.float64)
    ss_tot = float(((gt - gt.reshape(-1, 4).mean(axis=0)) ** 2).sum())
    constant = encode_module.constant_particles(window.values)
    found = encode_module._split_files({"name": "lagrangian"}, window, 1.0, settings, ss_tot, constant, 16)
    sizes = sorted(searched.finished().n_bytes if hasattr(searched, "finished") else searched.n_bytes
                   for _, searched in found)
    # the model's config is a few bytes of metadata more; the arrays are the same
    assert 0 < sizes[0] - report["bytes"] < 64


@pytest.mark.parametrize(("options", "message"), [
    (["--max-rank", "0"], "--max-rank 0 must be at least 1"),
    (["--holdout-every", "-1"], "--holdout-every -1 must be 0"),
    (["--target-r2", "1.5"], "codec.target_r2=1.5 must lie in (0, 1)"),
])
def test_bad_options_are_one_line_and_write_nothing(dataset, tmp_path, capsys, options, message):
    args = {"--field": "S", "--frames": "20", "--target-r2": "0.99", "--max-rank": "8", "--holdout-every": "0"}
    args.update(dict(zip(options[::2], options[1::2], strict=True)))
    path = tmp_path / "x.mpmc"
    argv = ["encode-window", str(dataset), *[x for kv in args.items() for x in kv], "-o", str(path)]
    assert codec_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and not path.exists()


def test_a_target_beyond_the_rank_cap_keeps_the_best_file_and_says_to_raise_it(dataset, tmp_path, capsys):
    """As encode_model keeps the best decodable file where none reaches the target, and says how far."""
    report, err = _encoded(capsys, str(dataset), "--field", "S", "--frames", "20", "--target-r2", "0.9999999",
                           "--max-rank", "1", "-o", str(tmp_path / "x.mpmc"))
    assert not report["target_met"] and report["r2"] < 0.9999999
    assert "not reached" in err and "raise --max-rank" in err
