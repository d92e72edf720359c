"""The on-disk dataset (contract 1): `data/<scenario>_seed<k>/` with meta.json and one float32 .npy per array.

Reading: `open_dataset` validates meta.json against every file (present, header shape and dtype as meta
states, file size exactly header + data, so truncation is caught) and returns an `MPMDataset` whose arrays are
memory-mapped: a 100-frame window of a 7 GB dataset reads only that window.

Writing: `DatasetWriter` pre-allocates the .npy files in a temporary directory next to the target, takes
frames in chunks, writes meta.json (`complete: true`) last and publishes the directory with one atomic
rename. A crash leaves only a hidden temporary directory that nothing ever loads.

Fingerprint: the writer hashes every array as it is written (sha256 of its raw data, no .npy header) and records
the digests in meta.json. The discs collide chaotically, so the seed alone does not name a trajectory (another
simulator version, torch build or device gives another one by mid-run); the fingerprint does. Training copies it
into each run's `dataset_provenance`, and `verify_fingerprint` recomputes it from the files.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np

from mpm_inr.errors import DatasetError

FORMAT = "mpm_inr.dataset/1"
META = "meta.json"

# name -> (per-particle shape, description, units); frame arrays are (T, N, *shape)
FRAME_FIELDS: dict[str, tuple[tuple[int, ...], str, str]] = {
    "x": ((2,), "particle position (x, y); the simulation box is [0, 1]^2", "box length"),
    "v": ((2,), "particle velocity, the one that moved the particle to x in this frame", "box length / s"),
    "C": ((2, 2), "APIC affine matrix, C[a][b] ~ dv_a/dx_b, row-major", "1 / s"),
    "F": ((2, 2), "deformation gradient (elastic part for snow; sqrt(J) I for liquid)", "1"),
    "Jp": ((), "plastic volume ratio (exactly 1 for liquid and jelly)", "1"),
    "S": ((2, 2), ("saved stress S = -dt * tau, tau = 2 mu (F - R) F^T + lambda J (J - 1) I the Kirchhoff "
                   "stress of the fixed-corotated model (as the reference saves it; symmetric)"),
          "stress x time (E = youngs_modulus, times s)"),
}
PARTICLE_FIELDS: dict[str, tuple[str, str]] = {
    "type": ("material: 0 liquid, 1 jelly, 2 snow", "1"),
    "mass": ("particle mass = p_vol * density[type], p_vol = (dx / 2)^2", "density x area"),
    "object_id": ("object (disc) label", "1"),
}
ALL_FIELDS = tuple(FRAME_FIELDS) + tuple(PARTICLE_FIELDS)
TMP_MARK = ".tmp-"
FINGERPRINT_ABOUT = ("sha256 of each array's raw data (float32, C order, without the .npy header); `sha256` hashes "
                     "the lines '<name>=<digest>' of every array in the order x, v, C, F, Jp, S, type, mass, object_id")
_READ_BYTES = 64 * 2**20


def dataset_dir(root: str | os.PathLike, scenario_name: str, seed: int) -> Path:
    """Directory of a dataset: `<root>/<scenario>_seed<k>`."""
    return Path(root) / f"{scenario_name}_seed{int(seed)}"


def array_specs(n_frames: int, n_particles: int) -> dict[str, dict[str, Any]]:
    """The `arrays` section of meta.json: shape, dtype, definition and units of every file."""
    specs: dict[str, dict[str, Any]] = {}
    for name, (shape, desc, units) in FRAME_FIELDS.items():
        specs[name] = {"shape": [n_frames, n_particles, *shape], "dtype": "float32", "per": "frame",
                       "description": desc, "units": units}
    for name, (desc, units) in PARTICLE_FIELDS.items():
        specs[name] = {"shape": [n_particles], "dtype": "float32", "per": "particle", "description": desc,
                       "units": units}
    return specs


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """(shape, dtype, fortran_order, data offset) of a .npy file, without reading the data."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        return tuple(shape), np.dtype(dtype), bool(fortran), fh.tell()


