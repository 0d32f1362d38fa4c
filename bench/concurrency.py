"""The concurrency probe: N keep-alive connections held open on one worker, and its RSS.

Client processes (``python -m bench.concurrency client ...``) each open their
share of the connections from their own loopback source address (so
ephemeral ports never run short), then, at the parent's word, send one
request on every connection and read every answer, twice. The parent reads
the server's memory from /proc between the steps. Raw non-blocking sockets
and epoll keep a client small enough for thousands of connections.
"""

import argparse
import errno
import json
import math
import resource
import selectors
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from bench.servers import (
    CONTRACT_BODY,
    ECHO_PATH,
    HOST,
    REPO,
    REQUEST_BODY,
    BenchError,
    pinned,
    rss_kib,
)

REQUEST = (
    f"POST {ECHO_PATH} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
    f"Content-Length: {len(REQUEST_BODY)}\r\n\r\n"
).encode() + REQUEST_BODY
EXPECTED = json.loads(CONTRACT_BODY)
PER_CLIENT = 5000
#: Connects in flight per client: below the listen backlog, so no SYN is dropped.
MAX_PENDING = 64
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
STEP_TIMEOUT = 60.0


def _raise_open_files() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _open(port: int, count: int, source: str) -> tuple[list[socket.socket], int]:
    """Open ``count`` connections, at most MAX_PENDING connecting at once."""
    sel = selectors.DefaultSelector()
    opened: list[socket.socket] = []
    errors = started = 0
    deadline = time.monotonic() + STEP_TIMEOUT
    while (started < count or sel.get_map()) and time.monotonic() < deadline:
        while started < count and len(sel.get_map()) < MAX_PENDING:
            started += 1
            sock = socket.socket()
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((source, 0))
            except OSError:
                pass  # the default source address still works, with fewer ports
            code = sock.connect_ex((HOST, port))
            if code not in (0, errno.EINPROGRESS):
                errors += 1
                sock.close()
                continue
            sel.register(sock, selectors.EVENT_WRITE)
        for key, _ in sel.select(timeout=1.0):
            sock = key.fileobj
            sel.unregister(sock)
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                errors += 1
                sock.close()
            else:
                opened.append(sock)
    for key in list(sel.get_map().values()):
        errors += 1
        key.fileobj.close()
    sel.close()
    return opened, errors + count - started


def _complete(buffer: bytes) -> tuple[bool, int, bytes]:
    """(done, status, body) for what arrived so far of one response."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return False, 0, b""
    head = buffer[:end].decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    body = buffer[end + 4 : end + 4 + length]
    return len(body) == length, status, body


@dataclass
class Round:
    """What one round of requests on every connection gave."""

    ok: int = 0
    wrong: int = 0
    closed: int = 0
    unanswered: int = 0
    seconds: float = 0.0
    sample: list[str] = field(default_factory=list)


def _round(socks: list[socket.socket]) -> Round:
    """Send one request on every connection, then read every answer."""
    result = Round()
    started = time.monotonic()
    sel = selectors.DefaultSelector()
    buffers: dict[socket.socket, bytes] = {}
    for sock in socks:
        try:
            sock.send(REQUEST)
        except OSError:
            result.closed += 1
            continue
        buffers[sock] = b""
        sel.register(sock, selectors.EVENT_READ)
    deadline = started + STEP_TIMEOUT
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            sock = key.fileobj
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                result.closed += 1
                sel.unregister(sock)
                continue
            buffers[sock] += chunk
            done, status, body = _complete(buffers[sock])
            if done:
                sel.unregister(sock)
                if status == 200 and json.loads(body) == EXPECTED:
                    result.ok += 1
                else:
                    result.wrong += 1
                    if len(result.sample) < 3:
                        result.sample.append(buffers[sock][:200].decode("latin-1"))
    result.unanswered = len(sel.get_map())
    sel.close()
    result.seconds = time.monotonic() - started
    return result


def client(port: int, count: int, source: str) -> int:
    """One client process: open, then a round at each ``go`` line from the parent."""
    limit = _raise_open_files()
    if limit < count + 16:
        print(json.dumps({"error": f"open-files limit {limit} < {count} connections"}), flush=True)
        return 1
    started = time.monotonic()
    socks, errors = _open(port, count, source)
    print(
        json.dumps(
            {"connected": len(socks), "errors": errors, "seconds": time.monotonic() - started}
        ),
        flush=True,
    )
    for line in sys.stdin:
        if line.strip() != "go":
            break
        print(json.dumps(_round(socks).__dict__), flush=True)
    for sock in socks:
        sock.close()
    return 0


@dataclass
class ProbeResult:
    """The probe of one server: connections held, answers per round, memory in KiB."""

    connections: int
    connected: int = 0
    connect_errors: int = 0
    rounds: list[dict] = field(default_factory=list)
    idle_kib: int = 0
    connected_kib: int = 0
    peak_kib: int = 0

    @property
    def answered(self) -> list[int]:
        return [r["ok"] for r in self.rounds]

    @property
    def errors(self) -> int:
        failed = sum(r["wrong"] + r["closed"] + r["unanswered"] for r in self.rounds)
        return self.connect_errors + failed + max(0, self.connections - self.connected)

    @property
    def kib_per_connection(self) -> float:
        return (self.peak_kib - self.idle_kib) / self.connections if self.connections else 0.0

    @property
    def complete(self) -> bool:
        return self.errors == 0 and self.answered == [self.connections] * 2


def probe(port: int, pid: int, connections: int, cpu: str | None) -> ProbeResult:
    """Hold ``connections`` on the server ``pid`` listening on ``port``; two rounds; RSS."""
    result = ProbeResult(connections, idle_kib=rss_kib(pid))
    processes = max(1, math.ceil(connections / PER_CLIENT))
    shares = [connections // processes + (i < connections % processes) for i in range(processes)]
    clients: list[subprocess.Popen[str]] = []
    try:
        for index, share in enumerate(shares):
            source = f"127.0.0.{10 + index}"
            command = [sys.executable, "-m", "bench.concurrency", "client", str(port),
                       str(share), source]  # fmt: skip
            clients.append(
                subprocess.Popen(
                    pinned(command, cpu),
                    cwd=REPO,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for reply in _replies(clients):
            result.connected += reply["connected"]
            result.connect_errors += reply["errors"]
        result.connected_kib = rss_kib(pid)
        for _ in range(2):
            for proc in clients:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            merged = Round()
            for reply in _replies(clients):
                for name in ("ok", "wrong", "closed", "unanswered"):
                    setattr(merged, name, getattr(merged, name) + reply[name])
                merged.seconds = max(merged.seconds, reply["seconds"])
                merged.sample += reply["sample"]
            result.rounds.append(merged.__dict__)
        # The high-water mark, read while every connection is still open: the true peak.
        result.peak_kib = rss_kib(pid, "VmHWM")
    finally:
        for proc in clients:
            if proc.stdin is not None and not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        for proc in clients:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return result


def _replies(clients: list[subprocess.Popen[str]]) -> list[dict]:
    replies = []
    for proc in clients:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise BenchError(f"a probe client exited ({proc.wait()}) without reporting")
        reply = json.loads(line)
        if "error" in reply:
            raise BenchError(f"probe client: {reply['error']}")
        replies.append(reply)
    return replies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A client of the concurrency probe.")
    parser.add_argument("role", choices=("client",))
    parser.add_argument("port", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("source", help="loopback source address, e.g. 127.0.0.10")
    args = parser.parse_args(argv)
    return client(args.port, args.count, args.source)


if __name__ == "__main__":
    sys.exit(main())
