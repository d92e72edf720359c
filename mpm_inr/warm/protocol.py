"""What the warm server and its callers agree on: where the socket is, how a message is framed, and when a fork
of the server would not run the caller's code (its fingerprint, its import-time environment).

Standard library only: a caller imports this before anything heavy."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = REPO / "train.py"

#: the socket's path; `off` turns hand-off off (the command runs in its own interpreter)
SOCKET_ENV = "MPM_INR_WARM_SOCKET"
OFF = "off"

#: variables read while torch, numpy, matplotlib and Python itself are imported or initialised (thread pools,
#: allocators, library paths, caches): a fork of the server has them as they were when it started
IMPORT_TIME_PREFIXES = ("OMP_", "KMP_", "GOMP_", "MKL_", "OPENBLAS_", "VECLIB_", "NUMEXPR_", "TORCH", "PYTORCH_",
                        "CUDA_", "NVIDIA_", "LD_", "PYTHON", "MPL", "TMPDIR", "HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")

#: the code a run imports; a change to any of these files since the server started makes it decline
WATCHED = (TRAIN_SCRIPT, REPO / "mpm_inr", REPO / "hydra_plugins")

_LENGTH = struct.Struct("!I")
MAX_MESSAGE = 1 << 22  # a request carries the caller's environment: far below this


class ProtocolError(Exception):
    """A peer sent something that is not a message of this protocol."""


def socket_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """$MPM_INR_WARM_SOCKET, or one socket per repository checkout and Python in a private temporary folder;
    None when hand-off is off."""
    environ = os.environ if environ is None else environ
    given = environ.get(SOCKET_ENV)
    if given == OFF:
        return None
    if given:
        return Path(given)
    key = hashlib.sha256(f"{REPO}\0{sys.executable}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mpm-inr-{os.getuid()}" / f"warm-{key}.sock"


def private_socket_problem(path: Path) -> str | None:
    """Why `path` is not a socket only this user can reach (its folder must be this user's and closed to others,
    the socket, if there, this user's); None when it is. A request carries the caller's environment, secrets
    included: it goes to no other user's server."""
    try:
        folder = path.parent.stat()
        mine = path.stat().st_uid == os.getuid() if path.exists() else True
    except OSError as err:
        return f"{path.parent} cannot be read ({err.strerror})"
    if folder.st_uid != os.getuid() or folder.st_mode & 0o077:
        return f"{path.parent} is not private to this user (owner uid {folder.st_uid}, mode {folder.st_mode & 0o777:o})"
    if not mine:
        return f"{path} belongs to another user"
    return None


def import_time_environment(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k.startswith(IMPORT_TIME_PREFIXES)}


def environment_difference(server: Mapping[str, str], caller: Mapping[str, str]) -> list[str]:
    """Names (never values: they may be secrets) of import-time variables the two environments disagree on."""
    mine, theirs = import_time_environment(server), import_time_environment(caller)
    return sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))


def _python_files(root: Path) -> Iterable[Path]:
    if root.is_file():
        yield root
        return
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        yield from (Path(folder) / f for f in sorted(files) if f.endswith(".py"))


def code_fingerprint(roots: Sequence[Path] = WATCHED, import_paths: Sequence[str] | None = None) -> str:
    """Size and modification time of every Python file under `roots`, and of each installed-packages folder on
    sys.path (an install or upgrade changes it): the code a fork of the server would run."""
    digest = hashlib.sha256()
    for root in roots:
        for path in _python_files(Path(root)):
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed while walking: a change
                continue
            digest.update(f"{path}\0{stat.st_mtime_ns}\0{stat.st_size}\n".encode())
    for entry in sys.path if import_paths is None else import_paths:
        if entry.endswith(("site-packages", "dist-packages")) and os.path.isdir(entry):
            digest.update(f"{entry}\0{os.stat(entry).st_mtime_ns}\n".encode())
    return digest.hexdigest()


class Channel:
    """Length-prefixed JSON messages over a connected Unix socket; the first one may carry file descriptors."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""

    def send(self, message: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
        body = json.dumps(message).encode()
        data = _LENGTH.pack(len(body)) + body
        sent = socket.send_fds(self.sock, [data], list(fds)) if fds else self.sock.send(data)
        if sent < len(data):
            self.sock.sendall(data[sent:])

    def receive(self, max_fds: int = 0) -> tuple[dict[str, Any] | None, list[int]]:
        """The next message and the descriptors that came with it; (None, []) when the peer closed first."""
        fds: list[int] = []
        while True:
            if len(self._buffer) >= _LENGTH.size:
                (length,) = _LENGTH.unpack_from(self._buffer)
                if length > MAX_MESSAGE:
                    raise ProtocolError(f"a message of {length} bytes")
                if len(self._buffer) >= _LENGTH.size + length:
                    body = self._buffer[_LENGTH.size:_LENGTH.size + length]
                    self._buffer = self._buffer[_LENGTH.size + length:]
                    return _decode(body), fds
            if max_fds and not fds:
                chunk, more, _, _ = socket.recv_fds(self.sock, 65536, max_fds)
                fds = list(more)
            else:
                chunk = self.sock.recv(65536)
            if not chunk:
                for fd in fds:
                    os.close(fd)
                return None, []
            self._buffer += chunk


def _decode(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ProtocolError(f"not JSON: {err}") from None
    if not isinstance(message, dict):
        raise ProtocolError("not a JSON object")
    return message