class MPMDataset:
    """A validated dataset directory. Arrays are memory-mapped; `read` returns copies of slices."""

    def __init__(self, path: Path, meta: dict) -> None:
        self.path = path
        self.meta = meta
        self._mmaps: dict[str, np.ndarray] = {}

    @property
    def n_frames(self) -> int:
        return int(self.meta["n_frames"])

    @property
    def n_particles(self) -> int:
        return int(self.meta["n_particles"])

    @property
    def dt(self) -> float | None:
        return self.meta.get("dt")

    def mmap(self, name: str) -> np.ndarray:
        """Read-only memory map of one array (no data is read until it is indexed)."""
        if name not in self.meta["arrays"]:
            raise DatasetError(f"dataset {self.path} has no array {name!r}; arrays: {', '.join(self.meta['arrays'])}")
        if name not in self._mmaps:
            self._mmaps[name] = np.load(self.path / f"{name}.npy", mmap_mode="r")
        return self._mmaps[name]

    def read(self, name: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """Frames [start, stop) of a per-frame array (all frames by default), as an in-memory copy."""
        if name not in FRAME_FIELDS:
            raise DatasetError(f"{name!r} is not a per-frame array; per-frame arrays: {', '.join(FRAME_FIELDS)}")
        return np.array(self.mmap(name)[start:stop])

    def per_particle(self, name: str) -> np.ndarray:
        """A per-particle array (type, mass, object_id), as an in-memory copy."""
        if name not in PARTICLE_FIELDS:
            raise DatasetError(f"{name!r} is not a per-particle array; per-particle arrays: "
                               f"{', '.join(PARTICLE_FIELDS)}")
        return np.array(self.mmap(name))

    def __repr__(self) -> str:
        return f"MPMDataset({str(self.path)!r}, frames={self.n_frames}, particles={self.n_particles})"


def open_dataset(path: str | os.PathLike) -> MPMDataset:
    """Open and validate a dataset directory; raises `DatasetError` (one line, names the path and the fix)."""
    path = Path(path)
    fix = f"delete {path} and generate it again"
    if not path.is_dir():
        raise DatasetError(f"no dataset directory at {path}; generate it with `python generate.py "
                           f"scenario=<name> seed=<k>`")
    meta_path = path / META
    if not meta_path.is_file():
        raise DatasetError(f"dataset {path} has no {META} (interrupted or foreign directory); {fix}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"dataset {path}: {META} is unreadable ({type(e).__name__}); {fix}") from None
    if not isinstance(meta, dict) or meta.get("complete") is not True:
        raise DatasetError(f"dataset {path} is not marked complete in {META}; {fix}")
    arrays = meta.get("arrays")
    if not isinstance(arrays, dict) or any(k not in arrays for k in ALL_FIELDS):
        missing = [k for k in ALL_FIELDS if not isinstance(arrays, dict) or k not in arrays]
        raise DatasetError(f"dataset {path}: {META} does not describe array(s) {missing}; {fix}")
    try:
        T, N = int(meta["n_frames"]), int(meta["n_particles"])
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f"dataset {path}: {META} lacks n_frames / n_particles; {fix}") from None
    expected = array_specs(T, N)
    for name in ALL_FIELDS:
        spec = arrays[name]
        want_shape, want_dtype = tuple(expected[name]["shape"]), np.dtype(expected[name]["dtype"])
        if tuple(spec.get("shape", ())) != want_shape or np.dtype(spec.get("dtype", "V")) != want_dtype:
            raise DatasetError(f"dataset {path}: {META} states {name} as {spec.get('shape')} "
                               f"{spec.get('dtype')}, inconsistent with n_frames={T}, n_particles={N}; {fix}")
        f = path / f"{name}.npy"
        if not f.is_file():
            raise DatasetError(f"dataset {path} is missing {f.name}; {fix}")
        try:
            shape, dtype, fortran, offset = _npy_header(f)
        except (OSError, ValueError) as e:
            raise DatasetError(f"dataset {path}: {f.name} is not a valid .npy file ({e}); {fix}") from None
        if shape != want_shape or dtype != want_dtype or fortran:
            raise DatasetError(f"dataset {path}: {f.name} holds {shape} {dtype}, meta.json states "
                               f"{list(want_shape)} {want_dtype}; {fix}")
        size, want_size = f.stat().st_size, offset + int(np.prod(shape)) * dtype.itemsize
        if size != want_size:
            what = "truncated" if size < want_size else "longer than its header says"
            raise DatasetError(f"dataset {path}: {f.name} is {what} ({size} of {want_size} bytes); {fix}")
    return MPMDataset(path, meta)


# ------------------------------------------------------------------------------------------------ fingerprint
def combined_digest(arrays: Mapping[str, str]) -> str:
    """The dataset's digest from its arrays' digests (FINGERPRINT_ABOUT)."""
    lines = "".join(f"{name}={arrays[name]}\n" for name in ALL_FIELDS)
    return hashlib.sha256(lines.encode()).hexdigest()


def fingerprint_record(arrays: Mapping[str, str]) -> dict[str, Any]:
    """The `fingerprint` entry of meta.json."""
    return {"sha256": combined_digest(arrays), "arrays": {name: arrays[name] for name in ALL_FIELDS},
            "about": FINGERPRINT_ABOUT}


def file_data_digest(path: Path) -> str:
    """sha256 of a .npy file's data (everything after the header), read in 64 MB blocks."""
    _, _, _, offset = _npy_header(path)
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(offset)
        while block := fh.read(_READ_BYTES):
            h.update(block)
    return h.hexdigest()


def compute_fingerprint(ds: MPMDataset) -> dict[str, Any]:
    """The fingerprint of the files as they are now (reads the whole dataset: 30 s for discs_3types' 6 GB from a
    cold disk on the development machine)."""
    return fingerprint_record({name: file_data_digest(ds.path / f"{name}.npy") for name in ALL_FIELDS})


def recorded_fingerprint(ds: MPMDataset) -> str | None:
    """The dataset digest recorded at generation (None for datasets made before fingerprints)."""
    fp = ds.meta.get("fingerprint")
    digest = fp.get("sha256") if isinstance(fp, dict) else None
    return digest if isinstance(digest, str) else None


def verify_fingerprint(ds: MPMDataset) -> dict[str, Any]:
    """Recompute the fingerprint and compare it with meta.json's; raises `DatasetError` naming the arrays whose
    data changed since they were written. Returns the computed fingerprint (also when none was recorded)."""
    found = compute_fingerprint(ds)
    recorded = ds.meta.get("fingerprint")
    if isinstance(recorded, dict) and isinstance(recorded.get("arrays"), dict):
        changed = [n for n in ALL_FIELDS if recorded["arrays"].get(n) != found["arrays"][n]]
        if changed:
            raise DatasetError(f"dataset {ds.path}: the data of {', '.join(f'{n}.npy' for n in changed)} changed "
                               f"after it was written (fingerprint mismatch); delete {ds.path} and generate it again")
    return found


def record_fingerprint(ds: MPMDataset, fingerprint: Mapping[str, Any]) -> None:
    """Add a fingerprint to the meta.json of a dataset made before fingerprints (atomic rewrite)."""
    meta = dict(ds.meta)
    meta["fingerprint"] = dict(fingerprint)
    part = ds.path / (META + ".part")
    try:
        part.write_text(json.dumps(meta, indent=2) + "\n")
        _fsync(part)
        part.replace(ds.path / META)
    except OSError as e:
        part.unlink(missing_ok=True)
        raise DatasetError(f"cannot record the fingerprint in {ds.path / META} ({e.strerror or e}); it is "
                           f"{fingerprint['sha256']}: keep it with your results, or copy the dataset somewhere "
                           f"writable") from None
    ds.meta = meta


# ------------------------------------------------------------------------------------------------ writing
def temp_prefix(target: Path) -> str:
    """Name prefix of temporary directories for a target (host-qualified: pids only mean something locally)."""
    return f".{target.name}{TMP_MARK}{socket.gethostname()}-"


def _pid_alive(pid: int) -> bool:
    """Whether `pid` runs here. A zombie (dead, not yet reaped by its parent) counts as dead: a generator killed
    with -9 drops its lock at once, and its waiter must not keep the dead one's temp dir because the parent is
    slow to call wait()."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """State 'Z' in /proc/<pid>/stat (Linux); False where /proc does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 1:].split()[:1] == ["Z"]  # the command name may hold spaces and ')'


