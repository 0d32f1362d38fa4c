"""Background tasks: the scheduling rules (fake clock), the runner in real greenlets,
and ``apiphant-background`` as a real process with real signals and a real Sentry transport.

Timing asserts either use an injected clock (exact) or bounds several times
wider than the expected values, so a loaded CI machine cannot fail them.
"""

import importlib.util
import logging
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gevent
import pytest
from hypothesis import given
from hypothesis import strategies as st

from apiphant import background, periodic
from apiphant.background import run_task, seconds
from apiphant.runtime.scheduler import Scheduler, Slot, Task, next_slot
from tests.sentry_capture import capture_sentry

REPO = Path(__file__).resolve().parent.parent
LINE = re.compile(
    r"^(INFO|WARNING|ERROR) at \w+\.\w+:\d+ \[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] (.*)$"
)


@pytest.fixture(autouse=True)
def registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, Task]:
    """Each test registers tasks into a fresh registry, not the process-wide one."""
    fresh: dict[str, Task] = {}
    monkeypatch.setattr(periodic, "_tasks", fresh)
    return fresh


# The rule: next planned time


def test_next_slot_is_the_following_one_when_on_time() -> None:
    assert next_slot(100.0, 10.0, 0, 104.0) == Slot(1, 110.0, 0)
    assert next_slot(100.0, 10.0, 0, 110.0) == Slot(1, 110.0, 0)  # exactly due: not missed


def test_next_slot_skips_every_planned_time_already_past() -> None:
    assert next_slot(100.0, 10.0, 0, 110.5) == Slot(2, 120.0, 1)
    assert next_slot(100.0, 10.0, 0, 125.0) == Slot(3, 130.0, 2)
    assert next_slot(100.0, 10.0, 7, 1000.0) == Slot(90, 1000.0, 82)


def test_next_slot_refuses_a_non_positive_interval() -> None:
    with pytest.raises(ValueError):
        next_slot(0.0, 0.0, 0, 1.0)


@given(
    start=st.floats(0, 1e6),
    interval=st.floats(0.001, 1e4),
    done=st.integers(0, 10**6),
    late=st.floats(0, 1e7),
)
def test_next_slot_is_the_first_planned_time_not_in_the_past(
    start: float, interval: float, done: int, late: float
) -> None:
    now = start + done * interval + late
    slot = next_slot(start, interval, done, now)
    assert slot.index > done
    assert slot.skipped == slot.index - done - 1
    assert slot.at == start + slot.index * interval  # from start, not accumulated
    assert slot.at >= now
    if slot.skipped:  # every skipped one was really past
        assert start + (slot.index - 1) * interval < now


# The loop, with a fake clock: exact, no real time passes


class FakeClock:
    """``clock()`` for the scheduler; ``wait`` advances it and stops after ``runs``."""

    def __init__(self, runs: int, start: float = 1000.0) -> None:
        self.now = start
        self.runs_left = runs
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return self.runs_left <= 0


def fake_loop(
    interval: float, runs: int, duration: Callable[[int], float],
    wait: Callable[[FakeClock, float], bool] | None = None,
) -> tuple[list[tuple[Slot, float]], FakeClock]:
    """Run one task's loop for ``runs`` runs; run n takes ``duration(n)`` fake seconds."""
    clock = FakeClock(runs)
    started: list[tuple[Slot, float]] = []

    def run(task: Task, slot: Slot) -> None:
        started.append((slot, clock.now))
        clock.now += duration(len(started) - 1)
        clock.runs_left -= 1

    def waiting(seconds: float) -> bool:
        return wait(clock, seconds) if wait else clock.wait(seconds)

    scheduler = Scheduler([], run, clock=clock, wait=waiting)
    scheduler.loop(Task("job", lambda: None, interval), clock.now)
    return started, clock


