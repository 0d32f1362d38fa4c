"""tests/support, against real parts: the load against a live apiphant server, the stopper
against processes that ignore SIGTERM or leave children, the ports against the kernel.
Everything bounded by counts; nothing asserts a time."""

import http.client
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.load import Load
from tests.support.ports import free_port, port_open, service_ports, wait_for_port
from tests.support.processes import stop

ECHO = ("echo", "/api/v0/echo/read", {"hello": "load"},
        lambda answer: answer == {"hello": "load", "server": "myproduct"})  # fmt: skip
MISSING = ("missing", "/api/v0/nowhere/read", {}, lambda answer: True)
WRONG = ("wrong", "/api/v0/echo/read", {"hello": "load"}, lambda answer: answer == {})
BROKEN_CHECK = ("broken", "/api/v0/echo/read", {}, lambda answer: answer["absent"])


class Connections:
    """``connect`` for a Load that counts how often it was asked for a connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.made = 0

    def __call__(self) -> http.client.HTTPConnection:
        self.made += 1
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)


def test_the_load_counts_by_kind_and_says_why(live) -> None:
    """Right answers, a 404, a wrong answer and a check that cannot read the answer: each
    counted under its kind; the failures say why; the counting hook sees every request."""
    kinds = (ECHO, MISSING, WRONG, BROKEN_CHECK)
    seen: list[tuple[str, str]] = []

    class Recording(Load):
        def counted(self, kind: str, body: object, why: str) -> None:
            seen.append((kind, why))

    connect = Connections(live.port)
    with Recording(connect, lambda thread, n: kinds[n % 4], threads=2, max_requests=8) as load:
        load.wait_sent(16)
    assert load.sent == {"echo": 4, "missing": 4, "wrong": 4, "broken": 4}
    assert load.failed == {"missing": 4, "wrong": 4, "broken": 4}
    assert load.total == 16 and len(seen) == 16
    whys = {kind: why for _, kind, why in load.failures}
    assert whys["missing"] == "404"
    assert whys["wrong"].startswith("wrong answer b'{\"hello\": \"load\"")
    assert whys["broken"].startswith("wrong answer ")
    assert connect.made == 2  # keep-alive: one connection per thread, 404s included


def test_the_load_connects_per_request_without_keep_alive(live) -> None:
    connect = Connections(live.port)
    with Load(connect, lambda thread, n: ECHO, threads=2, keep_alive=False, max_requests=5) as load:
        load.wait_sent(10)
    assert load.sent == {"echo": 10} and load.failures == []
    assert connect.made == 10


def test_the_load_counts_refused_connections_and_stops_at_its_bounds() -> None:
    port = free_port()  # nothing listens there
    connect = Connections(port)
    with Load(connect, lambda thread, n: ECHO, threads=1, max_requests=3) as load:
        load.wait_sent(3)
        with pytest.raises(TimeoutError, match=r"the load sent only \{'echo': 3\}"):
            load.wait_sent(4, timeout=0.3)  # max_requests reached: no fourth
    assert [why for _, _, why in load.failures] == ["ConnectionRefusedError"] * 3
    assert not any(thread.is_alive() for thread in load.threads)


def test_stop_kills_what_ignores_sigterm() -> None:
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, sys, time; signal.signal(signal.SIGTERM, "
         "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline() == "ready\n"
        assert stop(stubborn, timeout=0.5) == -signal.SIGKILL
    finally:
        stubborn.kill()
        stubborn.wait(5)
    done = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    done.wait(10)
    assert stop(done) == 3  # already gone: reaped, its status kept


def test_stop_takes_the_whole_group(tmp_path: Path) -> None:
    """A shell whose child sleeps: stopping the group stops the child too."""
    pid_file = tmp_path / "child.pid"
    shell = subprocess.Popen(
        ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], start_new_session=True
    )
    try:
        for _ in range(200):  # bounded: the shell writes it at once
            if pid_file.exists() and pid_file.read_text().strip():
                break
            time.sleep(0.05)
        child = int(pid_file.read_text())
        assert stop(shell, group=True, timeout=10) == -signal.SIGTERM
        assert not Path(f"/proc/{child}").exists() or _zombie(child)
    finally:
        stop(shell, signal.SIGKILL, group=True, timeout=5)


def _zombie(pid: int) -> bool:
    """A process that exited and waits for its parent (here: init) to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_ports(live) -> None:
    base = service_ports(3)
    for port in range(base, base + 3):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
    assert port_open("127.0.0.1", live.port)
    assert not port_open("127.0.0.1", free_port())
    wait_for_port("127.0.0.1", live.port, live.process)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(10)
    with pytest.raises(RuntimeError, match="server exited with 0"):
        wait_for_port("127.0.0.1", free_port(), gone, timeout=5)
