"""`python -m mpm_inr.codec encode RUN_DIR | encode-window DATASET | decode FILE | info FILE`: a trained model
(or a dataset's window, with no model) as bytes on disk."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mpm_inr.codec import format
from mpm_inr.codec.decode import load
from mpm_inr.codec.encode import (
    BASIS_KINDS,
    COMPONENT_LAYOUTS,
    WINDOW_MAX_RANK,
    CodecSettings,
    check_max_rank,
    encode_model,
    encode_window,
)
from mpm_inr.codec.rundir import load_run
from mpm_inr.config.fields import FIELDS
from mpm_inr.data.dataset import open_dataset
from mpm_inr.data.window import FieldWindow
from mpm_inr.errors import UserError, exit_code_of
from mpm_inr.threads import AUTO, check_threads, pinned_threads, resolve_threads

DEFAULT_NAME = "model.mpmc"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpm_inr.codec")
    sub = parser.add_subparsers(dest="command", required=True)
    enc = sub.add_parser("encode", help="write a run's model as one file")
    enc.add_argument("run_dir")
    enc.add_argument("-o", "--out", help=f"file to write (default RUN_DIR/{DEFAULT_NAME})")
    enc.add_argument("--target-r2", type=float, default=None, help="decoded R² to reach (default: keep the model's)")
    enc.add_argument("--weight-bits", default=",".join(map(str, CodecSettings.weight_bits)),
                     help="candidate weight precisions (32, 16: floats; 2..15: per-row integers), comma separated")
    enc.add_argument("--basis", choices=BASIS_KINDS, default=CodecSettings.basis,
                     help="a bilinear model's temporal basis: its network, a Chebyshev series in t fitted to it, "
                          "or whichever file is smaller (auto)")
    _components_option(enc, "also try a file that codes each particle's components apart (both), never (shared), "
                            "or so, searched once on windows of up to 100 frames (auto)")
    enc.add_argument("--data-root", default=None, help="where the run's dataset lives, if it moved")
    _threads_option(enc)
    win = sub.add_parser("encode-window", help="write a dataset's window as one file, with no model trained: "
                         "each particle's components apart over the window's own curves")
    win.add_argument("dataset", help="a dataset directory (generate.py's output)")
    win.add_argument("--field", required=True, choices=sorted(FIELDS))
    win.add_argument("--frames", type=int, required=True, help="the window's frames, about the simulation's middle "
                     "(as training's data.n_training_frames)")
    win.add_argument("--holdout-every", type=int, default=0, help="hold out every k-th frame (0: none)")
    win.add_argument("--target-r2", type=float, required=True, help="decoded R² to reach on the training frames")
    win.add_argument("--max-rank", type=int, default=WINDOW_MAX_RANK, help="most curves the file may keep")
    _components_option(win, "store the constant particle-components by value only (auto, on windows of up to "
                            "100 frames) or both ways, keeping the smaller file (both)")
    win.add_argument("-o", "--out", required=True, help="file to write")
    _threads_option(win)
    dec = sub.add_parser("decode", help="a file back to the window's arrays")
    dec.add_argument("file")
    dec.add_argument("-o", "--out", required=True, help="directory for <field>.npy (T, N, C) and frames.npy")
    dec.add_argument("--t", type=float, action="append", help="absolute frame time(s), fractional allowed "
                     "(default: every frame of the window)")
    _threads_option(dec)
    info = sub.add_parser("info", help="print a file's header and metadata")
    info.add_argument("file")
    args = parser.parse_args(argv)
    return exit_code_of(lambda: _command(args))


def _components_option(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--components", choices=COMPONENT_LAYOUTS, default=CodecSettings.components, help=text)


def _threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", default=AUTO, help="CPU threads, torch's and numpy's BLAS alike: auto (as "
                        "training's trainer.cpu_threads=auto), an integer up to the cores available, or null "
                        "(the libraries' own choice)")


def _threads(value: str) -> int | None:
    """--threads as mpm_inr.threads reads a setting (one line where it is out of range)."""
    if value in (AUTO, "null"):
        return resolve_threads(None if value == "null" else AUTO)
    try:
        return resolve_threads(check_threads(int(value), "--threads", allow_auto=True))
    except ValueError:
        raise UserError(f"--threads={value!r} must be auto, null or an integer") from None


def _command(args: argparse.Namespace) -> None:
    if args.command == "info":
        print(json.dumps(_info(args.file), indent=1))
        return
    with pinned_threads(_threads(args.threads)):  # unpinned, OpenBLAS spins a thread per core beside torch's
        _coded(args)


def _coded(args: argparse.Namespace) -> None:
    if args.command in ("encode", "encode-window"):
        encoded = _encode(args) if args.command == "encode" else _encode_window(args)
        print(json.dumps(encoded, indent=1, default=str))
    else:
        _decode(args)


def _encode(args) -> dict:
    try:
        bits = [int(b) for b in args.weight_bits.split(",") if b.strip()]
    except ValueError:
        raise UserError(f"--weight-bits={args.weight_bits!r} must be comma-separated integers, e.g. 16,8,4") from None
    settings = CodecSettings.from_config({"target_r2": args.target_r2, "weight_bits": bits,
                                          "basis": args.basis, "components": args.components})
    cfg, window, network = load_run(args.run_dir, args.data_root)
    out = Path(args.out) if args.out else Path(args.run_dir) / DEFAULT_NAME
    return encode_model(network, cfg["model"], window, cfg["data"]["t_period"], out, settings)


def _encode_window(args) -> dict:
    settings = CodecSettings.from_config({"target_r2": args.target_r2, "components": args.components})
    if args.holdout_every < 0:
        raise UserError(f"--holdout-every {args.holdout_every} must be 0 (none) or a positive k")
    check_max_rank(args.max_rank)
    window = FieldWindow.from_dataset(open_dataset(args.dataset), args.field, args.frames, args.holdout_every)
    encoded = encode_window(window, Path(args.out), settings, args.max_rank)
    if not encoded["target_met"]:
        print(f"note: R² {args.target_r2} not reached: the best file of at most {args.max_rank} curves decodes to "
              f"{encoded['r2']:.6f}; raise --max-rank", file=sys.stderr)
    return encoded


def _decode(args) -> None:
    model = load(args.file)
    frames = np.asarray(args.t, dtype=np.float64) if args.t else model.frames
    values = model.predict(frames)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / f"{model.meta['window']['field']}.npy", values)
        np.save(out / "frames.npy", frames)
    except OSError as err:
        raise format.CodecError(f"cannot write to {out}: {err.strerror}; pass a writable --out") from None
    print(f"wrote {out}/{model.meta['window']['field']}.npy {values.shape} at {len(frames)} times")


def _info(path: str) -> dict:
    box = format.read(path)
    meta = box.meta
    return {"file": path, "bytes": box.n_bytes, "format_version": box.version, "kind": meta["kind"],
            "field": meta["window"]["field"], "inr_type": meta.get("model", {}).get("name"),
            "window": {k: meta["window"][k] for k in ("start", "n_frames", "n_particles", "n_components")},
            "ratio": meta["window"]["n_frames"] * meta["window"]["n_particles"] * meta["window"]["n_components"] * 4
            / box.n_bytes,
            "encoding": {k: v for k, v in meta["encoding"].items() if not isinstance(v, dict)},
            "bytes_by_part": box.parts,
            "raw_bytes_by_part": {k: len(v) for k, v in box.blobs.items()},
            **{key: meta[key] for key in ("model", "source") if key in meta}}


if __name__ == "__main__":
    sys.exit(main())
