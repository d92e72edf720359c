"""The warm server: import what a run imports, once, then fork one process per run it is handed.

Why it is safe to fork: the server never computes (no torch op has started its thread pool, CUDA is not
initialised) and runs no thread besides its own, which it checks before it listens; each run is a fresh copy of
it. Why it waits in one selector loop: runs end (SIGCHLD, through a wake-up pipe), callers go away (their
connection closes: the run is killed, as the command's own process would have been) and new callers arrive, all
without a thread.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import gc
import importlib
import os
import runpy
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hydra.core.plugins import Plugins

from mpm_inr.training.loggers import installed_requirements
from mpm_inr.warm.child import run_forked
from mpm_inr.warm.protocol import (
    TRAIN_SCRIPT,
    WATCHED,
    Channel,
    ProtocolError,
    code_fingerprint,
    environment_difference,
    private_socket_problem,
)
from mpm_inr.warm.wandb_service import SharedWandbService

#: modules a run imports after train.py's own imports (in the order a run meets them); one that is missing in the
#: installed versions is skipped (it is only loaded later, in each run)
PRELOAD = ("mpm_inr.training.run", "mpm_inr.training.loggers", "pytorch_lightning.loggers", "wandb",
           "wandb.sdk.launch.inputs.internal", "matplotlib.backends.backend_agg", "mpm_inr.viz.field_plot",
           "hydra._internal.hydra", "hydra._internal.core_plugins.basic_launcher")
#: (module, function) of the preloaded modules: called once after the imports, each builds lazily made state that
#: every run would otherwise build again (the module is imported here, not by this one's importers: status and
#: stop commands load no matplotlib)
PRIME = (("mpm_inr.viz.field_plot", "prime_caches"),)
REQUEST_TIMEOUT_S = 5.0  # a caller that connects and says nothing holds the loop this long at most
DEFAULT_IDLE_S = 3600.0


def preload(script: Path = TRAIN_SCRIPT, modules: Sequence[str] = PRELOAD,
            prime: Sequence[tuple[str, str]] = PRIME) -> float:
    """Import the script's imports (it is run under another name: its `__main__` block does not run) and
    `modules`, read what each run would read the same, and call the `prime` functions; the seconds it took."""
    start = time.perf_counter()
    runpy.run_path(str(script), run_name="mpm_inr_warm_preload")
    for name in modules:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    Plugins.instance()  # Hydra's plugin discovery, a scan of its namespace packages
    for module, function in prime:
        getattr(importlib.import_module(module), function)()
    gc.collect()  # what the priming left (a throwaway figure's cycles), which each run's collector would walk again
    installed_requirements()  # what each run's W&B record lists, read once for all of them
    return time.perf_counter() - start


def fork_hazards() -> list[str]:
    """What would make a fork of this process unsafe: threads besides this one, an initialised CUDA context."""
    found = [f"thread {t.name}" for t in threading.enumerate() if t is not threading.current_thread()]
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        found.append("CUDA is initialised")
    return found


class ServeError(RuntimeError):
    """The server cannot serve: another serves on its socket, its folder is not private, or a fork of it would
    not be safe."""


@dataclass
class Run:
    channel: Channel
    argv: list[str]
    started: float = field(default_factory=time.perf_counter)


class WarmServer:
    """Serve `script` on the Unix socket `path` until stopped or idle for `idle_s` seconds."""

    def __init__(self, path: Path, environment: Mapping[str, str], idle_s: float = DEFAULT_IDLE_S,
                 script: Path = TRAIN_SCRIPT, watched: Sequence[Path] = WATCHED,
                 log: Callable[[str], None] | None = None) -> None:
        """environment: this process's as it was before `preload`, which a caller's is compared with."""
        self.path, self.idle_s, self.script, self.watched = Path(path), idle_s, Path(script), tuple(watched)
        self._log = log or (lambda line: print(f"{dt.datetime.now():%H:%M:%S} {line}", flush=True))
        self.fingerprint = code_fingerprint(self.watched)
        self.environment = dict(environment)
        # what the imports set for themselves (Lightning's PYTORCH_NVML_BASED_CUDA_CHECK, ...): a run's own imports
        # would have set them in its environment, so each run gets them on top of its caller's
        self.set_by_imports = {k: v for k, v in os.environ.items() if self.environment.get(k) != v}
        self.started = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        self.runs: dict[int, Run] = {}
        self.served = 0
        self.stopping = False
        self._last_active = time.monotonic()
        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._lock: IO[str] | None = None
        self._wakeup: tuple[int, int] | None = None
        self._wandb: SharedWandbService | None = None

    # -- the loop ---------------------------------------------------------------------------------------------------

    def serve(self) -> None:
        hazards = fork_hazards()
        if hazards:
            raise ServeError(f"forking this process would not be safe ({', '.join(hazards)})")
        self._listen()
        self._start_wandb()
        self._log(f"serving {self.script.name} of {self.script.parent} on {self.path} (pid {os.getpid()}; "
                  f"stops after {self.idle_s:g} s idle)")
        try:
            while not (self.stopping and not self.runs):
                timeout = None if self.runs else max(0.0, self.idle_s - (time.monotonic() - self._last_active))
                events = self._selector.select(timeout)
                for key, _ in events:
                    key.data()
                if not events and not self.runs and time.monotonic() - self._last_active >= self.idle_s:
                    self._log(f"idle for {self.idle_s:g} s: stopping")
                    break
        finally:
            self._close()
        self._log(f"stopped after {self.served} runs")

    def stop(self) -> None:
        """Take no new callers (the socket goes at once: they run their commands themselves); finish the runs."""
        if self.stopping:
            return
        self.stopping = True
        if self._listener is not None:
            self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _listen(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        problem = private_socket_problem(self.path)
        if problem is not None:
            raise ServeError(f"{problem}; pass a private folder in MPM_INR_WARM_SOCKET")
        self._lock = open(self.path.with_suffix(".lock"), "w")  # noqa: SIM115 - held for the server's life
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ServeError(f"another warm server is serving on {self.path}") from None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a server that died left it (a live one holds the lock)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        listener.listen(16)
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ, self._accept)
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        self._wakeup = (read, write)
        signal.set_wakeup_fd(write)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only wakes the loop; runs are reaped there
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: self.stop())
        self._selector.register(read, selectors.EVENT_READ, self._reap)

    def _close(self) -> None:
        self.stop()
        if self._lock is not None:
            self._lock.close()  # the next server may take the socket
            self._lock = None
        signal.set_wakeup_fd(-1)
        if self._wakeup is not None:
            for fd in self._wakeup:
                os.close(fd)
            self._wakeup = None
        self._selector.close()
        if self._wandb is not None:
            self._wandb.stop()

    def _close_inherited(self) -> None:
        """In a fork: the server's sockets, pipes and lock are not the run's."""
        if self._lock is not None:
            self._lock.close()
        for run in self.runs.values():
            run.channel.sock.close()
        if self._listener is not None:
            self._listener.close()
        if self._wakeup is not None:
            for fd in self._wakeup:
                os.close(fd)
        self._selector.close()

    # -- events -----------------------------------------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            sock, _ = self._listener.accept()
        except OSError:
            return
        self._last_active = time.monotonic()
        sock.settimeout(REQUEST_TIMEOUT_S)
        channel = Channel(sock)
        try:
            request, fds = channel.receive(max_fds=3)
        except (OSError, ProtocolError) as err:
            self._log(f"a caller sent no valid request ({err}); closed")
            sock.close()
            return
        keep = False
        try:
            keep = self._answer(channel, request, fds) if request is not None else False
        except OSError as err:
            self._log(f"a caller went away before its answer ({err})")
        finally:
            for fd in fds:
                os.close(fd)
            if not keep:
                sock.close()

    def _answer(self, channel: Channel, request: dict[str, Any], fds: list[int]) -> bool:
        """Reply to one request; True when its connection stays open (a run's, until it exits)."""
        op = request.get("op")
        if op == "status":
            channel.send({"server_pid": os.getpid(), "started": self.started, "served": self.served,
                          "running": len(self.runs), "script": str(self.script), "idle_s": self.idle_s,
                          "current": code_fingerprint(self.watched) == self.fingerprint})
            return False
        if op == "stop":
            channel.send({"stopping": True, "running": len(self.runs)})
            self._log("asked to stop")
            self.stop()
            return False
        if op != "run":
            channel.send({"error": f"unknown op {op!r}"})
            return False
        reason = self._decline(request, fds)
        if reason is not None:
            self._log(f"declined a run: {reason}")
            channel.send({"declined": reason})
            return False
        channel.sock.settimeout(None)
        pid = self._fork(channel, request, fds)
        channel.send({"pid": pid})
        return True

    def _decline(self, request: dict[str, Any], fds: list[int]) -> str | None:
        """Why a fork of this server would not run what the caller's own process would; None when it would."""
        argv, env, cwd = request.get("argv"), request.get("env"), request.get("cwd")
        if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv) and isinstance(cwd, str)
                and isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
                and len(fds) == 3):
            return "a malformed request"
        if self.stopping:
            return "it is stopping"
        if request.get("script") != os.path.realpath(self.script):
            return f"it serves {self.script}, the caller is {request.get('script')}"
        if request.get("executable") != sys.executable:
            return f"it runs {sys.executable}, the caller {request.get('executable')}"
        if not os.path.isdir(cwd):
            return f"no directory {cwd}"
        differ = environment_difference(self.environment, env)
        if differ:
            return f"{', '.join(differ)} differ from the server's, and are read at import time"
        if code_fingerprint(self.watched) != self.fingerprint:
            self.stop()
            return "the code changed since it started; it stops now (start it again for the new code)"
        return None

    def _fork(self, channel: Channel, request: dict[str, Any], fds: list[int]) -> int:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the fork inherits the server's unwritten lines and prints them as the run's
        server = os.getpid()
        offered = self._wandb_offer()
        pid = os.fork()
        if pid == 0:
            channel.sock.close()
            request = {**request, "env": {**request["env"], **self.set_by_imports, **offered}}
            run_forked(self.script, request, fds, server, self._close_inherited)
        self.served += 1
        self.runs[pid] = Run(channel, list(request["argv"]))
        self._selector.register(channel.sock, selectors.EVENT_READ, lambda: self._caller_gone(pid))
        self._log(f"run {self.served} (pid {pid}): {self.script.name} {' '.join(request['argv'])}")
        return pid

    def _start_wandb(self) -> None:
        self._wandb = SharedWandbService.start(self.environment, self._log)
        if self._wandb is not None:
            self._log(f"a W&B service for its offline runs: pid {self._wandb.pid}")

    def _wandb_offer(self) -> dict[str, str]:
        """The shared W&B service's token for a run (mpm_inr.warm.wandb_service); a service that has died is
        started again, and without one the run starts its own."""
        if self._wandb is not None and not self._wandb.alive():
            self._log("the shared W&B service has stopped; starting another")
            self._start_wandb()
        return {} if self._wandb is None else self._wandb.offer()

    def _caller_gone(self, pid: int) -> None:
        """The caller's end closed (or it wrote, which it never does): its command was killed, so is its run."""
        run = self.runs.get(pid)
        if run is None:
            return
        self._selector.unregister(run.channel.sock)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        self._log(f"pid {pid}: its caller went away; run killed")

    def _reap(self) -> None:
        assert self._wakeup is not None
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wakeup[0], 512):
                pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._ended(pid, os.waitstatus_to_exitcode(status))

    def _ended(self, pid: int, code: int) -> None:
        run = self.runs.pop(pid, None)
        if run is None:
            return
        code = 128 - code if code < 0 else code  # killed by a signal: as a shell reports it
        self._last_active = time.monotonic()
        self._log(f"pid {pid} exited {code} after {time.perf_counter() - run.started:.2f} s")
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(run.channel.sock)
        with contextlib.suppress(OSError):
            run.channel.send({"exit": code})
        run.channel.sock.close()
