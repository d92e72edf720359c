"""Damaged codec files: every random truncation, bit flip and overwritten header byte of a real file is refused
with a one-line CodecError; none decodes to numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpm_inr.bench.compose import compose_train_config
from mpm_inr.codec import CodecError, encode_model, load
from mpm_inr.codec.rundir import load_run
from mpm_inr.training.run import run_training

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]
TRIALS = 60


@pytest.fixture(scope="module")
def codec_file(data_root, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("codec_run")
    overrides = ["scenario=discs_small", f"data.root={data_root}", "data.n_training_frames=20", "trainer=cpu",
                 "logger=none", "train.total_steps=20", "train.steps_per_call=10", "train.eval_every=10",
                 "outputs.plot=false", "field=C", "model.basis_groups=object"]
    run_training(compose_train_config(overrides), run_dir, overrides, progress=False)
    cfg, window, network = load_run(run_dir)
    path = run_dir / "model.mpmc"
    encode_model(network, cfg["model"], window, 1.0, path)
    return path


def _refusal(path: Path) -> str | None:
    """The one-line error a damaged file gets, or None if it decoded (a failure of the format's checks)."""
    try:
        load(path).decode_window()
    except CodecError as err:
        return str(err)
    return None


def test_damaged_codec_files_are_refused(codec_file, tmp_path, rng, fault_row):
    data = codec_file.read_bytes()
    damaged = []
    for _ in range(TRIALS):
        cut = rng.randrange(len(data))
        damaged.append(("truncated", data[:cut]))
        at, bit = rng.randrange(len(data)), rng.randrange(8)
        flipped = bytearray(data)
        flipped[at] ^= 1 << bit
        damaged.append(("bit flip", bytes(flipped)))
    header = bytearray(data)
    header[rng.randrange(22)] = rng.randrange(256) ^ data[0]  # somewhere in magic, version or lengths
    damaged.append(("header byte", bytes(header)))
    results = []
    for kind, blob in damaged:
        bad = tmp_path / "bad.mpmc"
        bad.write_bytes(blob)
        message = _refusal(bad) if blob != data else "unchanged"
        results.append((kind, message))
    undetected = [kind for kind, message in results if message is None or "\n" in message]
    fault_row("damaged codec file (random truncation, bit flip, header byte)", trials=len(results),
              survived=len(results) - len(undetected),
              notes=f"load() raises a one-line CodecError before decoding any number, e.g. '{results[0][1]}'"
                    + (f"; DECODED: {undetected}" if undetected else ""))
    assert not undetected
