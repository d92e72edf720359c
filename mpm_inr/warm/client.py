"""The caller's side: hand `python train.py ARGS` to a warm server when one is listening, and wait for its exit code.

Standard library only, and nothing here may fail a command: with no server, a declined hand-off or any socket
error, `hand_off` returns None and the caller runs the command itself."""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mpm_inr.warm.protocol import (
    Channel,
    ProtocolError,
    private_socket_problem,
    socket_path,
)

#: the signals a terminal or a job runner sends the command; the run gets them instead
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
CONNECT_TIMEOUT_S = 1.0

_in_warm_child = False  # set in a fork of the server: the run it executes is already the handed-off one


def mark_warm_child() -> None:
    global _in_warm_child
    _in_warm_child = True


def in_warm_child() -> bool:
    return _in_warm_child


def handed_off(argv: Sequence[str]) -> bool:
    """A single run: multiruns start their own interpreter once for all their jobs, Hydra's flags are cheap."""
    return not _in_warm_child and not any(a.startswith("-") for a in argv)


def connect(path: Path | None = None) -> Channel | None:
    """A channel to the server on `path` (default: this checkout's and Python's); None when none is listening."""
    path = path or socket_path()
    if path is None or private_socket_problem(path) is not None:  # never send this environment to another user
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT_S)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    sock.settimeout(None)
    return Channel(sock)


def request(message: dict[str, Any], path: Path | None = None) -> dict[str, Any] | None:
    """One question to the server (status, stop): its answer, or None when none is listening."""
    channel = connect(path)
    if channel is None:
        return None
    try:
        channel.send(message)
        return channel.receive()[0]
    except (OSError, ProtocolError):
        return None
    finally:
        channel.sock.close()


def hand_off(argv: Sequence[str], script: str) -> int | None:
    """Run `script argv` (the caller's own script, which the server must be serving) in a fork of the warm server,
    on this process's terminal, directory and environment; its exit code, or None when it was not handed off (the
    caller runs it)."""
    if not handed_off(argv):
        return None
    channel = connect()
    if channel is None:
        return None
    with channel.sock:
        try:
            channel.send({"op": "run", "argv": list(argv), "script": os.path.realpath(script), "cwd": os.getcwd(),
                          "env": dict(os.environ), "executable": sys.executable}, fds=(0, 1, 2))
            reply = channel.receive()[0]
        except (OSError, ProtocolError):
            return None
        if reply is None or "pid" not in reply:
            if reply and reply.get("declined"):
                print(f"note: the warm server declined ({reply['declined']}); running in this process",
                      file=sys.stderr, flush=True)
            return None
        with _forwarding_signals(int(reply["pid"])):
            return _exit_code(channel)


def _exit_code(channel: Channel) -> int:
    while True:
        try:  # a forwarded signal does not interrupt the wait (PEP 475: recv retries)
            message = channel.receive()[0]
        except (OSError, ProtocolError):
            message = None
        if message is None:
            print("error: the warm server stopped during the run; see its metrics.json for how far it got",
                  file=sys.stderr, flush=True)
            return 1
        if "exit" in message:
            return int(message["exit"])


@contextmanager
def _forwarding_signals(pid: int) -> Iterator[None]:
    """Ctrl-C, a job runner's SIGTERM or a closed terminal reach the run as they would a command run here."""
    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
