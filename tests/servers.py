"""Start real apiphant processes on loopback for tests, and always stop them."""

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MYPRODUCT = REPO / "myproduct"
#: apiphant's own self-test fixture (the seed's self.py, the escape hatches), not the template.
SELFCHECK = REPO / "tests" / "products" / "selfcheck"


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def service_ports(count: int, host: str = "127.0.0.1") -> int:
    """The first of ``count`` consecutive free ports below the ephemeral range, as a service's
    would be: a restarting worker must find its port free, and an ephemeral port can be taken
    by any outgoing connection while the worker is down. Probed with SO_REUSEADDR, as the
    servers bind (connections in TIME_WAIT do not keep them from binding)."""
    ranges = Path("/proc/sys/net/ipv4/ip_local_port_range")
    low = int(ranges.read_text().split()[0]) if ranges.exists() else 32768
    pick = random.Random()
    for _ in range(200):
        base = pick.randrange(10000, max(low, 10000 + count + 1) - count)
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port))
                sock.listen(1)
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports below {low} on {host}")


def wait_for_port(host: str, port: int, process: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


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
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


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
