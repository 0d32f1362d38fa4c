"""One client against a deployed product: it must not take the pool down.

The stack is the deploy's own (tests/fault_helpers.py): Nginx with the main
config and site the kit renders, in front of two workers under Supervisor.
Nginx's header timeout is 3 s here (deploy.toml's nginx.client_timeout), so
that slow clients are cut within the test.

- A client looping requests whose body the worker never reads (an unknown
  route, a GET or PUT with a body) while a legitimate load runs: no
  legitimate request fails, and every attacking request gets its answer. A
  worker that closed with the body unread sent a reset, and Nginx took it out
  of rotation for fail_timeout.
- 5,000 slow-header connections while a legitimate load runs: no legitimate
  request fails (Debian's 768 worker_connections were exhausted by 1,500), and
  Nginx cuts every slow one at its header timeout.

The figures are printed at the end of the run (conftest.py).
"""

import http.client
import os
import selectors
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.fault_helpers import HEADERS, NGINX, SUPERVISORD, Load, Stack

pytestmark = pytest.mark.skipif(
    not (os.path.exists(NGINX) and os.path.exists(SUPERVISORD)),
    reason="needs nginx and supervisord",
)

HEADER_TIMEOUT = 3
#: Scenario -> its figures, printed by conftest's terminal summary.
FIGURES: dict[str, dict] = {}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    running = Stack(
        tmp_path_factory.mktemp("hardening"), nginx_toml=f"client_timeout = {HEADER_TIMEOUT}"
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()


#: What the attacker sends, in turn: bodies no worker reads, each with the answer it must get.
ATTACKS = (
    ("POST", "/api/v0/nothere/read", 100_000, 404),
    ("GET", "/api/v0/ledger/read", 70_000, 405),
    ("PUT", "/api/v0/ledger/create", 70_000, 405),
)


class Attacker:
    """One client looping the attacks on one keep-alive connection, with no pause, bounded in
    time and count; every answer is counted by what it was."""

    def __init__(self, port: int, seconds: float, limit: int = 100_000) -> None:
        self.port = port
        self.seconds = seconds
        self.limit = limit
        self.answers: Counter = Counter()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        deadline = time.monotonic() + self.seconds
        for n in range(self.limit):
            if time.monotonic() > deadline:
                break
            method, path, size, expected = ATTACKS[n % len(ATTACKS)]
            try:
                conn.request(method, path, b"x" * size, HEADERS)
                response = conn.getresponse()
                response.read()
                got = "expected" if response.status == expected else str(response.status)
            except (OSError, http.client.HTTPException) as error:
                got = type(error).__name__
                conn.close()
            self.answers[f"{method} {got}"] += 1
        conn.close()


def test_bodies_left_unread_do_not_take_workers_out_of_rotation(stack: Stack) -> None:
    stack.settle()
    attacker = Attacker(stack.nginx_port, seconds=16)
    with Load(stack.nginx_port, tag="unread", limit=25) as load:
        load.wait_sent(100)
        attacker.thread.start()
        attacker.thread.join(30)
    assert not attacker.thread.is_alive()
    errors = (stack.folder / "log" / "nginx-error.log").read_text(errors="replace")
    figures = load.figures(stack.ledger_counts())
    FIGURES["a client sending bodies no worker reads"] = {
        "legitimate requests": figures["requests"],
        "legitimate failed": sum(figures["failed"].values()),
        "attacking requests": sum(attacker.answers.values()),
        "attack answers": dict(attacker.answers),
        "resets seen by Nginx": errors.count("Connection reset by peer"),
    }
    assert figures["requests"] >= 1000, figures
    assert figures["failed"] == {"read": 0, "create": 0, "update": 0}, figures
    assert figures["creates recorded twice"] == 0, figures
    assert sum(attacker.answers.values()) >= 100, attacker.answers
    assert set(attacker.answers) == {f"{m} expected" for m, _, _, _ in ATTACKS}, attacker.answers
    assert "Connection reset by peer" not in errors, errors[-2000:]
    assert "no live upstreams" not in errors, errors[-2000:]


class SlowClients:
    """``count`` connections that send a request line, then one header line a second and
    never the end of the headers; each one's life is timed until the server cuts it."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.opened: dict[socket.socket, float] = {}
        self.lived: list[float] = []
        self.answered = 0  # got bytes back (a 408 page) before the close
        self.refused = 0

    def open(self) -> None:
        for _ in range(self.count):
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                sock.sendall(b"POST /api/v0/ledger/read HTTP/1.1\r\nHost: api.example.com\r\n")
            except OSError:
                self.refused += 1
                continue
            sock.setblocking(False)
            self.opened[sock] = time.monotonic()

    def trickle_until_cut(self, timeout: float) -> None:
        """One header line a second to each open connection; bounded by ``timeout``."""
        selector = selectors.DefaultSelector()
        for sock in self.opened:
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        next_line = time.monotonic() + 1
        try:
            while self.opened and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=0.2):
                    sock = key.fileobj
                    try:
                        data = sock.recv(4096)  # type: ignore[union-attr]
                    except ConnectionResetError:
                        data = b""
                    except BlockingIOError:
                        continue
                    if data:
                        self.answered += 1
                    self._cut(selector, sock)  # type: ignore[arg-type]
                if time.monotonic() >= next_line:
                    next_line += 1
                    for sock in list(self.opened):
                        try:
                            sock.send(b"X-Slow: a\r\n")
                        except OSError:
                            self._cut(selector, sock)
        finally:
            for sock in list(self.opened):
                selector.unregister(sock)
                sock.close()
            selector.close()

    def _cut(self, selector: selectors.BaseSelector, sock: socket.socket) -> None:
        if sock in self.opened:
            self.lived.append(time.monotonic() - self.opened.pop(sock))
            selector.unregister(sock)
            sock.close()


def test_slow_header_clients_do_not_shut_others_out(stack: Stack) -> None:
    stack.settle()
    slow = SlowClients(stack.nginx_port, 5000)
    with Load(stack.nginx_port, tag="slowloris", limit=60) as load:
        load.wait_sent(100)
        slow.open()
        slow.trickle_until_cut(timeout=HEADER_TIMEOUT * 6 + 10)
        sent_during = sum(load.sent.values())
        time.sleep(1)
    still_open = len(slow.opened)
    figures = load.figures(stack.ledger_counts())
    lived = sorted(slow.lived)
    FIGURES["5,000 slow-header clients"] = {
        "slow connections": slow.count,
        "refused": slow.refused,
        "cut by Nginx": len(lived),
        "seconds until cut (min, median, max)": (
            round(lived[0], 1), round(lived[len(lived) // 2], 1), round(lived[-1], 1)
        ) if lived else (),
        "legitimate requests": figures["requests"],
        "legitimate failed": sum(figures["failed"].values()),
    }  # fmt: skip
    assert slow.refused == 0, FIGURES
    assert still_open == 0, f"{still_open} slow connections were never cut"
    # Cut by the configured header timeout, not Nginx's default of 60 s.
    assert lived[-1] < HEADER_TIMEOUT * 6 + 10, FIGURES
    assert sent_during >= 200, figures
    assert figures["failed"] == {"read": 0, "create": 0, "update": 0}, figures
    errors = Path(stack.folder / "log" / "nginx-error.log").read_text(errors="replace")
    assert "worker_connections are not enough" not in errors