def stale_temp_dirs(target: Path) -> Iterator[Path]:
    """Temporary directories of `target` left by dead processes on this host (never loaded, safe to delete)."""
    prefix = temp_prefix(target)
    if not target.parent.is_dir():
        return
    for p in target.parent.iterdir():
        if p.is_dir() and p.name.startswith(prefix):
            pid_s = p.name[len(prefix):].split("-", 1)[0]
            if pid_s.isdigit() and not _pid_alive(int(pid_s)):
                yield p


def clean_stale_temps(target: Path) -> list[Path]:
    """Delete stale temporary directories of `target`; returns what was removed."""
    removed = []
    for p in list(stale_temp_dirs(target)):
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


_ROOT_FIX = "pass a writable directory (root=<dir> to generate.py, data.root=<dir> to train.py)"


def ensure_writable_root(root: Path) -> None:
    """Create `root` if needed and check that a directory can be created in it (one-line error if not)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"cannot create dataset root {root}: {e.strerror or e}; {_ROOT_FIX}") from None
    if not root.is_dir() or not os.access(root, os.W_OK | os.X_OK):
        raise DatasetError(f"dataset root {root} is not a writable directory; {_ROOT_FIX}")


def check_free_space(root: Path, n_bytes: int, what: str) -> None:
    free = shutil.disk_usage(root).free
    if n_bytes > free:
        raise DatasetError(f"{what} needs {human_bytes(n_bytes)} but only {human_bytes(free)} is free under "
                           f"{root}; free space, use root=<another directory>, or reduce scenario.n_frames")


def human_bytes(n: float) -> str:
    """'6.12 GB', '61.2 MB', '900 bytes': a size a person reads at a glance (decimal units, like df -H)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} bytes"


