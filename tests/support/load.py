"""Client threads that post JSON and count every request that fails: the one load that the
fault, hardening, deploy, TLS and multi-host tests and bench/fleet.py drive.

Each caller says how to connect and what to send; the counting, the bounds and the stop are
here. Each caller keeps its own ``figures()``: what a scenario reports differs.
"""

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable

#: One request: its kind (what it is counted under), path, JSON body, and the check of the
#: decoded answer to a 200.
Request = tuple[str, str, object, Callable[[object], bool]]


class Load:
    """``threads`` clients, each with one request out at a time; thread ``t``'s request ``n``
    is ``requests(t, n)``. ``connect()`` gives an HTTP(S) connection: kept for the thread's
    next requests (keep-alive), or, with ``keep_alive=False``, a new one per request, as
    many HTTPS clients do.

    A request fails when it gets no answer (a connection or TLS error), an answer other than
    200, or a 200 whose JSON its check refuses. Each is counted by kind in ``sent`` and
    ``failed``, and kept in ``failures`` as (monotonic time, kind, why). Bounded: it stops when
    told, after ``limit`` seconds, or after ``max_requests`` per thread; ``rate`` paces each
    thread to that many requests a second (0: as fast as answers come)."""

    def __init__(
        self,
        connect: Callable[[], http.client.HTTPConnection],
        requests: Callable[[int, int], Request],
        *,
        threads: int = 8,
        headers: dict[str, str] | None = None,
        keep_alive: bool = True,
        rate: float = 0,
        limit: float = 60,
        max_requests: int = 20000,
    ) -> None:
        self.connect = connect
        self.requests = requests
        self.headers = headers or {}
        self.keep_alive = keep_alive
        self.rate = rate
        self.limit = limit
        self.max_requests = max_requests
        self.lock = threading.Lock()
        self.sent: Counter = Counter()
        self.failed: Counter = Counter()
        self.failures: list[tuple[float, str, str]] = []
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self.run, args=(n,), daemon=True) for n in range(threads)
        ]

    @property
    def total(self) -> int:
        """Requests sent so far, of every kind."""
        return sum(self.sent.values())

    def counted(self, kind: str, body: object, why: str) -> None:
        """Called under ``lock`` after each request (``why`` empty: it succeeded), for a
        caller that records more than the counts."""

    def ask(self, conn: http.client.HTTPConnection, path: str, body: object,
            check: Callable[[object], bool]) -> str:  # fmt: skip
        """One request; why it failed, or ''."""
        try:
            conn.request("POST", path, json.dumps(body), self.headers)
            response = conn.getresponse()
            answer = response.read()
            if response.status != 200:
                return str(response.status)
            got = json.loads(answer)
        except (OSError, http.client.HTTPException, ValueError) as error:
            conn.close()  # the next request connects again
            return type(error).__name__
        try:
            right = check(got)
        except Exception:  # a check that cannot read the answer: not the answer it wants
            right = False
        return "" if right else f"wrong answer {answer[:100]!r}"

    def run(self, number: int) -> None:
        conn = None
        started = time.monotonic()
        deadline = started + self.limit
        try:
            for n in range(self.max_requests):
                if self.rate > 0:  # paced: request n not before n / rate seconds
                    self.stopping.wait(max(0.0, started + n / self.rate - time.monotonic()))
                if self.stopping.is_set() or time.monotonic() > deadline:
                    break
                kind, path, body, check = self.requests(number, n)
                if conn is None:
                    conn = self.connect()
                why = self.ask(conn, path, body, check)
                if not self.keep_alive:
                    conn.close()
                    conn = None
                with self.lock:
                    self.sent[kind] += 1
                    if why:
                        self.failed[kind] += 1
                        self.failures.append((time.monotonic(), kind, why))
                    self.counted(kind, body, why)
        finally:
            if conn is not None:
                conn.close()

    def wait_sent(self, count: int, timeout: float = 20) -> None:
        """Wait (bounded) until the load has sent ``count`` requests."""
        deadline = time.monotonic() + timeout
        while self.total < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the load sent only {dict(self.sent)} in {timeout:g} s")
            time.sleep(0.05)

    def start(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        """Stop every thread after its request under way (bounded by ``timeout`` each)."""
        self.stopping.set()
        for thread in self.threads:
            if thread.is_alive():
                thread.join(timeout)

    def __enter__(self) -> "Load":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
