"""`python -m mpm_inr.warm start|serve|status|stop`: the warm server for `python train.py` (see mpm_inr/warm)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mpm_inr.warm.client import request
from mpm_inr.warm.launch import WarmStartError, launch
from mpm_inr.warm.protocol import socket_path
from mpm_inr.warm.server import DEFAULT_IDLE_S, ServeError, WarmServer, preload


def _path() -> Path:
    path = socket_path()
    if path is None:
        raise SystemExit("error: MPM_INR_WARM_SOCKET=off turns the warm server off; unset it to use one")
    return path


def _describe(status: dict) -> str:
    current = "" if status.get("current", True) else "; the code changed since, so it declines runs"
    return (f"pid {status['server_pid']}, since {status['started']}, {status['served']} runs served, "
            f"{status['running']} running{current}")


def serve(idle_s: float) -> int:
    environment = dict(os.environ)  # before the imports, which add to it
    seconds = preload()
    print(f"imported what a run imports in {seconds:.1f} s", flush=True)
    try:
        WarmServer(_path(), environment, idle_s).serve()
    except ServeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def start(idle_s: float) -> int:
    path = _path()
    status = request({"op": "status"})
    if status is not None:
        print(f"warm server already serving on {path} ({_describe(status)})")
        return 0
    log = path.with_suffix(".log")
    try:
        _, status = launch(path, idle_s, log)
    except WarmStartError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"warm server ready on {path} ({_describe(status)}); `python train.py ...` now runs in it. "
          f"Log: {log}; stop: python -m mpm_inr.warm stop")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpm_inr.warm",
                                     description="A server that keeps train.py's imports warm across runs.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("start", "start one in the background (no-op if one is serving)"),
                       ("serve", "serve in the foreground (Ctrl-C stops it)")):
        command = sub.add_parser(name, help=text)
        command.add_argument("--idle", type=float, default=DEFAULT_IDLE_S,
                             help=f"stop after this many seconds without a run (default {DEFAULT_IDLE_S:.0f})")
    sub.add_parser("status", help="whether one is serving, and what it has served")
    sub.add_parser("stop", help="stop it once its running runs end")
    args = parser.parse_args(argv)
    if getattr(args, "idle", 1.0) <= 0:
        parser.error("--idle must be positive")
    if args.command == "serve":
        return serve(args.idle)
    if args.command == "start":
        return start(args.idle)
    answer = request({"op": args.command})
    if answer is None:
        print(f"no warm server is serving on {_path()}")
        return 1 if args.command == "status" else 0
    if args.command == "status":
        print(f"warm server on {_path()}: {_describe(answer)}")
    else:
        print(f"warm server stopping ({answer['running']} runs still running finish first)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
