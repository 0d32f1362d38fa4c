"""Scheduling rules for background tasks, and a greenlet-per-task runner.

Each task gets its own greenlet, so a slow task only delays itself, and a
task never overlaps itself because its next run is planned only after the
current one returns. Runs are planned at ``start + k * interval``, never
``previous end + interval``, so they do not drift. Planned times that pass
while a run is still going are skipped, not made up in a burst.

The clock and the wait are injectable so the rules can be tested without
real time passing.
"""

import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

import gevent
from gevent.event import Event

from apiphant.periodic import Task

__all__ = ["Scheduler", "Slot", "Task", "next_slot"]

log = logging.getLogger("apiphant.background")


class Slot(NamedTuple):
    """A planned run: ``index`` k is planned ``at`` start + k * interval.

    ``skipped`` counts planned runs passed over to reach this one.
    """

    index: int
    at: float
    skipped: int


def next_slot(start: float, interval: float, done: int, now: float) -> Slot:
    """The first planned time after run ``done`` that is not already in the past.

    Times are recomputed from ``start`` every time rather than accumulated,
    so float error and run durations cannot add up into drift.
    """
    if not interval > 0:
        raise ValueError(f"interval must be positive, got {interval!r}")
    index = done + 1
    if start + index * interval < now:
        index = max(index, math.ceil((now - start) / interval))
        # Float rounding in the division can land one slot off either way.
        while start + index * interval < now:
            index += 1
        while index - 1 > done and start + (index - 1) * interval >= now:
            index -= 1
    return Slot(index, start + index * interval, index - done - 1)


RunTask = Callable[[Task, Slot], object]


class Scheduler:
    """Run each task in its own greenlet at its planned times until stopped."""

    def __init__(
        self,
        tasks: Iterable[Task],
        run: RunTask,
        *,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        """``run(task, slot)`` does one run; ``wait(seconds)`` returns True to stop.

        The default wait sleeps cooperatively and wakes early on ``stop()``.
        """
        self.tasks = list(tasks)
        self._run = run
        self._clock = clock
        self._stopping = Event()
        self._wait = wait or self._stopping.wait
        self._running: set[str] = set()
        self._greenlets: list[gevent.Greenlet] = []
        self.started_at: float | None = None

    @property
    def running(self) -> list[str]:
        """Names of the tasks in the middle of a run."""
        return sorted(self._running)

    def start(self) -> None:
        """Plan every task's first run now, each in its own greenlet."""
        self.started_at = self._clock()
        self._greenlets = [
            gevent.spawn(self.loop, task, self.started_at) for task in self.tasks
        ]

    def stop(self, timeout: float) -> list[str]:
        """Plan no more runs; give running ones ``timeout`` seconds to finish.

        Returns the names of tasks that were still running and got killed.
        """
        self._stopping.set()
        gevent.joinall(self._greenlets, timeout=timeout)
        left = self.running
        alive = [greenlet for greenlet in self._greenlets if not greenlet.dead]
        if alive:
            # GreenletExit lets the tasks' finally blocks and context managers run.
            gevent.killall(alive, block=True, timeout=1.0)
        return left

    def loop(self, task: Task, start: float) -> None:
        """Run ``task`` at start, then at each planned time, until stopped."""
        slot = Slot(0, start, 0)
        while self._sleep_until(slot.at):
            began = self._clock()
            self._running.add(task.name)
            try:
                self._run(task, slot)
            except Exception:  # the runner reports task errors; this is a bug guard
                log.exception("Task %s: the runner itself failed", task.name)
            finally:
                self._running.discard(task.name)
            now = self._clock()
            slot_done = slot
            slot = next_slot(start, task.interval, slot.index, now)
            if slot.skipped and not self._stopping.is_set():
                log.warning(
                    "Task %s: skipped %d run(s) planned while the previous run was still going "
                    "(it started %.3fs late and took %.3fs; interval %gs).",
                    task.name, slot.skipped, began - slot_done.at, now - began, task.interval,
                )

    def _sleep_until(self, at: float) -> bool:
        """Wait until ``at`` (never return early); False when stop was asked."""
        while not self._stopping.is_set():
            delay = at - self._clock()
            if delay <= 0:
                return True
            if self._wait(delay):
                return False
        return False
