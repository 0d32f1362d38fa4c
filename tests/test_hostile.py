"""Hostile input against one live worker: each gets a clear 4xx (or a close), none hurts others.

After every input a normal request must succeed on the same worker process.
The figures (inputs tried, worker crashes, requests lost) are printed at the
end of the run by conftest's terminal summary.
"""

import json
import socket
import time

import pytest
import requests

FIGURES = {"inputs tried": 0, "worker crashes": 0, "requests lost": 0}
ECHO = "/api/v0/echo/read"


def request(
    body: bytes = b"{}", path: str = ECHO, head: str = "", method: str = "POST", length: bool = True
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    text = "\r\n".join(lines) + "\r\n" + head + "\r\n"
    return text.encode("latin-1") + body


def framed(head: str) -> bytes:
    """Request line and headers only: the case adds its own framing and body."""
    return request(b"", head=head, length=False)


CASES = {
    # request lines
    "garbage request line": (b"GARBAGE\r\n\r\n", [400]),
    "no HTTP version": (b"POST /api/v0/echo/read\r\n\r\n", [400]),
    "HTTP/0.9 style": (b"GET /\r\n\r\n", [400]),
    "unknown HTTP version": (b"POST / HTTP/9.9\r\n\r\n", [505]),
    "not HTTP": (b"POST / FTP/1.0\r\n\r\n", [400]),
    "binary request line": (bytes(range(1, 32)) + b"\r\n\r\n", [400]),
    "request line too long": (b"POST /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", [414]),
    # headers
    "header line over 64 KiB": (request(head="X: " + "a" * 70000 + "\r\n"), [431]),
    "200 header lines": (request(head="".join(f"X{i}: 1\r\n" for i in range(200))), [431]),
    "header without colon": (request(head="X Y: 1\r\n"), [400]),
    "folded header": (request(head="X: 1\r\n continued\r\n"), [400]),
    "NUL in a header value": (request(head="X: a\x00b\r\n"), [400]),
    # framing
    "negative Content-Length": (framed("Content-Length: -5\r\n"), [400]),
    "Content-Length not a number": (framed("Content-Length: 1e3\r\n"), [400]),
    "Content-Length with a sign": (framed("Content-Length: +2\r\n") + b"{}", [400]),
    "two different Content-Lengths": (
        framed("Content-Length: 2\r\nContent-Length: 20\r\n") + b"{}",
        [400],
    ),
    "Content-Length and chunked": (
        framed("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n") + b"2\r\n{}\r\n0\r\n\r\n",
        [400],
    ),
    "two Transfer-Encodings": (
        framed("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n") + b"0\r\n\r\n",
        [400],
    ),
    "unknown transfer coding": (framed("Transfer-Encoding: gzip\r\n") + b"{}", [501]),
    "chunked then gzip": (framed("Transfer-Encoding: chunked, gzip\r\n") + b"{}", [501]),
    "Content-Length larger than the body": (framed("Content-Length: 50\r\n") + b"{}", [408]),
    "body without Content-Length": (request(b'{"a": 1}', length=False), [200]),
    "HTTP/1.1 without Host": (
        b"POST /api/v0/echo/read HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        [400],
    ),
    "two Host headers": (request(head="Host: other\r\n"), [400]),
    "HTTP/1.0 with chunked": (
        b"POST /api/v0/echo/read HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n",
        [400],
    ),
    "bad chunk size": (framed("Transfer-Encoding: chunked\r\n") + b"zz\r\n{}\r\n0\r\n\r\n", [400]),
    "chunked body never ends": (framed("Transfer-Encoding: chunked\r\n") + b"2\r\n{}\r\n", [408]),
    "chunked body over the limit": (
        framed("Transfer-Encoding: chunked\r\n")
        + (b"40000\r\n" + b" " * 0x40000 + b"\r\n") * 5
        + b"0\r\n\r\n",
        [413],
    ),
    "body over the limit": (framed("Content-Length: 1000000000\r\n"), [413]),
    "100-continue over the limit": (
        framed("Expect: 100-continue\r\nContent-Length: 99999999\r\n"),
        [413],
    ),
    # bodies
    "invalid UTF-8": (request(b'{"a": "\xff"}'), [400]),
    "UTF-16": (request('{"a": 1}'.encode("utf-16")), [400]),
    "JSON nested 100,000 deep": (
        request(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        [400, 413],  # too deep to parse; 100,002 values by the count that comes first
    ),
    "a 5,000 digit number": (request(b'{"a": ' + b"9" * 5000 + b"}"), [400]),
    "a MiB of small objects": (request(b'{"a": [' + b"{}," * 349_000 + b"{}]}"), [413]),
    "a float beyond range": (request(b'{"a": 1e400}'), [400]),
    "NaN": (request(b'{"a": NaN}'), [400]),
    "duplicate keys": (request(b'{"a": 1, "a": 2}'), [200]),
    "raw NUL byte in the body": (request(b'{"a": "\x00"}'), [400]),
    "escaped NUL in a string": (request(b'{"a": "\\u0000"}'), [200]),
    "lone surrogate escape": (request(b'{"a": "\\ud800"}'), [200]),
    "JSON array": (request(b"[1, 2]"), [400]),
    "empty object key": (request(b'{"": 1}'), [200]),
    # paths
    "dot-dot segment": (request(path="/api/v0/../v0/echo/read"), [404]),
    "encoded dot-dot": (request(path="/api/v0/%2e%2e/v0/echo/read"), [404]),
    "encoded slash": (request(path="/api/v0/echo%2Fread"), [404]),
    "encoded letters": (request(path="/api/v0/%65cho/read"), [404]),
    "double slash": (request(path="/api//v0/echo/read"), [404]),
    "very long path": (request(path="/api/v0/" + "a/" * 3900 + "read"), [404]),
    "module attribute, not a handler": (request(path="/api/v0/echo/copy"), [404]),
    "imported module as action": (request(path="/api/v0/users/settings/field"), [404]),
    "private function": (request(path="/api/v0/echo/_private"), [404]),
    "dunder": (request(path="/api/v0/echo/__init__"), [404]),
    "unknown version": (request(path="/api/v9/echo/read"), [404]),
    "unknown action": (request(path="/api/v0/echo/list"), [404]),
    "absolute-form URI": (request(path="http://evil.example/api/v0/echo/read"), [404]),
    "query string tricks": (request(path=ECHO + "?x=%00&y=../../"), [200]),
    "other method": (request(method="DELETE"), [405]),
    "lowercase method": (request(method="post"), [501]),
}


@pytest.fixture(scope="module")
def worker(strict_worker):
    return strict_worker


def answer_to(live, data: bytes, timeout: float = 6.0) -> bytes:
    with socket.create_connection((live.host, live.port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server may refuse before reading everything; its answer still counts
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
                if _complete(received):
                    break
        except (TimeoutError, ConnectionResetError):
            pass
        return received


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def still_serves(live) -> None:
    """The same worker answers a normal request: else count a crash or a lost request."""
    if live.process.poll() is not None:
        FIGURES["worker crashes"] += 1
        pytest.fail(f"the worker died:\n{live.log()[-3000:]}")
    try:
        answer = requests.post(f"{live.url}{ECHO}", json={"ok": 1}, timeout=5)
        assert answer.json() == {"ok": 1, "server": "myproduct"}
    except Exception:
        FIGURES["requests lost"] += 1
        raise


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input(worker, name):
    data, statuses = CASES[name]
    FIGURES["inputs tried"] += 1
    received = answer_to(worker, data)
    assert received, f"{name}: no answer"
    status_line, _, rest = received.partition(b"\r\n")
    status = int(status_line.split()[1])
    assert status in statuses, f"{name}: {received[:300]!r}"
    head, _, body = rest.partition(b"\r\n\r\n")
    if status >= 400:
        assert b"content-type: application/json" in head.lower(), head
        error = json.loads(body)["error"]
        assert "Traceback" not in json.dumps(error) and "/" not in str(error)[:1]
    still_serves(worker)


@pytest.mark.parametrize(
    ("opening", "byte"),
    [
        (b"POST /api/v0/echo/read HTTP/1.1\r\nX-Slow: ", b"a"),  # slowloris headers
        (framed("Content-Length: 100\r\n"), b" "),  # a slow body
    ],
    ids=["slow headers", "slow body"],
)
def test_trickling_clients_are_cut_while_others_are_served(worker, opening, byte):
    FIGURES["inputs tried"] += 1
    with socket.create_connection((worker.host, worker.port), timeout=5) as sock:
        sock.sendall(opening)
        started = time.monotonic()
        received = b""
        while time.monotonic() - started < 5 and not received:
            try:
                sock.sendall(byte)
            except OSError:
                break
            still_serves(worker)
            sock.settimeout(0.2)
            try:
                received = sock.recv(4096)
            except TimeoutError:
                pass
        assert received.startswith(b"HTTP/1.1 408 "), received
    still_serves(worker)


def test_pipelined_requests_are_answered_in_order(worker):
    FIGURES["inputs tried"] += 1
    data = request(b'{"n": 1}') + request(b'{"n": 2}') + request(b"{}", path="/nope")
    with socket.create_connection((worker.host, worker.port), timeout=5) as sock:
        sock.sendall(data)
        received = b""
        deadline = time.monotonic() + 5
        while received.count(b"HTTP/1.1 ") < 3 or not _complete(
            received.rpartition(b"HTTP/1.1 ")[1] + received.rpartition(b"HTTP/1.1 ")[2]
        ):
            assert time.monotonic() < deadline, received
            received += sock.recv(65536)
    assert b'{"n": 1, "server": "myproduct"}' in received.split(b"HTTP/1.1 ")[1]
    assert b'{"n": 2, "server": "myproduct"}' in received.split(b"HTTP/1.1 ")[2]
    assert received.split(b"HTTP/1.1 ")[3].startswith(b"404 ")
    still_serves(worker)


def test_no_traceback_was_printed_for_client_errors(worker):
    assert "Traceback" not in worker.log(), worker.log()[-3000:]
