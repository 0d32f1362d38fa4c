"""``--reload``: run the server in a child process and restart it when a .py file changes."""

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # linux/prctl.h


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


def _die_with_parent() -> None:
    """In the child, before exec: if the reloader dies, even by SIGKILL, the server stops too."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the reloader's own SIGTERM path still holds
        pass


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
        child = subprocess.Popen(command, preexec_fn=_die_with_parent)
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
