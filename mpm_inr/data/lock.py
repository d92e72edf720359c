"""One generator per dataset: an exclusive `flock` on `<root>/.<scenario>_seed<k>.lock` while it simulates
(`exclusive_lock` is the same lock on any file: the baselines cache takes it per window).

Why: two jobs that need the same missing dataset (two `generate.py`, or the train.py jobs of an agent round)
would otherwise both simulate it, and one would throw its copy away. With the lock the second one waits, then
reuses what the first one wrote. The kernel drops a flock when its holder dies (kill -9 included), so a crash
never leaves a dataset locked; its lock file may stay behind, and the next holder removes it. Reading an
existing dataset takes no lock, so a read-only dataset root needs none.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from mpm_inr.errors import DatasetError


def lock_path(target: Path) -> Path:
    """The lock file of a dataset directory: hidden, beside it in the data root."""
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def generation_lock(target: Path) -> Iterator[None]:
    """Hold the generation lock of `target` for the block, waiting (with one line on stderr) while another
    process holds it. The lock file is removed on the way out."""
    with exclusive_lock(lock_path(Path(target)), f"to finish generating {target}; it is reused then",
                        "pass a writable dataset root (root=<dir> to generate.py, data.root=<dir> to train.py)"):
        yield


@contextlib.contextmanager
def exclusive_lock(path: Path, waiting_for: str, fix: str = "pass a writable directory") -> Iterator[None]:
    """Hold an exclusive flock on the file `path` for the block; while another process holds it, say once on
    stderr "waiting for <holder> <waiting_for>" and wait. The lock file is removed on the way out. A lock file
    that cannot be created is a DatasetError naming `fix`."""
    fd = _acquire(Path(path), waiting_for, fix)
    try:
        yield
    finally:
        try:
            Path(path).unlink(missing_ok=True)  # still locked here: a waiter sees the file is gone, locks a new one
        finally:
            os.close(fd)


def _acquire(path: Path, waiting_for: str, fix: str) -> int:
    announced = False
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise DatasetError(f"cannot create the lock file {path}: {e.strerror or e}; {fix}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not announced:
                    print(f"waiting for {_holder(fd)} {waiting_for}", file=sys.stderr, flush=True)
                    announced = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _is_current(fd, path):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
                return fd
        except BaseException:  # Ctrl-C while waiting included
            os.close(fd)
            raise
        os.close(fd)  # the previous holder removed this file as it let go: lock the one that replaces it


def _is_current(fd: int, path: Path) -> bool:
    """Whether the locked descriptor is still the file at `path` (not one unlinked by the previous holder)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def _holder(fd: int) -> str:
    """'another process (pid N)' from the lock file, naming the host when it is another machine."""
    words = os.pread(fd, 256, 0).decode(errors="replace").split()
    if not words or not words[0].isdigit():
        return "another process"  # it has the lock but has not written its pid yet
    host = f" on {words[1]}" if len(words) > 1 and words[1] != socket.gethostname() else ""
    return f"another process (pid {words[0]}{host})"
