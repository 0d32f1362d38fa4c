"""The systems under test, and the processes that serve them on loopback ports.

Every process the harness starts goes through ``Process``, a context manager
that stops it (and checks that it stopped) however the measurement ends.
"""

import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from apiphant.settings import schema
from tests.support.ports import free_port  # bench.run imports it from here
from tests.support.processes import stop

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
ECHO_PATH = "/api/v0/echo/read"
REQUEST_BODY = b'{"hello": "world"}'
#: apiphant's output contract: json.dumps defaults, byte for byte.
CONTRACT_BODY = b'{"hello": "world", "server": "myproduct"}'
#: The server gets core 0 and the load generator core 1, when there are two cores.
SERVER_CPU = "0"
CLIENT_CPU = "1"
#: The I/O-bound scenario's handlers wait this long, as a handler calling a database would.
IO_WAIT = 0.05
#: apiphant's product for that scenario: the echo after a gevent sleep of IO_WAIT.
SLEEPY = REPO / "bench" / "sleepy"
#: apiphant's product for the database scenarios: TechEmpower's single and multiple queries.
WORLD = REPO / "bench" / "world"
#: Every system's pool in the database scenarios: apiphant's default size, the one measured.
DB_POOL = schema.BY_NAME["db_pool_size"].default


class BenchError(Exception):
    """A system could not be started or answered wrongly: the run stops with this message."""


