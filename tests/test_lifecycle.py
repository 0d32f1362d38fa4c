"""apiphant.runtime.lifecycle: how the server and the background runner live as processes.
A real process, real signals, and Sentry's real transport against a local capture."""

import os
import signal
import subprocess
import sys

import pytest

from tests.sentry_capture import capture_sentry
from tests.servers import REPO

#: Serves until a signal, reports an error while stopping, then leaves with os._exit: no
#: atexit handler runs, so the report arrives only if the lifecycle flushed it.
SCRIPT = """
import os, sys
from apiphant.runtime import reporting
from apiphant.runtime.lifecycle import serving

with serving(sys.argv[1]) as stop:
    print("ready", flush=True)
    stop.wait()
    print(stop.name, flush=True)
    reporting.capture(ValueError("while stopping"), where="lifecycle")
print("flushed", flush=True)
os._exit(0)
"""


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTRY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return {**env, **extra}


def run(sig: int, env: dict[str, str], component: str = "lifecycle-test") -> list[str]:
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, component], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout.readline() == "ready\n"
        process.send_signal(sig)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, out
    return out.splitlines()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_wait_and_is_named(sig: int) -> None:
    assert run(sig, environment()) == [signal.Signals(sig).name, "flushed"]


def test_reports_are_tagged_with_the_component_and_flushed_when_the_block_ends() -> None:
    with capture_sentry() as sentry:
        lines = run(signal.SIGTERM, environment(**sentry.env()), component="worker")
        [event] = sentry.wait_for(1, timeout=20)
    assert lines == ["SIGTERM", "flushed"]
    assert sentry.problems() == []
    assert event["tags"]["component"] == "worker" and event["tags"]["where"] == "lifecycle"
    assert event["exception"]["values"][0]["value"] == "while stopping"


def test_a_bad_sentry_setting_stops_before_anything_starts() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, "api"], capture_output=True, text=True,
                          timeout=60, env=environment(SENTRY_DSN="http://k@127.0.0.1:9/1",
                                                      APIPHANT_SENTRY_LOCALS="maybe"))
    assert done.returncode == 1 and "ready" not in done.stdout
    assert "SettingError: APIPHANT_SENTRY_LOCALS: expected true or false, got 'maybe'" in (
        done.stderr)
