"""gevent's monkey patching for the server and the background runner, its plugins read once.

``gevent.monkey.patch_all()`` tells its plugins (the entry points of the
``gevent.plugins.monkey.*`` groups) of 25 events, and looks them up anew for each: each
lookup reads every installed distribution's metadata again. That was about 35 ms of a
worker's 120 ms start on a deployed host, paid again by every worker a rolling restart
restarts. No distribution is installed while it runs, so here each group's entry points
are read once for the call; gevent and its plugins see the same entry points as before.
"""

import importlib.metadata
from typing import Any


def patch_all() -> None:
    """``gevent.monkey.patch_all()``, with ``importlib.metadata.entry_points`` reading each
    group once for its duration (restored after, also on an error)."""
    from gevent import monkey

    read = importlib.metadata.entry_points
    answers: dict[tuple, Any] = {}

    def entry_points(**params: Any) -> Any:
        key = tuple(sorted(params.items()))
        if key not in answers:
            answers[key] = read(**params)
        return answers[key]

    importlib.metadata.entry_points = entry_points
    try:
        monkey.patch_all()
    finally:
        importlib.metadata.entry_points = read
