"""Start real apiphant processes on loopback for tests, and always stop them."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port, wait_for_port  # tests import both from here too
from tests.support.processes import stop

REPO = Path(__file__).resolve().parent.parent
MYPRODUCT = REPO / "myproduct"
#: apiphant's own self-test fixture (the seed's self.py, the escape hatches), not the template.
SELFCHECK = REPO / "tests" / "products" / "selfcheck"


@dataclass
class Live:
    """A running server: its process, address and log file."""

    process: subprocess.Popen
    host: str
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        return stop(self.process, sig, timeout)


def start(product: Path, tmp_path: Path, *args: str, host: str = "127.0.0.1",
          env: dict[str, str] | None = None) -> Live:
    port = free_port(host)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    log_path = tmp_path / f"server-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "apiphant", str(product), address, *args],
        stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    live = Live(process, host, port, log_path)
    try:
        wait_for_port(host, port, process)
    except Exception:
        live.stop(signal.SIGKILL)
        raise RuntimeError(f"server did not start:\n{live.log()}") from None
    return live


@contextlib.contextmanager
def serving(product: Path, tmp_path: Path, *args: str, **kwargs) -> Iterator[Live]:
    live = start(product, tmp_path, *args, **kwargs)
    try:
        yield live
    finally:
        live.stop(signal.SIGTERM, timeout=10)


def raw_exchange(host: str, port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection and read until the server closes or times out."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


@contextlib.contextmanager
def server_in_thread(app, limits=None, connection_class=None) -> Iterator:
    """A real apiphant Server on a loopback port, run by its own gevent hub in a thread.

    The test talks to it with plain blocking sockets; it is drained (1 s) and
    its thread joined on the way out, also when the test fails.
    """
    import threading

    import gevent.event

    from apiphant.server import Limits, Server

    ready = threading.Event()
    holder: dict = {}

    def run() -> None:
        server = Server(("127.0.0.1", 0), app, limits or Limits())
        if connection_class is not None:
            server.connection_class = connection_class
        server.start()
        holder["server"], holder["stop"] = server, gevent.event.Event()
        holder["hub"] = gevent.get_hub()
        ready.set()
        holder["stop"].wait()
        server.drain(timeout=1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10), "the server thread did not start"
    try:
        yield holder["server"]
    finally:
        holder["hub"].loop.run_callback_threadsafe(holder["stop"].set)
        thread.join(10)
