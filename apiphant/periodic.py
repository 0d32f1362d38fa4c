"""``@seconds(N)``: a function to run every N seconds, and the registry of such tasks.

    from apiphant.background import seconds   # apiphant 0.2's path, the same function

    @seconds(60)
    def update_something():
        ...

Pure: no gevent, nothing runs here. ``apiphant-background`` (apiphant.background) imports
the product's module, which registers its tasks here, and schedules them.
"""

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

F = TypeVar("F", bound=Callable[[], object])


@dataclass(frozen=True)
class Task:
    """A function to call every ``interval`` seconds, known by ``name`` in logs."""

    name: str
    func: Callable[[], object]
    interval: float


_tasks: dict[str, Task] = {}


def seconds(interval: float) -> Callable[[F], F]:
    """Register the decorated function to run every ``interval`` seconds.

    The function is returned unchanged, so it can still be called directly,
    for example from a test. Mistakes raise at import time, where the
    runner can name the file and line.
    """
    if callable(interval):
        raise TypeError("@seconds needs an interval: write @seconds(60), not @seconds")
    if isinstance(interval, bool) or not isinstance(interval, int | float):
        raise TypeError(f"@seconds(N) needs a number of seconds, got {interval!r}")
    if not (math.isfinite(interval) and interval > 0):
        raise ValueError(f"@seconds(N) needs a positive finite number, got {interval!r}")

    def register(func: F) -> F:
        if inspect.iscoroutinefunction(func):
            raise TypeError(
                f"task {func.__name__} is async: write a plain def; gevent makes its I/O "
                "cooperative"
            )
        try:
            inspect.signature(func).bind()
        except TypeError:
            raise TypeError(f"task {func.__name__} must be callable without arguments") from None
        except ValueError:  # some builtins have no signature; let them be
            pass
        name = func.__name__
        old = _tasks.get(name)
        if old is not None and _origin(old.func) != _origin(func):
            raise ValueError(
                f"task name {name!r} is already used by {_origin(old.func)}: "
                "task names must be unique"
            )
        _tasks[name] = Task(name=name, func=func, interval=float(interval))
        return func

    return register


def tasks() -> list[Task]:
    """The tasks registered so far, in registration order."""
    return list(_tasks.values())


def _origin(func: Callable[..., object]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', '?')}"
