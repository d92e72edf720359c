"""Export to / import from MPM_pytorch's single-array layout `generated_data_0.npy` (frames, particles, 21).

Columns: 0 particle index, 1-2 x, 3-4 v, 5-8 C (row-major), 9-12 F (row-major), 13 Jp, 14 type, 15 mass,
16-19 S (row-major), 20 object id. Both directions stream in chunks of frames through memory maps, so a 7 GB
file is never loaded at once. CLI:

    python -m mpm_inr.data.reference_layout export data/discs_3types_seed0 out.npy [--start S --stop E]
    python -m mpm_inr.data.reference_layout import generated_data_0.npy --root data --name discs_3types --seed 42
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import uuid
from pathlib import Path

import numpy as np

from mpm_inr.data.dataset import (
    DatasetWriter,
    NpyChunkWriter,
    check_free_space,
    dataset_dir,
    ensure_writable_root,
    open_dataset,
)
from mpm_inr.errors import DatasetError, exit_code_of

N_COLUMNS = 21
# per-frame field -> columns in the reference layout (components flattened row-major)
FRAME_COLUMNS = {"x": (1, 3), "v": (3, 5), "C": (5, 9), "F": (9, 13), "Jp": (13, 14), "S": (16, 20)}
PARTICLE_COLUMNS = {"type": 14, "mass": 15, "object_id": 20}
INDEX_COLUMN = 0
CHUNK_BYTES = 256 * 2**20


def _chunk_frames(n_particles: int) -> int:
    return max(1, CHUNK_BYTES // (4 * N_COLUMNS * max(1, n_particles)))


def export_reference(dataset_path: str | os.PathLike, out_file: str | os.PathLike, start: int | None = None,
                     stop: int | None = None) -> Path:
    """Write frames [start, stop) of a dataset as one (frames, particles, 21) float32 .npy (atomically)."""
    ds = open_dataset(dataset_path)
    T, N = ds.n_frames, ds.n_particles
    s0, s1, _ = slice(start, stop).indices(T)
    if s1 <= s0:
        raise DatasetError(f"empty frame range [{start}, {stop}) for a dataset of {T} frames; "
                           f"pick 0 <= start < stop <= {T}")
    out = Path(out_file)
    ensure_writable_root(out.parent)
    check_free_space(out.parent, (s1 - s0) * N * N_COLUMNS * 4, f"export to {out}")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    out_writer = None
    try:
        out_writer = NpyChunkWriter(tmp, (s1 - s0, N, N_COLUMNS))
        per_particle = {k: ds.per_particle(k) for k in PARTICLE_COLUMNS}
        index = np.arange(N, dtype=np.float32)
        K = _chunk_frames(N)
        for a in range(s0, s1, K):
            b = min(a + K, s1)
            block = np.empty((b - a, N, N_COLUMNS), dtype=np.float32)
            block[:, :, INDEX_COLUMN] = index
            for name, (c0, c1) in FRAME_COLUMNS.items():
                block[:, :, c0:c1] = ds.read(name, a, b).reshape(b - a, N, c1 - c0)
            for name, col in PARTICLE_COLUMNS.items():
                block[:, :, col] = per_particle[name]
            out_writer.write(a - s0, block)
        out_writer.close()
        os.replace(tmp, out)
    except BaseException:
        if out_writer is not None:
            out_writer.discard()
        tmp.unlink(missing_ok=True)
        raise
    return out


def import_reference(npy_file: str | os.PathLike, target: str | os.PathLike, scenario_name: str | None = None,
                     seed: int | None = None, dt: float = 7.5e-5, overwrite: bool = False) -> Path:
    """Convert a (frames, particles, 21) array into a dataset directory `target` (atomically).

    Type, mass and object id are taken from frame 0. The dataset is marked `source: imported`, so
    `ensure_dataset` uses it as it is for its scenario name and seed.
    """
    src = Path(npy_file)
    target = Path(target)
    if not src.is_file():
        raise DatasetError(f"no file {src}; pass the path of a reference generated_data_0.npy")
    try:
        arr = np.load(src, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise DatasetError(f"{src} is not a readable .npy file ({e}); check the path or re-export it") from None
    if arr.ndim != 3 or arr.shape[2] != N_COLUMNS or arr.shape[0] < 1:
        raise DatasetError(f"{src} has shape {arr.shape}; the reference layout is (frames, particles, "
                           f"{N_COLUMNS})")
    if target.exists() and not overwrite:
        raise DatasetError(f"{target} already exists; delete it or pass --overwrite")
    T, N = arr.shape[0], arr.shape[1]
    with DatasetWriter(target, T, N) as writer:
        K = _chunk_frames(N)
        for a in range(0, T, K):
            b = min(a + K, T)
            block = np.asarray(arr[a:b], dtype=np.float32)
            for name, (c0, c1) in FRAME_COLUMNS.items():
                shape = writer.frames[name].shape[2:]  # NpyChunkWriter.shape
                writer.write_frames(name, a, block[:, :, c0:c1].reshape(b - a, N, *shape))
        first = np.asarray(arr[0], dtype=np.float32)
        for name, col in PARTICLE_COLUMNS.items():
            writer.write_particle(name, first[:, col])
        name = scenario_name or target.name
        meta = {
            "source": "imported",
            "imported_from": str(src.resolve()),
            "scenario": {"name": name, "n_frames": T, "physics": {"dt": float(dt)}},
            "seed": seed,
            "generator_version": "reference layout (MPM_pytorch generated_data_0.npy)",
            "dt": float(dt),
            "frame_time": "frame k as in the source file (the reference saves the state after k steps)",
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        return writer.commit(meta, replace=overwrite)


def load_reference_window(npy_file: str | os.PathLike, start: int, stop: int) -> np.ndarray:
    """Frames [start, stop) of a reference-layout file (memory-mapped read of that window only)."""
    return np.array(np.load(npy_file, mmap_mode="r")[start:stop])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mpm_inr.data.reference_layout",
                                description="Convert between mpm-inr datasets and MPM_pytorch's 21-column array.")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="dataset directory -> (frames, particles, 21) .npy")
    e.add_argument("dataset", help="dataset directory, e.g. data/discs_3types_seed0")
    e.add_argument("out", help="output .npy file")
    e.add_argument("--start", type=int, default=None, help="first frame (default 0)")
    e.add_argument("--stop", type=int, default=None, help="one past the last frame (default: all)")
    i = sub.add_parser("import", help="(frames, particles, 21) .npy -> dataset directory <root>/<name>_seed<k>")
    i.add_argument("npy", help="reference file, e.g. graphs_data/<dataset>/generated_data_0.npy")
    i.add_argument("--root", default="data", help="dataset root (default: data)")
    i.add_argument("--name", required=True, help="scenario name to file it under, e.g. discs_3types")
    i.add_argument("--seed", type=int, default=42, help="seed label of the directory (reference default 42)")
    i.add_argument("--dt", type=float, default=7.5e-5, help="time step of the source run (default 7.5e-5)")
    i.add_argument("--overwrite", action="store_true", help="replace an existing dataset directory")
    args = p.parse_args(argv)
    return exit_code_of(lambda: _command(args))


def _command(args: argparse.Namespace) -> None:
    if args.cmd == "export":
        out = export_reference(args.dataset, args.out, args.start, args.stop)
        print(f"wrote {out}")
    else:
        if args.seed < 0:
            raise DatasetError(f"--seed must be a non-negative integer, got {args.seed}")
        out = import_reference(args.npy, dataset_dir(args.root, args.name, args.seed), args.name, args.seed,
                               args.dt, args.overwrite)
        print(f"wrote {out} (use it with scenario={args.name} data.seed={args.seed})")


if __name__ == "__main__":
    sys.exit(main())
