"""A call the run needs only at its end, made in a thread of lowered CPU priority meanwhile.

Why: after the fit, the run's figure is drawn by two processes beside the run while the run scores its prediction,
three busy processes on a 2-core machine. The figure is the longer chain (its panels, then its pixels, then the
PNG), and the run ends when it does. The kinograph SSIM (0.11-0.15 s of CPU, needed only in metrics.json) in a
thread of niceness NICENESS takes the cores the figure's processes leave, instead of a third of each.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Result = TypeVar("Result")

#: the thread's niceness (0 = the run's): at 10, CFS gives it about a tenth of a core another process wants
NICENESS = 10


class LowPriorityCall(Generic[Result]):
    """function() started now in a daemon thread whose niceness is raised (a thread's own, on Linux; elsewhere it
    runs at the run's priority); `result()` waits for it and returns its value or raises its exception. The
    function must not call torch (its thread pool belongs to the run's main thread)."""

    def __init__(self, function: Callable[[], Result]) -> None:
        self._function = function
        self._value: Result | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="low-priority-call", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:  # raising a thread's niceness needs no privilege; it is the thread's alone (Linux: a thread is a task)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
        except (AttributeError, OSError):
            pass
        try:
            self._value = self._function()
        except BaseException as err:  # noqa: BLE001 - raised again by result(), in the caller's thread
            self._error = err

    def result(self) -> Result:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]
