"""A command's life as a process: error reporting on, SIGTERM and SIGINT caught, a wait for
them, and what was reported sent before the process exits.

The server (``cli.serve``) and the background runner (``background.main``) live the same
way; each keeps its own log lines, so the helper is a context manager::

    with serving("api") as stop:
        ...start...
        stop.wait()
        log.info("%s: stopping", stop.name)
        ...stop...
"""

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Stop:
    """Set by the first SIGTERM or SIGINT: which signal came, and a wait for it."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        from gevent.event import Event

        self.event = Event()
        self.received: list[int] = []

    def set(self, signum: int) -> None:
        self.received.append(signum)
        self.event.set()

    @property
    def name(self) -> str:
        """``SIGTERM`` or ``SIGINT``: the first signal received."""
        return signal.Signals(self.received[0]).name

    def wait(self) -> None:
        """Until a signal comes."""
        while not self.event.wait(timeout=60):  # a timer keeps the hub from seeing nothing to do
            pass


@contextmanager
def serving(component: str) -> Iterator[Stop]:
    """Report errors to Sentry tagged ``component`` (when SENTRY_DSN is set), catch SIGTERM
    and SIGINT into the Stop it gives, and flush the reports when the block ends.

    A bad Sentry setting raises SettingError before anything starts.
    """
    import gevent

    from apiphant.runtime import reporting

    reporting.init(component)
    stop = Stop()
    handlers: list[Any] = [gevent.signal_handler(signum, stop.set, signum)
                           for signum in Stop.SIGNALS]  # fmt: skip
    try:
        yield stop
    finally:
        for handler in handlers:
            handler.cancel()
        _close_database()
        reporting.flush()


def _close_database() -> None:
    """Close the process's PostgreSQL pool, after the last request or task: only if
    ``apiphant.db`` was loaded (nothing is imported for a product without a database)."""
    import logging
    import sys

    db = sys.modules.get("apiphant.db")
    if db is None:
        return
    try:
        db.close()
    except Exception:  # a pool that fails to close must not keep the process from exiting
        logging.getLogger(__name__).exception("Closing the database pool failed")