VALUES_PER_PARTICLE_FRAME = sum(int(np.prod(s)) for s, _, _ in FRAME_FIELDS.values())  # x 2, v 2, C 4, F 4, Jp, S 4


def dataset_nbytes(n_frames: int, n_particles: int) -> int:
    return 4 * n_particles * (n_frames * VALUES_PER_PARTICLE_FRAME + len(PARTICLE_FIELDS))


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full_error(err: OSError, target: Path, n_frames: int, n_particles: int) -> DatasetError:
    """The one line for a disk (or quota) that fills up while a dataset is written: where, and how much it needs.

    The free-space check before writing catches the usual case; this one is for space taken meanwhile by
    something else (another job, a second generator) or a quota the free space does not show."""
    need = dataset_nbytes(n_frames, n_particles)
    return DatasetError(
        f"{(err.strerror or 'no space left').lower()} under dataset root {target.parent} while writing {target.name}, which "
        f"needs {human_bytes(need)} ({n_frames} frames x {n_particles} particles x {VALUES_PER_PARTICLE_FRAME} "
        f"float32 values, plus {len(PARTICLE_FIELDS)} per-particle arrays); its partial copy was removed. Free "
        f"space there, use another root (root=<dir> to generate.py, data.root=<dir> to train.py), or reduce "
        f"scenario.n_frames")


