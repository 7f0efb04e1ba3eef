"""Preemption: SIGTERM/SIGUSR1 only raise a flag; the loop acts on it at a step boundary."""

from __future__ import annotations

import signal
import threading
from typing import Any

_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s is not None)


class StopFlag:
    """Set by a signal handler, read by the loop after each batch (a plain attribute read)."""

    def __init__(self) -> None:
        self.flag = False
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self, extra: tuple[int, ...] = ()) -> None:
        """Catch SIGTERM, SIGUSR1 and the ``extra`` signals (e.g. a SLURM requeue signal)."""
        if threading.current_thread() is not threading.main_thread():
            return  # handlers can only be installed from the main thread
        for signum in dict.fromkeys(_SIGNALS + tuple(extra)):
            try:
                self._previous[signum] = signal.signal(signum, self._handler)
            except (ValueError, OSError):
                pass

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            try:
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            except (ValueError, OSError):
                pass
        self._previous.clear()

    def _handler(self, signum: int, frame: Any) -> None:
        # only a flag: no I/O, no collectives, nothing that could deadlock inside a handler
        self.flag = True
        self.signum = signum

    def checker(self, trainer: Any) -> Any:
        """A no-argument function the loop calls after each batch (chosen once per epoch)."""
        agree = getattr(trainer.strategy, "agree_on_stop", None)
        if agree is None:
            return lambda: self.flag
        progress = trainer._progress

        def agreed() -> bool:
            # the ranks agree on the signal's number (0: none, 1: a flag without one), so a rank that
            # did not receive the signal can still name it
            mine = (self.signum or 1) if self.flag else 0
            code = int(agree(mine, progress.total_batches))
            if code and not self.flag:
                self.flag = True
                self.signum = code if code > 1 else None
            return bool(code)

        return agreed