@dataclass(frozen=True)
class System:
    """One contender: how to start it on a port, and whether its body must match byte for byte.

    ``tree`` is an exported older apiphant (``--against REF``): served by
    ``python -m apiphant`` from that folder, whose package shadows the installed one.
    """

    key: str
    kind: str
    label: str
    exact_body: bool
    tree: Path | None = None

    def command(self, port: int, io: bool = False, db: bool = False) -> list[str]:
        """How to start it; ``io``: the I/O-bound variant, each request waiting IO_WAIT;
        ``db``: the database scenarios' app instead of the echo."""
        address = f"{HOST}:{port}"
        python = sys.executable
        app = "db" if db else "app"
        if self.kind == "apiphant":
            product = WORLD if db else SLEEPY if io else (self.tree or REPO) / "myproduct"
            if self.tree is not None:
                return [python, "-m", "apiphant", str(product), address]
            return [*apiphant_command(), str(product), address]
        if self.kind == "bare":
            return [python, "-m", "bench.peers.bare_pywsgi", address]
        if self.kind == "falcon":
            return [python, "-m", "bench.peers.bare_pywsgi", address, "--app", "falcon"]
        if self.kind == "flask":
            # One worker, like one apiphant process; gunicorn's defaults otherwise
            # (1,000 worker connections, backlog 2048, TCP_NODELAY, no access log).
            return [python, "-m", "gunicorn", "-k", "gevent", "-w", "1", "-b", address,
                    f"bench.peers.flask_{app}:app"]  # fmt: skip
        if self.kind in ("starlette", "fastapi"):
            # One worker, uvloop and httptools (uvicorn's fastest), no access log: apiphant
            # logs no request by default either.
            return [python, "-m", "uvicorn", f"bench.peers.{self.kind}_{app}:app", "--host", HOST,
                    "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                    "--no-access-log", "--log-level", "warning"]  # fmt: skip
        if self.kind == "granian":
            # One worker, granian's defaults otherwise; apiphant's own App (create_app).
            return [python, "-m", "granian", "--interface", "wsgi", "--host", HOST,
                    "--port", str(port), "--workers", "1", "--no-ws",
                    "bench.peers.granian_app:app"]  # fmt: skip
        raise ValueError(self.kind)

    def env(self, io: bool = False, db_url: str | None = None) -> dict[str, str]:
        """Extra environment: the peers' I/O-bound variant waits in their handler; the
        database scenarios' systems get the database (and the peers apiphant's pool size)."""
        if db_url is not None:
            return {"DATABASE_URL": db_url, "BENCH_DB_POOL": str(DB_POOL)}
        if not io:
            return {}
        if self.kind == "granian":
            return {"BENCH_PRODUCT": str(SLEEPY)}  # the same App, its handler in a thread
        return {"BENCH_SLEEP": str(IO_WAIT)}

    @property
    def cwd(self) -> Path:
        return self.tree or REPO

    @property
    def stop_signal(self) -> int:
        """gunicorn drains keep-alive clients for 30 s on SIGTERM; SIGINT is its quick stop."""
        return signal.SIGINT if self.kind == "flask" else signal.SIGTERM


SYSTEMS = {
    "apiphant": System("apiphant", "apiphant", "apiphant (`apiphant` command)", exact_body=True),
    "bare": System("bare", "bare", "bare gevent.pywsgi + TCP_NODELAY", exact_body=True),
    "flask": System("flask", "flask", "Flask 3 on gunicorn -k gevent -w 1", exact_body=False),
    "falcon": System("falcon", "falcon", "Falcon 4 on gevent.pywsgi", exact_body=False),
    "starlette": System("starlette", "starlette", "Starlette on uvicorn (uvloop, httptools)",
                        exact_body=False),  # fmt: skip
    "fastapi": System("fastapi", "fastapi", "FastAPI on uvicorn (uvloop, httptools)",
                      exact_body=False),  # fmt: skip
    "granian": System("granian", "granian", "granian (WSGI) running apiphant's App",
                      exact_body=True),  # fmt: skip
}
BASELINE = "bare"
#: Who runs the database scenarios: apiphant, and the peers each with its usual driver.
DB_SYSTEMS = ("apiphant", "fastapi", "flask")


def export_ref(ref: str, into: Path) -> System:
    """apiphant and myproduct as they were at a git ref, as one more system to compare."""
    short = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, text=True
    )
    if short.returncode != 0:
        raise BenchError(f"unknown git ref {ref!r}: {short.stderr.strip()}")
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "apiphant", "myproduct"],
        cwd=REPO,
        capture_output=True,
    )
    if archive.returncode != 0:
        raise BenchError(f"git archive {ref} failed: {archive.stderr.decode()[:500]}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    name = short.stdout.strip()
    return System(f"apiphant@{name}", "apiphant", f"apiphant at {name}", True, tree=into)


def apiphant_command() -> list[str]:
    """The installed ``apiphant`` script of this Python, else ``python -m apiphant``."""
    script = Path(sys.executable).parent / "apiphant"
    if script.is_file():
        return [str(script)]
    found = shutil.which("apiphant")
    return [found] if found else [sys.executable, "-m", "apiphant"]


def pinned(command: list[str], cpu: str | None) -> list[str]:
    """Prefix ``taskset -c CPU`` so that server and load generator never share a core."""
    return ["taskset", "-c", cpu, *command] if cpu is not None else command


def can_pin() -> bool:
    return (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """Resident memory of a process from /proc/PID/status, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise BenchError(f"no {field} for process {pid}")


def _tree_cpu_ticks(root: int) -> int:
    """CPU time (user + system, in clock ticks) of a process and all its descendants."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        parents[int(entry)] = int(fields[1])
        ticks[int(entry)] = int(fields[11]) + int(fields[12])
    total = 0
    for pid, tick in ticks.items():
        walk = pid
        while walk > 1 and walk != root:
            walk = parents.get(walk, 0)
        if walk == root:
            total += tick
    return total


def settle(pids: list[int], timeout: float = 10.0, period: float = 0.25) -> float:
    """Wait until the servers (and their worker processes) are idle: after a wrk run
    with thousands of connections, a slow server is still answering clients that are
    gone, on the core the next system is measured on. Returns the seconds waited."""
    started = time.monotonic()
    before = sum(_tree_cpu_ticks(pid) for pid in pids)
    while time.monotonic() - started < timeout:
        time.sleep(period)
        now = sum(_tree_cpu_ticks(pid) for pid in pids)
        if now - before <= 1:  # at most one tick (10 ms) of CPU in the period, all of them
            break
        before = now
    return time.monotonic() - started


class Process:
    """A started command whose output goes to a log file; stopping it is never forgotten."""

    def __init__(
        self,
        name: str,
        command: list[str],
        log_dir: Path,
        stop_signal: int = signal.SIGTERM,
        cwd: Path = REPO,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.stop_signal = stop_signal
        self.cwd = cwd
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "Process":
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env} if self.env else None,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """Ask politely, then kill: no process of the harness outlives it."""
        if self.popen is not None:
            stop(self.popen, self.stop_signal, timeout)

    def wait_listening(self, port: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.popen is not None
            code = self.popen.poll()
            if code is not None:
                raise BenchError(f"{self.name} exited ({code}):\n{self.log_tail()}")
            try:
                socket.create_connection((HOST, port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise BenchError(f"{self.name} did not listen on {HOST}:{port}:\n{self.log_tail()}")


def check_echo(port: int, exact: bool, name: str) -> None:
    """One echo request before any load: a system that answers wrongly is not measured."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("POST", ECHO_PATH, REQUEST_BODY, {"Content-Type": "application/json"})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    expected = json.loads(CONTRACT_BODY)
    if response.status != 200 or json.loads(body) != expected:
        raise BenchError(f"{name} answered {response.status} {body!r} to the echo")
    if exact and body != CONTRACT_BODY:
        raise BenchError(f"{name} broke the output contract: {body!r} != {CONTRACT_BODY!r}")


@contextmanager
def serving(
    system: System,
    log_dir: Path,
    cpu: str | None,
    suffix: str = "",
    io: bool = False,
    db_url: str | None = None,
    check: Callable[[int, str], None] | None = None,
) -> Iterator[tuple[Process, int]]:
    """Start ``system`` on a free port, check its echo (or ``check(port, name)`` its other
    answers), yield (process, port), stop it. ``db_url``: its database scenarios' app."""
    port = free_port()
    name = f"{system.key}{suffix}"
    command = pinned(system.command(port, io, db=db_url is not None), cpu)
    env = system.env(io, db_url)
    with Process(name, command, log_dir, system.stop_signal, system.cwd, env) as proc:
        proc.wait_listening(port)
        if check is None:
            check_echo(port, system.exact_body, name)
        else:
            check(port, name)
        yield proc, port
