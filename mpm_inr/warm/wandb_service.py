"""One W&B service (wandb-core) for the offline runs a warm server forks.

`wandb.init` starts wandb-core, a process of its own, and waits until it listens: 0.2-0.3 s of a warm-served run
on the 2-core VM, the largest part of what such a run pays besides its fit and evaluation. wandb-core serves many
processes at once (its token in WANDB_SERVICE is how wandb's own child processes attach to it), so the server
starts one before it serves and offers its token to every run it forks (`SHARED_SERVICE_ENV`); an offline run
takes it (mpm_inr.training.loggers), an online one starts its own with its caller's environment, as without a
server. It is started without a thread in the server (a fork of it stays safe), and it ends with the server:
wandb-core watches the pid that started it. This is wandb's internal API: where it is missing or fails, nothing
is offered and each run starts its own service.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping

from mpm_inr.training.loggers import SHARED_SERVICE_ENV, service_listening

try:  # wandb's internal API: tested with wandb 0.31
    import wandb
    from wandb.sdk.lib.service import service_process
except ImportError:  # pragma: no cover - wandb is a requirement; a version without this module offers nothing
    service_process = None

#: how long a stop waits for wandb-core to leave after SIGTERM before it is killed
STOP_WAIT_S = 5.0


class SharedWandbService:
    """A running wandb-core and the token that attaches a process to it."""

    def __init__(self, token: str, process: subprocess.Popen | None) -> None:
        self.token = token
        self._process = process

    @classmethod
    def start(cls, environment: Mapping[str, str], log: Callable[[str], None]) -> SharedWandbService | None:
        """A service for offline runs; None where W&B is off in the server's environment (WANDB_MODE=disabled,
        as in the tests: its callers would not use it) or the service cannot be started (said in `log`)."""
        if service_process is None or environment.get("WANDB_MODE") == "disabled":
            return None
        try:
            started = service_process.start(wandb.Settings())
            token = started.token.env_value
        except Exception as err:  # noqa: BLE001 - any failure only costs the runs their own start-up
            log(f"no shared W&B service ({type(err).__name__}: {' '.join(str(err).split())}); each run starts its own")
            return None
        process = getattr(started, "_process", None)
        return cls(token, process if isinstance(process, subprocess.Popen) else None)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def alive(self) -> bool:
        """Whether it still runs and listens."""
        if self._process is not None and self._process.poll() is not None:
            return False
        return service_listening(self.token)

    def offer(self) -> dict[str, str]:
        """The variables a run gets to attach to it; none once it has stopped."""
        return {SHARED_SERVICE_ENV: self.token} if self.alive() else {}

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
