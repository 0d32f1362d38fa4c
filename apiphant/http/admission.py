"""Admission: at most ``limit`` requests run the application at once, the others wait
their turn in arrival order.

gevent.lock.Semaphore lets a newcomer take a slot that was just released
before the waiter it was meant for wakes up, and the overtaken waiter waits
again: under overload that turned into requests waiting seconds while later
ones went ahead (measured in bench/RESULTS.md). Here a released slot is
handed to the first waiter directly, so nobody overtakes anybody.
"""

from collections import deque

from gevent.event import Event


class Admission:
    """A strictly first-come, first-served counting semaphore for one gevent hub."""

    __slots__ = ("limit", "active", "waiters")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self.waiters: deque[Event] = deque()

    def busy(self) -> bool:
        """Whether an acquire now would wait."""
        return self.active >= self.limit or bool(self.waiters)

    def acquire(self, timeout: float | None = None) -> bool:
        """Take a slot, waiting behind everyone who came first; False past ``timeout``."""
        if self.active < self.limit and not self.waiters:
            self.active += 1
            return True
        turn = Event()
        self.waiters.append(turn)
        try:
            if turn.wait(timeout):
                return True  # handed over by release(): ``active`` already counts it
        except BaseException:  # killed while waiting (the drain's last resort)
            if not self._withdraw(turn):
                self.release()  # the slot came as we were killed: pass it on
            raise
        return not self._withdraw(turn)  # handed over as the wait timed out: ours

    def _withdraw(self, turn: Event) -> bool:
        """Leave the queue; False when release() handed ``turn`` the slot meanwhile."""
        try:
            self.waiters.remove(turn)
        except ValueError:
            return False
        return True

    def release(self) -> None:
        """Give the slot to the first waiter, or free it."""
        if self.waiters:
            self.waiters.popleft().set()
        else:
            self.active -= 1
