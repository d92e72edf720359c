"""One handed-off run, in a fork of the warm server: take on the caller's terminal, directory, environment and
arguments, run the script as `__main__`, exit with its code.

It exits without finalizing the interpreter (about 1.3 s with torch and Lightning loaded): the run has finished its
W&B run and written its files by then, and logging and the standard streams are flushed here. It gets SIGTERM if
the server dies, so no run outlives the server that reports its exit code."""

from __future__ import annotations

import logging
import os
import runpy
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from mpm_inr.baselines.forked import die_with_parent
from mpm_inr.warm.client import mark_warm_child

INTERRUPTED = 130  # what a shell reports for a command stopped with Ctrl-C


def run_forked(script: Path, request: Mapping[str, Any], fds: Sequence[int], server_pid: int,
               close_inherited: Callable[[], None]) -> NoReturn:
    """The whole life of the fork: never returns into the server's loop."""
    code = 1
    try:
        close_inherited()
        _default_signals()
        die_with_parent(server_pid, signal.SIGTERM)
        _adopt_streams(fds)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        tempfile.tempdir = None  # found again from the caller's TMPDIR
        mark_warm_child()
        sys.argv = [str(script), *request["argv"]]
        code = run_script(script)
    except BaseException:  # noqa: BLE001 - set-up failed: said on the caller's stderr, then the exit code
        traceback.print_exc()
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def run_script(script: Path) -> int:
    """The script as `python script` runs it; its exit code as the interpreter would report it."""
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as done:
        return exit_status(done.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        return INTERRUPTED
    except BaseException:  # noqa: BLE001 - an uncaught error: its traceback, exit 1, as Python does
        traceback.print_exc()
        return 1
    return 0


def exit_status(code: object) -> int:
    """sys.exit's argument as an exit status: None is 0, an int itself, anything else is printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _default_signals() -> None:
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _adopt_streams(fds: Sequence[int]) -> None:
    """The caller's stdin, stdout and stderr as this process's, buffered as Python buffers them for a command
    (stdout by line on a terminal)."""
    for target, fd in enumerate(fds):
        if fd != target:
            os.dup2(fd, target)
            os.close(fd)
    encoding, errors = sys.stdout.encoding, sys.stdout.errors
    sys.stdin = sys.__stdin__ = open(0, encoding=encoding, closefd=False)  # noqa: SIM115 - lives as the process
    sys.stdout = sys.__stdout__ = open(1, "w", buffering=1 if os.isatty(1) else -1, encoding=encoding,  # noqa: SIM115
                                      errors=errors, closefd=False)
    sys.stderr = sys.__stderr__ = open(2, "w", buffering=1, encoding=encoding,  # noqa: SIM115
                                      errors="backslashreplace", closefd=False)
