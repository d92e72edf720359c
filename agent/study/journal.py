"""The study journal: `explorations/<name>/journal.jsonl`, append-only, the only state of a study.

Event-sourced: every line is one complete JSON event (`{"event": "planned", ...}`, `{"event": "finished", ...}`);
node states are folded from events on read (agent.study.state). Each event is written with a single `os.write` of a
complete line, then fsync, under an fcntl lock on `journal.lock`, so a `kill -9` at any moment leaves either the
whole line or a torn last line. A torn last line is ignored on read and cut off by the next writer (it was never
acknowledged). A corrupt line anywhere else is a real corruption and raises StudyError.

The study lock (`.lock`, fcntl.flock held for the process lifetime) keeps a second agent off the same study.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from mpm_inr.errors import StudyError

JOURNAL = "journal.jsonl"
SCHEMA_VERSION = 1


def _clean(x: Any) -> Any:
    """JSON-safe copy: NaN/inf become None (strict JSON), tuples become lists, Paths become strings."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x


def encode(event: dict[str, Any]) -> bytes:
    """One journal line (compact, sorted keys, strict JSON, trailing newline)."""
    line = json.dumps(_clean(event), sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=True)
    return (line + "\n").encode()


class Journal:
    """Append/read access to one study's journal file."""

    def __init__(self, study_dir: str | Path):
        self.dir = Path(study_dir)
        self.path = self.dir / JOURNAL
        self.lock_path = self.dir / "journal.lock"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def append(self, event: dict[str, Any]) -> dict[str, Any]:
        """Append one event (adds `t`, the wall-clock time, if absent) and return it as written."""
        if "event" not in event:
            raise ValueError("journal events need an 'event' field")
        event = dict(event)
        event.setdefault("t", round(time.time(), 3))
        data = encode(event)
        with self._locked():
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                self._cut_torn_tail(fd)
                n = os.write(fd, data)
                if n != len(data):  # a short write on a regular file means the disk is full
                    raise StudyError(f"journal write was short ({n}/{len(data)} bytes): is the disk full?")
                os.fsync(fd)
            finally:
                os.close(fd)
        return json.loads(data)

    @staticmethod
    def _cut_torn_tail(fd: int) -> None:
        """Drop a partial last line left by a killed writer, so the next line starts on a fresh line."""
        size = os.fstat(fd).st_size
        if size == 0:
            return
        os.lseek(fd, size - 1, os.SEEK_SET)
        if os.read(fd, 1) == b"\n":
            return
        chunk = 1 << 16
        pos = size
        while pos > 0:
            start = max(0, pos - chunk)
            os.lseek(fd, start, os.SEEK_SET)
            buf = os.read(fd, pos - start)
            i = buf.rfind(b"\n")
            if i >= 0:
                os.ftruncate(fd, start + i + 1)
                return
            pos = start
        os.ftruncate(fd, 0)

    def read(self) -> list[dict[str, Any]]:
        """All complete events in order. A torn last line is ignored; a corrupt earlier line raises StudyError."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        lines = raw.split(b"\n")
        complete, tail = lines[:-1], lines[-1]  # `tail` is b"" when the file ends with a newline
        events = []
        for i, line in enumerate(complete, 1):
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except json.JSONDecodeError as e:
                raise StudyError(f"{self.path}: line {i} is corrupt ({e.msg}); the journal was edited or damaged") from None
            if not isinstance(ev, dict) or "event" not in ev:
                raise StudyError(f"{self.path}: line {i} is not a journal event")
            events.append(ev)
        del tail  # a line without its newline was never fully written: ignore it
        return events


class StudyLock:
    """Exclusive lock on a study directory, held until `release()` or process exit (the kernel drops it)."""

    def __init__(self, study_dir: str | Path):
        self.path = Path(study_dir) / ".lock"
        self.fd: int | None = None

    def acquire(self) -> Self:
        try:  # the first thing a study writes: a bad root= is a user error, reported in one line
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StudyError(f"cannot write the study directory {self.path.parent}: {e.strerror or e}; pass "
                             f"root=<a writable directory>") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            finally:
                os.close(fd)
            raise StudyError(f"study {self.path.parent} is in use by {holder}; wait for it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"agent pid {os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
