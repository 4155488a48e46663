"""SIGTERM handled like Ctrl-C while a study runs.

``terminate_as_interrupt()`` (a context manager; ``run_study`` uses it) makes the first
SIGTERM raise ``Terminated``, a ``KeyboardInterrupt``, in the main thread: the same path
as Ctrl-C runs (worker processes killed, cells in flight back to ``pending`` in the store,
the run directory's lock released), and the CLI prints a message and exits 143 (128 + 15).
Further SIGTERMs while that cleanup runs are ignored; the previous handler is restored on
exit. SIGKILL cannot be caught: the next run resets ``running`` cells instead.

Not handled: other threads than the main one (signal handlers can only be set there; the
context manager then does nothing), SIGHUP/SIGQUIT (default behaviour).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM; handled like Ctrl-C."""

    exit_code = 128 + signal.SIGTERM


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = [False]

    def on_term(signum: int, frame: Any) -> None:
        if fired[0]:
            return  # already cleaning up
        fired[0] = True
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = ["Terminated", "terminate_as_interrupt"]
