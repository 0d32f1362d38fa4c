"""Answers given before the request body is read reach the client, never a reset.

A worker that answers early (404, 405, 413, 400) and closes with the body
unread makes the kernel send a TCP reset, which can destroy the answer
before the client reads it; behind Nginx, the reset takes the worker out of
rotation (RELIABILITY.md). The worker half-closes and drains instead (a
lingering close), says ``Connection: close`` whenever it will not reuse the
connection, and keeps the connection when the unread rest is small enough
to drop.

Each client here writes its whole request before it reads a byte, as a
simple HTTP client does; bodies are several times the kernel's socket
buffers, so an early close without lingering always resets.
"""

import socket

import pytest

from tests.servers import MYPRODUCT, serving

LIMIT = 1024 * 1024
ECHO = "/api/v0/echo/read"


def request(method: str, path: str, body: bytes, head: str = "") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: test\r\n{head}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def write_all_then_read(port: int, data: bytes) -> bytes:
    """Send everything, then read to the end; a reset on either side fails the test."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(data)  # ConnectionResetError or BrokenPipeError here is the bug
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def head_of(answer: bytes) -> tuple[int, str]:
    head, _, _ = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode("latin-1").lower()


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    with serving(MYPRODUCT, tmp_path_factory.mktemp("early"), "--max-body", str(LIMIT)) as live:
        yield live


CASES = {
    "unknown route, 8 x the limit": (request("POST", "/api/v0/nothere/read", b"x" * 8 * LIMIT),
                                     404),
    "unknown route, 100,000 bytes": (request("POST", "/api/v0/nothere/read", b"x" * 100_000),
                                     404),
    "GET with a body": (request("GET", ECHO, b"x" * 4 * LIMIT), 405),
    "PUT with a body": (request("PUT", ECHO, b"x" * 200_000), 405),
    "body over the limit, 8 x the limit": (request("POST", ECHO, b"{" * 8 * LIMIT), 413),
    "unknown transfer coding": (
        b"POST " + ECHO.encode() + b" HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n"
        + b"x" * 4 * LIMIT,
        501,
    ),
    "chunked over the limit": (
        b"POST " + ECHO.encode() + b" HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        + (b"100000\r\n" + b" " * 0x100000 + b"\r\n") * 8 + b"0\r\n\r\n",
        413,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_an_early_answer_reaches_a_client_that_is_still_sending(worker, name):
    data, status = CASES[name]
    answer = write_all_then_read(worker.port, data)
    got, head = head_of(answer)
    assert got == status, answer[:300]
    assert "connection: close" in head, head
    assert "content-type: application/json" in head, head
    assert answer.endswith(b'"}'), answer[-200:]


def test_a_small_unread_body_is_dropped_and_the_connection_kept(worker):
    with socket.create_connection(("127.0.0.1", worker.port), timeout=10) as sock:
        sock.sendall(request("POST", "/api/v0/nothere/read", b"x" * 10 * 1024))
        first = sock.recv(65536)
        status, head = head_of(first)
        assert status == 404 and "connection: close" not in head, first
        sock.sendall(request("POST", ECHO, b'{"again": 1}'))
        second = sock.recv(65536)
        assert second.startswith(b"HTTP/1.1 200 ") and second.endswith(
            b'{"again": 1, "server": "myproduct"}'
        ), second


def test_a_body_sent_after_the_early_answer_is_dropped_and_the_connection_kept(worker):
    # As http.client sends: the head in one write, the body in the next. When the head
    # is read alone, the 404 goes out before the body arrives; the body is then read
    # and dropped, and the connection serves the next request.
    with socket.create_connection(("127.0.0.1", worker.port), timeout=10) as sock:
        body = b"x" * 10 * 1024
        whole = request("POST", "/api/v0/nothere/read", body)
        sock.sendall(whole[: -len(body)])
        first = sock.recv(65536)
        status, head = head_of(first)
        assert status == 404 and "connection: close" not in head, first
        sock.sendall(body)
        sock.sendall(request("POST", ECHO, b'{"again": 1}'))
        second = sock.recv(65536)
        assert second.startswith(b"HTTP/1.1 200 ") and second.endswith(
            b'{"again": 1, "server": "myproduct"}'
        ), second


def test_two_transfer_encodings_are_refused_and_closed(worker):
    """chunked then identity: a proxy may frame it one way and the worker another."""
    smuggled = request("POST", ECHO, b"{}")
    data = (
        b"POST " + ECHO.encode() + b" HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smuggled
    )
    answer = write_all_then_read(worker.port, data)
    status, head = head_of(answer)
    assert status == 400 and "connection: close" in head, answer
    assert answer.count(b"HTTP/1.1 ") == 1, answer  # the smuggled request is never answered


def test_every_answer_says_nosniff(worker):
    for data in (request("POST", ECHO, b"{}"), request("POST", "/nothere", b"{}"),
                 b"GARBAGE\r\n\r\n"):  # fmt: skip
        with socket.create_connection(("127.0.0.1", worker.port), timeout=10) as sock:
            sock.sendall(data)
            _, head = head_of(sock.recv(65536))
        assert "x-content-type-options: nosniff" in head, head