class NpyChunkWriter:
    """A pre-allocated .npy file filled block by block along its first axis with plain file writes.

    Why not a writable memmap: every page written through a map stays mapped, so the process's resident
    size grows to the whole file (6 GB for discs_3types) even though the data is on disk. Plain writes
    keep the process small; the file is complete (header + data) from the start, only zeros until written.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: Any = np.float32) -> None:
        self.path, self.shape, self.dtype = Path(path), tuple(int(n) for n in shape), np.dtype(dtype)
        mm = np.lib.format.open_memmap(self.path, mode="w+", dtype=self.dtype, shape=self.shape)
        self.offset = mm.offset  # header length; the data is allocated (sparse) but nothing is mapped in
        del mm
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._fh = open(self.path, "r+b")  # noqa: SIM115 - held open across chunk writes, closed in close()
        # hashed as written while the rows come in order (the generators write them so); else read back in digest
        self._hash: Any = hashlib.sha256()
        self._hashed_rows = 0

    def write(self, start: int, block: np.ndarray) -> None:
        """Rows [start, start + len(block)) of the array."""
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.shape[1:] or not 0 <= start <= self.shape[0] - len(block):
            raise ValueError(f"{self.path.name}: block {block.shape} at row {start} does not fit {self.shape}")
        self._fh.seek(self.offset + start * self.row_bytes)
        self._fh.write(memoryview(block).cast("B"))
        if self._hash is not None and start == self._hashed_rows:
            self._hash.update(memoryview(block).cast("B"))
            self._hashed_rows += len(block)
        else:
            self._hash = None

    def data_digest(self) -> str:
        """sha256 of the written data (call after close)."""
        if self._hash is not None and self._hashed_rows == self.shape[0]:
            return self._hash.hexdigest()
        return file_data_digest(self.path)

    def flush(self) -> None:
        self._fh.flush()

    def discard(self) -> None:
        """Close without syncing (the file is about to be deleted)."""
        self._fh.close()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()


class DatasetWriter:
    """Writes a dataset into a temporary sibling directory and publishes it atomically with `commit`.

    Use as a context manager: leaving the block without `commit` (an exception, Ctrl-C) removes the
    temporary directory; leaving it on a full disk raises `DatasetError` saying where and how much is needed. Frame arrays are pre-allocated memmaps filled chunk by chunk, so the frames are never
    all in RAM.
    """

    def __init__(self, target: str | os.PathLike, n_frames: int, n_particles: int) -> None:
        self.target = Path(target)
        self.n_frames, self.n_particles = int(n_frames), int(n_particles)
        ensure_writable_root(self.target.parent)
        check_free_space(self.target.parent, dataset_nbytes(self.n_frames, self.n_particles),
                         f"dataset {self.target.name}")
        self.tmp = self.target.parent / f"{temp_prefix(self.target)}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            self.tmp.mkdir()
        except OSError as e:
            raise DatasetError(f"cannot write under {self.target.parent}: {e.strerror or e}; {_ROOT_FIX}") from None
        self.frames: dict[str, NpyChunkWriter] = {}
        self._digests: dict[str, str] = {}
        self._committed = False
        try:
            for name, (shape, _, _) in FRAME_FIELDS.items():
                self.frames[name] = NpyChunkWriter(self.tmp / f"{name}.npy",
                                                   (self.n_frames, self.n_particles, *shape))
        except BaseException as e:
            self.abort()
            if isinstance(e, OSError) and e.errno in DISK_FULL:
                raise disk_full_error(e, self.target, self.n_frames, self.n_particles) from None
            raise

    def write_frames(self, name: str, start: int, values: np.ndarray) -> None:
        """Frames [start, start + len(values)) of one per-frame array."""
        self.frames[name].write(start, values)

    def write_particle(self, name: str, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float32)
        if values.shape != (self.n_particles,):
            raise ValueError(f"{name}: expected shape ({self.n_particles},), got {values.shape}")
        np.save(self.tmp / f"{name}.npy", values)
        self._digests[name] = hashlib.sha256(memoryview(np.ascontiguousarray(values)).cast("B")).hexdigest()

    def flush(self) -> None:
        for w in self.frames.values():
            w.flush()

    def commit(self, meta: Mapping[str, Any], replace: bool = False) -> Path:
        """Write meta.json (complete: true) last and rename the directory into place.

        If the target appeared meanwhile (a concurrent generator won the race) and `replace` is false, the
        existing dataset is kept and this one discarded. With `replace` an existing target is moved aside
        first and deleted after the rename.
        """
        for name, w in self.frames.items():
            w.close()  # flush + fsync
            self._digests[name] = w.data_digest()
        self.frames.clear()
        missing = [name for name in PARTICLE_FIELDS if name not in self._digests]
        if missing:
            raise ValueError(f"commit before write_particle of {', '.join(missing)}")
        full = dict(meta)
        full.update({"format": FORMAT, "n_frames": self.n_frames, "n_particles": self.n_particles,
                     "arrays": array_specs(self.n_frames, self.n_particles),
                     "fingerprint": fingerprint_record(self._digests), "complete": True})
        for name in PARTICLE_FIELDS:
            _fsync(self.tmp / f"{name}.npy")
        meta_tmp = self.tmp / (META + ".part")
        meta_tmp.write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
        _fsync(meta_tmp)
        meta_tmp.rename(self.tmp / META)
        old = None
        if self.target.exists() and replace:
            old = self.target.parent / f"{temp_prefix(self.target)}{os.getpid()}-old-{uuid.uuid4().hex[:8]}"
            self.target.rename(old)
        try:
            os.rename(self.tmp, self.target)
        except OSError:
            if not self.target.exists():
                raise
            shutil.rmtree(self.tmp, ignore_errors=True)  # lost a race against another generator
        self._committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.target

    def abort(self) -> None:
        for w in self.frames.values():
            w.discard()
        self.frames.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._committed:
            self.abort()
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:  # after abort: the message says it was removed
            raise disk_full_error(exc, self.target, self.n_frames, self.n_particles) from None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
