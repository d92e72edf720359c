"""The task-function wrapper used by the `mpm_inr_list` sweeper (picklable for joblib / submitit).

It makes each job self-reporting and isolated from its siblings:
- writes `<job dir>/.agent_job.json` at start ({"pid", "started"}) and at the end (+ "ended", "outcome",
  "error"), atomically, so the agent can tell "never started" from "started and died" from "finished";
- enforces a per-job wall-time limit with SIGALRM (a BaseException, so the trainer's `except Exception`
  cannot swallow it); the hard limit for a stuck C call is the agent's round deadline, which kills the group;
- turns any exception or `sys.exit` of the job into a recorded outcome instead of aborting the whole batch.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Optional

log = logging.getLogger(__name__)
MARKER = ".agent_job.json"


class JobTimeout(BaseException):
    """Raised in the job's main thread when its wall-time limit is reached."""


def _write_marker(out_dir: Path, data: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / (MARKER + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, out_dir / MARKER)


class GuardedTask:
    """Wraps a Hydra task function; see the module docstring."""

    def __init__(self, task: Callable[[Any], Any], timeout_s: Optional[float] = None) -> None:
        self.task = task
        self.timeout_s = timeout_s

    def __call__(self, cfg: Any) -> Any:
        from hydra.core.hydra_config import HydraConfig

        out_dir = Path(HydraConfig.get().runtime.output_dir)
        info: dict = {"pid": os.getpid(), "started": time.time(), "timeout_s": self.timeout_s}
        _write_marker(out_dir, info)
        alarm = self._arm()
        ret: Any = None
        try:
            ret = self.task(cfg)
            info.update(outcome="returned")
        except JobTimeout:
            info.update(outcome="timeout", error=f"wall-time limit of {self.timeout_s:g} s reached")
            log.error(f"job exceeded its wall-time limit of {self.timeout_s:g} s")
        except KeyboardInterrupt:
            info.update(outcome="interrupted", ended=time.time())
            _write_marker(out_dir, info)
            raise
        except SystemExit as e:
            info.update(outcome="exit", error=f"exit code {e.code}")
        except BaseException as e:  # a failing job must not abort the batch; its traceback goes to the job log
            info.update(outcome="exception", error=f"{type(e).__name__}: {' '.join(str(e).split())}"[:500])
            log.exception("job raised")
        finally:
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, signal.SIG_DFL)
        info["ended"] = time.time()
        _write_marker(out_dir, info)
        try:
            return float(ret) if ret is not None else None
        except (TypeError, ValueError):
            return None

    def _arm(self) -> bool:
        if not self.timeout_s or self.timeout_s <= 0:
            return False

        def _raise(signum: int, frame: Any) -> None:
            raise JobTimeout()

        try:
            signal.signal(signal.SIGALRM, _raise)
        except ValueError:  # not the main thread (a threaded launcher backend): rely on the round deadline
            return False
        signal.setitimer(signal.ITIMER_REAL, float(self.timeout_s))
        return True
