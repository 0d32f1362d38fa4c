"""``--reload``: run the server in a child process and restart it when a .py file changes."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)


def snapshot(folder: Path) -> dict[str, float]:
    """Modification times of every .py file under folder."""
    times = {}
    for path in folder.rglob("*.py"):
        try:
            times[str(path)] = path.stat().st_mtime
        except OSError:
            continue
    return times


def changed(before: dict[str, float], after: dict[str, float]) -> list[str]:
    """Files added, removed or modified between two snapshots."""
    return sorted(
        path for path in before.keys() | after.keys() if before.get(path) != after.get(path)
    )


def run(folder: Path, argv: list[str], interval: float = 1.0) -> int:
    """Restart ``python -m apiphant argv`` on change, until SIGINT or SIGTERM; return its code."""
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    command = [sys.executable, "-m", "apiphant", *argv]
    while True:
        child = subprocess.Popen(command)
        before = snapshot(folder)
        while not stopping:
            time.sleep(interval)
            after = snapshot(folder)
            paths = changed(before, after)
            if paths:
                log.info("Reloading: %s changed", os.path.relpath(paths[0]))
                break
        child.send_signal(signal.SIGTERM)
        try:
            code = child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            code = child.wait()
        if stopping:
            return 0 if code in (0, -signal.SIGTERM) else code
