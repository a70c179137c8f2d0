"""How a run was asked to stop: Ctrl-C or SIGTERM, told apart for the exit status and the record."""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field

from lightning.pytorch.utilities.exceptions import SIGTERMException

# Exit statuses of a process stopped by a signal, as shells report them (128 + signal number).
INTERRUPT_EXIT_CODES = {"SIGINT": 128 + signal.SIGINT, "SIGTERM": 128 + signal.SIGTERM}


@dataclass(frozen=True)
class StopRequests:
    """Carried on the run's context: the first Ctrl-C is turned into a SIGTERM (training/callbacks.py:
    GracefulStop), and this remembers that it was a Ctrl-C."""

    ctrl_c: threading.Event = field(default_factory=threading.Event)

    def signal_behind(self, error: BaseException) -> str | None:
        """'SIGINT' or 'SIGTERM' when `error` is Lightning's clean stop on that signal, else None."""
        if not isinstance(error, SIGTERMException):
            return None
        return "SIGINT" if self.ctrl_c.is_set() else "SIGTERM"
