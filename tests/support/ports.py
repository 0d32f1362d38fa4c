"""Free ports on loopback (or a test host's address), and waiting for a listener."""

import random
import socket
import subprocess
import time
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel's pick, so an ephemeral one)."""
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


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """Something accepts connections on ``host:port`` now."""
    try:
        socket.create_connection((host, port), timeout).close()
        return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, process: subprocess.Popen, timeout: float = 15.0) -> None:
    """Wait (bounded) until ``process`` listens on ``host:port``; its early exit is an error."""
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