def test_no_drift_over_many_runs() -> None:
    """10,000 runs of 30 ms every 100 ms start exactly at start + k * 100 ms.

    A loop that sleeps the interval after each run would be 300 s late by the end.
    """
    started, _ = fake_loop(0.1, 10_000, lambda n: 0.03)
    assert len(started) == 10_000
    for k, (slot, at) in enumerate(started):
        assert slot.index == k
        assert at == pytest.approx(1000.0 + k * 0.1, abs=1e-9)


def test_an_overrun_skips_the_missed_runs_instead_of_piling_them_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    durations = {1: 0.35}  # run 1 (at 0.1) ends at 0.45: 0.2, 0.3 and 0.4 are missed
    caplog.set_level(logging.WARNING)
    started, _ = fake_loop(0.1, 6, lambda n: durations.get(n, 0.01))
    times = [round(at - 1000.0, 9) for _, at in started]
    assert times == [0.0, 0.1, 0.5, 0.6, 0.7, 0.8]
    assert [slot.skipped for slot, _ in started] == [0, 0, 3, 0, 0, 0]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.1 - 1e-9  # never a burst of catch-up runs
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith("Task job: skipped 3 run(s)")


def test_a_late_wake_up_runs_once_then_returns_to_the_plan(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The hub busy elsewhere (CPU-bound task) wakes us 0.25 s late: one run, no burst."""
    def wait(clock: FakeClock, seconds: float) -> bool:
        clock.now += seconds + (0.25 if len(clock.waits) == 1 else 0)  # the wait for 0.2
        clock.waits.append(seconds)
        return clock.runs_left <= 0

    caplog.set_level(logging.WARNING)
    started, _ = fake_loop(0.1, 5, lambda n: 0.0, wait)
    times = [round(at - 1000.0, 9) for _, at in started]
    assert times == [0.0, 0.1, 0.45, 0.5, 0.6]  # 0.2 ran late at 0.45; 0.3 and 0.4 skipped
    assert [slot.index for slot, _ in started] == [0, 1, 2, 5, 6]
    assert "Task job: skipped 2 run(s)" in caplog.text


def test_never_starts_early_even_if_the_wait_returns_early() -> None:
    def wait(clock: FakeClock, seconds: float) -> bool:
        clock.now += seconds - 0.0005 if seconds > 0.001 else seconds  # a timer firing early
        return clock.runs_left <= 0

    started, _ = fake_loop(0.1, 5, lambda n: 0.0, wait)
    for slot, at in started:
        assert at >= slot.at


# The scheduler in real greenlets (no monkey-patching needed: tasks use gevent.sleep)


def test_a_slow_task_neither_delays_others_nor_overlaps_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    active = {"slow": 0, "fast": 0}
    most = {"slow": 0, "fast": 0}
    runs = {"slow": 0, "fast": 0}

    def work(name: str, seconds: float) -> Callable[[], None]:
        def func() -> None:
            active[name] += 1
            most[name] = max(most[name], active[name])
            runs[name] += 1
            try:
                gevent.sleep(seconds)
            finally:
                active[name] -= 1
        return func

    tasks = [Task("slow", work("slow", 0.3), 0.05), Task("fast", work("fast", 0.0), 0.05)]
    scheduler = Scheduler(tasks, lambda task, slot: task.func())
    caplog.set_level(logging.WARNING)
    scheduler.start()
    gevent.sleep(1.2)  # 24 fast slots; the slow task fits about 4 runs
    assert scheduler.stop(timeout=5) == []
    assert most == {"slow": 1, "fast": 1}
    assert runs["fast"] >= 10  # a sequential loop would give about 4
    assert 2 <= runs["slow"] <= 5
    assert "Task slow: skipped" in caplog.text


def test_planned_times_hold_on_a_real_clock() -> None:
    """Each run starts at or after its planned time and, typically, right then.

    The median bounds lateness without failing on a few stalls of a loaded
    machine; a sleep-after-run loop would be late by 8 ms more every run.
    """
    records: list[tuple[Slot, float]] = []

    def run(task: Task, slot: Slot) -> None:
        records.append((slot, time.monotonic()))
        gevent.sleep(0.008)

    scheduler = Scheduler([Task("tick", lambda: None, 0.02)], run)
    scheduler.start()
    gevent.sleep(1.0)
    scheduler.stop(timeout=5)
    assert scheduler.started_at is not None
    assert len(records) >= 10
    lateness = [at - slot.at for slot, at in records]
    assert min(lateness) >= 0
    assert all(slot.at == scheduler.started_at + slot.index * 0.02 for slot, _ in records)
    assert statistics.median(lateness) < 0.02
    assert records[-1][0].index >= 25  # 50 slots in the second; a drifting loop gets < 36


def test_stop_waits_for_a_running_task_and_kills_it_after_the_timeout() -> None:
    finished: list[str] = []

    def long() -> None:
        try:
            gevent.sleep(30)
        finally:
            finished.append("cleaned up")

    scheduler = Scheduler([Task("long", long, 60)], lambda task, slot: task.func())
    scheduler.start()
    gevent.sleep(0.05)
    assert scheduler.running == ["long"]
    began = time.monotonic()
    assert scheduler.stop(timeout=0.2) == ["long"]
    assert time.monotonic() - began < 5
    assert finished == ["cleaned up"]  # killed with GreenletExit: finally blocks ran


# One run: logging, on_error


def boom() -> None:
    1 / 0  # noqa: B018


def test_success_logs_ok(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    assert run_task(Task("update_something", lambda: None, 60)) is True
    assert [r.getMessage() for r in caplog.records] == ["Task update_something: OK."]


def test_failure_logs_the_traceback_at_error_without_on_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    assert run_task(Task("update_something", boom, 60)) is False
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    text = record.getMessage()
    assert text.startswith("Task update_something failed:\nTraceback (most recent call last):\n")
    assert 'in boom\n    1 / 0' in text
    assert text.endswith("ZeroDivisionError: division by zero")
    assert "run_task" not in text  # starts at the task's code, not the runner's


def test_failure_calls_on_error_with_the_logged_text(caplog: pytest.LogCaptureFixture) -> None:
    received: list[str] = []
    caplog.set_level(logging.INFO)
    run_task(Task("update_something", boom, 60), received.append)
    error, ok = caplog.records
    assert received == [error.getMessage()]
    assert (ok.levelno, ok.getMessage()) == (logging.INFO, "on_error: OK.")


def test_a_failing_on_error_is_logged_with_its_own_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def on_error(error: str) -> None:
        raise OSError("mail server down")

    caplog.set_level(logging.INFO)
    run_task(Task("update_something", boom, 60), on_error)
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert messages[0][1].startswith("Task update_something failed:")
    level, text = messages[1]
    assert level == logging.ERROR
    assert text.startswith("on_error failed:\nTraceback (most recent call last):\n")
    assert text.endswith("OSError: mail server down")
    assert "on_error: OK." not in [m for _, m in messages]


# @seconds


def test_seconds_registers_and_returns_the_function(registry: dict[str, Task]) -> None:
    def update_something() -> None:
        pass

    assert seconds(0.5)(update_something) is update_something
    assert background.tasks() == [Task("update_something", update_something, 0.5)]


def test_the_registry_is_apart_from_the_command_and_loads_no_gevent() -> None:
    """A product's tasks module imports ``seconds`` (0.2's path: apiphant.background); the
    registry itself, apiphant.periodic, is plain Python, testable without gevent."""
    assert background.seconds is periodic.seconds and background.tasks is periodic.tasks
    code = ("import sys, apiphant.periodic; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'gevent'))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=60)  # fmt: skip
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


@pytest.mark.parametrize("interval", [0, -1, math.nan, math.inf, "60", True, None])
def test_seconds_refuses_a_bad_interval(interval: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        seconds(interval)  # type: ignore[arg-type]


def test_seconds_refuses_misuse(registry: dict[str, Task]) -> None:
    def task() -> None:
        pass

    def needs(argument: int) -> None:
        pass

    async def coroutine() -> None:
        pass

    with pytest.raises(TypeError, match=r"@seconds\(60\)"):
        seconds(task)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="without arguments"):
        seconds(1)(needs)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async"):
        seconds(1)(coroutine)
    assert registry == {}


def test_two_tasks_with_one_name_are_refused(registry: dict[str, Task]) -> None:
    def update() -> None:
        pass

    seconds(1)(update)
    seconds(2)(update)  # the same function again (a re-import): replaced
    assert registry["update"].interval == 2
    other = type(update)(update.__code__, {"__name__": "elsewhere"}, "update")
    with pytest.raises(ValueError, match="already used"):
        seconds(1)(other)


# The example product


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """myproduct/api/background.py, imported under a private name, temp folder in tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    path = REPO / "myproduct" / "api" / "background.py"
    spec = importlib.util.spec_from_file_location("example_background", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_task_deletes_only_old_uploads(example, tmp_path: Path) -> None:
    example.clean_old_uploads()  # no folder yet: nothing to do, no error
    folder = tmp_path / "myproduct-uploads"
    folder.mkdir()
    (folder / "old").write_text("x")
    (folder / "new").write_text("x")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(folder / "old", (two_days_ago, two_days_ago))
    assert [t.name for t in background.tasks()] == ["clean_old_uploads"]
    example.clean_old_uploads()
    assert sorted(p.name for p in folder.iterdir()) == ["new"]


def test_example_on_error_keeps_the_latest_error(example, tmp_path: Path) -> None:
    example.on_error("Task a failed:\nfirst")
    example.on_error("Task b failed:\nsecond")
    text = (tmp_path / "myproduct-background-error.txt").read_text()
    assert "Task b failed:\nsecond" in text and "first" not in text


# apiphant-background, the real process


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTRY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("APIPHANT_LOG_LEVEL", None)
    env.update(extra)
    return env


class Process:
    """``python -m apiphant.background`` with its output in a file; always stopped."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.log_path = cwd / f"background-{time.monotonic_ns()}.log"
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "apiphant.background", *args],
                cwd=cwd, env=env or environment(), stdout=out, stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 20.0) -> str:
        """Wait until ``pattern`` (a regex) occurs ``count`` times in the output."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()
            if len(re.findall(pattern, text, re.MULTILINE)) >= count:
                return text
            if self.process.poll() is not None:
                code = self.process.returncode
                raise AssertionError(f"exited {code} before {pattern!r}:\n{text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} x {pattern!r} within {timeout}s:\n{text}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def start() -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def start(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Process:
        started.append(Process(cwd, *args, env=env))
        return started[-1]

    yield start
    for process in started:
        process.kill()


def messages(log: str) -> list[str]:
    """The message part of the log lines in the seed's format."""
    return [m[2] for m in (LINE.match(line) for line in log.splitlines()) if m]


def test_example_product_prints_the_seed_lines(start, tmp_path: Path) -> None:
    uploads = tmp_path / "myproduct-uploads"
    uploads.mkdir()
    (uploads / "old").write_text("x")
    os.utime(uploads / "old", (0, 0))
    proc = start(REPO, "myproduct", env=environment(TMPDIR=str(tmp_path)))
    log = proc.wait_for(r"Task clean_old_uploads: OK\.$")
    assert proc.stop() == 0
    log = proc.log()
    assert messages(log)[:2] == [
        "Scheduling myproduct.api.background (myproduct/api/background.py): "
        "clean_old_uploads every 3600s",
        "Task clean_old_uploads: OK.",
    ]
    assert "Stopped." in messages(log)
    assert not uploads.joinpath("old").exists()
    assert "Traceback" not in log and "Warning" not in log


TASKS = """\
import time
from gevent import monkey
from apiphant.background import seconds

def on_error(error):
    with open("on_error.txt", "a") as f:
        f.write(error + "\\n<end>\\n")
    {on_error_fails}

@seconds(0.2)
def tick():
    assert monkey.is_module_patched("socket") and monkey.is_module_patched("time")

@seconds(0.3)
def update_something():
    1/0

@seconds(0.1)
def slow():
    time.sleep(0.35)  # monkey-patched: cooperative
"""


def test_runs_log_ok_and_failures_with_on_error_and_skips(start, make_product) -> None:
    product = make_product({"api/background.py": TASKS.format(on_error_fails="")}, "shop")
    cwd = product.parent
    proc = start(cwd, "shop")
    proc.wait_for(r"^INFO .*\] on_error: OK\.$", count=2)
    proc.wait_for(r"Task tick: OK\.$", count=3)
    proc.wait_for(r"^WARNING .*\] Task slow: skipped \d+ run\(s\)")
    assert proc.stop() == 0
    log = proc.log()
    failure = re.search(
        r"^ERROR at \S+ \[[^]]+\] Task update_something failed:\n"
        r"(Traceback.*?ZeroDivisionError.*?)$",
        log, re.MULTILINE | re.DOTALL,
    )
    assert failure, log
    assert 'shop/api/background.py", line 16, in update_something' in failure[1]
    errors = (cwd / "on_error.txt").read_text().split("\n<end>\n")
    assert errors[0] == f"Task update_something failed:\n{failure[1]}"
    assert messages(log)[0].startswith("Scheduling shop.api.background")
    assert messages(log)[-1] == "Stopped."


def test_a_failing_on_error_is_logged_and_the_tasks_go_on(start, make_product) -> None:
    source = TASKS.format(on_error_fails='raise OSError("mail server down")')
    product = make_product({"api/background.py": source}, "shop")
    proc = start(product.parent, "shop")
    log = proc.wait_for(r"^ERROR .*\] on_error failed:$", count=2)
    assert proc.stop() == 0
    assert re.search(r"on_error failed:\nTraceback.*\nOSError: mail server down$", log,
                     re.MULTILINE | re.DOTALL)
    assert "on_error: OK." not in log


SLOW_PACKAGE = {
    "api/background/__init__.py": "from . import work  # noqa: F401\n",
    "api/background/work.py": """\
        import time
        from pathlib import Path
        from apiphant.background import seconds

        @seconds(60)
        def work():
            Path("started").touch()
            try:
                time.sleep(float(Path("duration").read_text()))
                Path("finished").touch()
            finally:
                Path("cleaned").touch()
    """,
}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_lets_the_running_task_finish_then_exits_0(start, make_product, sig) -> None:
    product = make_product(SLOW_PACKAGE, "shop")
    cwd = product.parent
    (cwd / "duration").write_text("1.0")
    proc = start(cwd, "shop")
    proc.wait_for(r"Scheduling shop\.api\.background \(shop/api/background/__init__\.py\)")
    deadline = time.monotonic() + 20
    while not (cwd / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.stop(sig) == 0
    assert (cwd / "finished").exists()
    log = proc.log()
    name = signal.Signals(sig).name
    assert f"{name}: stopping; waiting up to 10s for running tasks (work)." in messages(log)
    assert messages(log)[-2:] == ["Task work: OK.", "Stopped."]
    assert "Traceback" not in log and "KeyboardInterrupt" not in log


def test_the_stop_timeout_bounds_the_wait(start, make_product) -> None:
    product = make_product(SLOW_PACKAGE, "shop")
    cwd = product.parent
    (cwd / "duration").write_text("60")
    proc = start(cwd, "shop", "--stop-timeout", "0.5")
    deadline = time.monotonic() + 20
    while not (cwd / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    began = time.monotonic()
    assert proc.stop() == 0
    assert time.monotonic() - began < 15  # 0.5 s plus start-up slack, not 60 s
    assert "Killed tasks still running after 0.5s: work." in messages(proc.log())
    assert (cwd / "cleaned").exists() and not (cwd / "finished").exists()


def test_a_failure_reaches_sentry_tagged_with_the_task(start, make_product) -> None:
    product = make_product({"api/background.py": """\
        from apiphant.background import seconds

        @seconds(60)
        def update_something():
            1/0
    """}, "shop")
    with capture_sentry() as sentry:
        proc = start(product.parent, "shop", env=environment(**sentry.env()))
        try:
            [event] = sentry.wait_for(1, timeout=20)
        finally:
            assert proc.stop() == 0
        assert sentry.problems() == []
        assert event["tags"]["task"] == "update_something"
        assert event["tags"]["component"] == "background"
        [exception] = event["exception"]["values"]
        assert exception["type"] == "ZeroDivisionError"
        frames = exception["stacktrace"]["frames"]
        assert frames[-1]["function"] == "update_something"
        [envelope] = [e for e in sentry.envelopes() if any(i.type == "event" for i in e.items)]
        assert envelope.project == "1"
        assert "sentry_key=public" in envelope.http_headers["X-Sentry-Auth"]
    assert "Task update_something failed:" in proc.log()


@pytest.mark.parametrize(
    "files, expected",
    [
        (None, "apiphant-background: no such product folder: shop"),
        ({}, "apiphant-background: no background module: create shop/api/background.py "
             "(or a package shop/api/background/) with @seconds(N) tasks"),
        ({"api/background.py": "x = 1\n"},
         "apiphant-background: no task registered in shop/api/background.py: "
         "decorate a function with @seconds(N)"),
        ({"api/background.py": "import time\ndef broken(:\n"},
         "apiphant-background: cannot import shop/api/background.py:2: "
         "SyntaxError: invalid syntax"),
        ({"api/background.py": "from apiphant.background import seconds\n\n"
                               "@seconds(0)\ndef update():\n    pass\n"},
         "apiphant-background: cannot import shop/api/background.py:3: "
         "ValueError: @seconds(N) needs a positive finite number, got 0"),
        ({"api/background/__init__.py": "from . import ok, broken\n",
          "api/background/ok.py": "",
          "api/background/broken.py": "import json\nimport not_a_module_xyz\n"},
         "apiphant-background: cannot import shop/api/background/broken.py:2: "
         "ModuleNotFoundError: No module named 'not_a_module_xyz'"),
        ({"api/background/__init__.py": "from . import tasks\n",
          "api/background/tasks.py": "LIMIT = 1 / 0\n"},
         "apiphant-background: cannot import shop/api/background/tasks.py:1: "
         "ZeroDivisionError: division by zero"),
        ({"api/background.py": "from apiphant.background import seconds\non_error = 1\n"
                               "seconds(1)(lambda: None)\n"},
         "apiphant-background: on_error in shop/api/background.py is not a function"),
    ],
    ids=["no-folder", "no-module", "no-task", "syntax", "bad-interval", "task-module-import",
         "task-module-error", "on_error-not-callable"],
)
def test_clear_one_line_errors(make_product, tmp_path: Path, files, expected: str) -> None:
    cwd = tmp_path / "products"
    cwd.mkdir(exist_ok=True)
    if files is not None:
        make_product(files, "shop")
    result = subprocess.run(
        [sys.executable, "-m", "apiphant.background", "shop"], cwd=cwd, env=environment(),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2  # bad input, as for every command
    assert result.stderr == expected + "\n"
    assert result.stdout == ""


def test_a_bad_stop_timeout_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "apiphant.background", "shop", "--stop-timeout", "-1"],
        cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "--stop-timeout: expected seconds >= 0, got '-1'" in result.stderr
