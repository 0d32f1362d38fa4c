"""Stopping a process a test or the bench started: asked first, killed if it will not go."""

import os
import signal
import subprocess


def _signal(proc: subprocess.Popen, sig: int, group: bool) -> None:
    try:
        if group:  # started with start_new_session=True: its children go with it
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except ProcessLookupError:  # gone meanwhile (a group whose leader exited, say)
        pass


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15,
         group: bool = False) -> int:  # fmt: skip
    """Send ``sig`` (to its process group with ``group``), wait up to ``timeout`` seconds,
    then SIGKILL and wait 5 more. The exit status; a process that has already exited is
    only reaped. Bounded either way: no test hangs on a process that ignores signals."""
    if proc.poll() is None:
        _signal(proc, sig, group)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL, group)
            proc.wait(5)
    return proc.returncode
