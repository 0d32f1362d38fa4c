"""The server's WSGI side and its rules, against a real Server on loopback.

- The environ is pywsgi's, key for key (a differential test through sockets).
- ``wsgi.input`` reads, and ``100 Continue`` only on the first read.
- Admission: requests start in arrival order; one not admitted in time gets 503.
- The App is a plain WSGI application: it runs under the standard library's server.
- apiphant uses gevent's public API only.
"""

import ast
import json
import random
import socket
import threading
import wsgiref.simple_server
from pathlib import Path

import gevent
import gevent.event
import pytest
from gevent.pywsgi import WSGIServer

from apiphant.app import create_app
from apiphant.http.connection import Connection
from apiphant.server import Limits
from tests.servers import MYPRODUCT, REPO, server_in_thread

NOT_COMPARED = {"wsgi.input", "wsgi.errors", "wsgi.file_wrapper", "SERVER_SOFTWARE",
                "SERVER_PORT", "REMOTE_PORT", "SERVER_NAME", "wsgi.input_terminated"}  # fmt: skip


def environ_app(environ, start_response):
    """Answers its environ (what JSON can carry), and the body it read."""
    seen = {k: v for k, v in environ.items() if k not in NOT_COMPARED}
    seen["wsgi.version"] = list(seen["wsgi.version"])
    seen["body"] = environ["wsgi.input"].read().decode("latin-1")
    body = json.dumps(seen, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def body_of(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[2]


@pytest.fixture(scope="module")
def pywsgi_port():
    """gevent.pywsgi serving the same app, in its own hub: the reference environ."""
    ready, holder = threading.Event(), {}

    def run():
        server = WSGIServer(("127.0.0.1", 0), environ_app, log=None)
        server.start()
        holder.update(port=server.server_port, stop=gevent.event.Event(), hub=gevent.get_hub())
        ready.set()
        holder["stop"].wait()
        server.stop(timeout=1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield holder["port"]
    holder["hub"].loop.run_callback_threadsafe(holder["stop"].set)
    thread.join(10)


NAMES = ["Cookie", "X-Forwarded-For", "X_Forwarded_For", "Content-Type", "content-length",
         "Accept", "X-A", "Authorization"]  # fmt: skip
VALUES = ["a", " b ", "c\t", "1", "0", "", "a=1; b=2", "close", "x y", "é"]
PATHS = ["/api/v0/echo/read", "/api/v0/echo/read?x=1&y=%20", "/a%2Fb?c?d", "/%e9", "/?",
         "/a%20b/%41", "http://h/x?y"]  # fmt: skip


def test_environ_equals_pywsgis(pywsgi_port):
    rng = random.Random(7)
    with server_in_thread(environ_app) as server:
        for _ in range(150):
            version = rng.choice(["1.1", "1.0"])
            # Host once (RFC 9112 3.2: a request without it in HTTP/1.1, or with two, is 400)
            host = version == "1.1" or rng.random() < 0.5
            lines = [f"Host: {rng.choice(VALUES)}\r\n"] if host else []
            for _ in range(rng.randint(0, 6)):
                name, value = rng.choice(NAMES), rng.choice(VALUES)
                if name.lower() == "content-length":
                    continue  # the framing is set below, once
                lines.append(f"{name}: {value}\r\n")
            body = rng.choice([b"", b"{}", b"x" * 300])
            method = rng.choice(["POST", "GET", "PUT"])
            path = rng.choice(PATHS)
            data = (f"{method} {path} HTTP/{version}\r\n{''.join(lines)}"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode(
                        "latin-1") + body  # fmt: skip
            ours = json.loads(body_of(exchange(server.server_port, data)))
            theirs = json.loads(body_of(exchange(pywsgi_port, data)))
            assert ours.pop("RAW_URI") == path  # apiphant's own key: the target as sent
            assert ours.pop("apiphant.local_address") == "127.0.0.1"  # and the bound address
            assert ours == theirs, data


def test_raw_uri_and_remote_address():
    def app(environ, start_response):
        start_response("200 OK", [])
        keys = ("RAW_URI", "REMOTE_ADDR", "wsgi.input_terminated", "PATH_INFO")
        return [json.dumps([environ[k] for k in keys]).encode()]

    with server_in_thread(app) as server:
        answer = exchange(server.server_port, b"GET /a%2Fb?q HTTP/1.0\r\n\r\n")
    assert json.loads(body_of(answer)) == ["/a%2Fb?q", "127.0.0.1", True, "/a/b"]


def test_body_reads_lines_and_chunks():
    def app(environ, start_response):
        body = environ["wsgi.input"]
        parts = [body.readline(), body.read(3), body.readline(2), *body]
        start_response("200 OK", [])
        return [json.dumps([p.decode() for p in parts]).encode()]

    chunked = b"4\r\nab\nc\r\n6\r\ndefg\nh\r\n3\r\nij\n\r\n0\r\n\r\n"
    with server_in_thread(app) as server:
        answer = exchange(
            server.server_port,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + chunked,
        )
    assert json.loads(body_of(answer)) == ["ab\n", "cde", "fg", "\n", "hij\n"]


def test_body_readlines_stops_past_its_hint():
    """``readlines(hint)`` as io's: whole lines, until they hold at least ``hint`` bytes."""

    def app(environ, start_response):
        body = environ["wsgi.input"]
        parts = [body.readlines(3), body.readlines(4), body.readlines()]
        start_response("200 OK", [])
        return [json.dumps([[line.decode() for line in p] for p in parts]).encode()]

    data = b"ab\ncd\nef\ng\nh"
    with server_in_thread(app) as server:
        answer = exchange(
            server.server_port,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (len(data), data),
        )
    assert json.loads(body_of(answer)) == [["ab\n"], ["cd\n", "ef\n"], ["g\n", "h"]]


def test_100_continue_is_sent_on_the_first_read_only():
    def app(environ, start_response):
        reads = environ["PATH_INFO"] == "/reads"
        body = environ["wsgi.input"].read(5) if reads else b""
        start_response("200 OK", [])
        return [body or b"nothing read"]

    expect = b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    with server_in_thread(app) as server:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as sock:
            sock.sendall(b"POST /reads HTTP/1.1\r\nHost: x\r\n" + expect)
            assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(b"hello")
            answer = sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"hello")
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as sock:
            sock.sendall(b"POST /ignores HTTP/1.1\r\nHost: x\r\n" + expect)
            answer = sock.recv(4096)
            # Answered without inviting the body, and closed: the body may still come.
            assert answer.startswith(b"HTTP/1.1 200 ") and b"Continue" not in answer
            assert b"Connection: close" in answer and answer.endswith(b"nothing read")


class Gate:
    """An application whose requests wait until the test opens the gate; it records the
    order in which requests started, by path."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gate = None

    def __call__(self, environ, start_response):
        if self.gate is None:
            self.gate = gevent.event.Event()
        self.started.append(environ["PATH_INFO"])
        self.gate.wait(10)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]


class Arrivals(Connection):
    """Counts requests that reached admission, so the test sends the next only then."""

    __slots__ = ()
    arrived: list[str] = []

    def _answer(self, request):
        Arrivals.arrived.append(request.target)
        return super()._answer(request)


def _wait_for(condition, what: str) -> None:
    for _ in range(500):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_requests_are_admitted_in_arrival_order_and_503_past_the_queue_timeout():
    app = Gate()
    Arrivals.arrived = []
    limits = Limits(max_active=1, queue_timeout=1.5)
    with server_in_thread(app, limits, Arrivals) as server:
        socks = []
        try:
            for n in range(4):
                sock = socket.create_connection(("127.0.0.1", server.server_port), timeout=10)
                socks.append(sock)
                sock.sendall(f"POST /{n} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
                _wait_for(lambda n=n: len(Arrivals.arrived) == n + 1, f"request {n}")
            # /0 runs; /1, /2, /3 queue. The queue timeout passes: 503 for all three.
            answers = [sock.recv(4096) for sock in socks[1:]]
            for answer in answers:
                assert answer.startswith(b"HTTP/1.1 503 "), answer
                assert b"Retry-After: 1\r\n" in answer and b"Connection: close\r\n" in answer
            # Now queue behind /0 again, in an order that is not the connections' order.
            late = [socket.create_connection(("127.0.0.1", server.server_port), timeout=10)
                    for _ in range(3)]  # fmt: skip
            socks += late
            for n, sock in zip((7, 5, 6), late, strict=True):
                sock.sendall(f"POST /{n} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
                _wait_for(lambda n=n: Arrivals.arrived[-1] == f"/{n}", f"request {n}")
            server.loop.run_callback_threadsafe(app.gate.set)
            for sock in [socks[0], *late]:
                assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
            assert app.started == ["/0", "/7", "/5", "/6"]
        finally:
            for sock in socks:
                sock.close()


def test_the_app_is_a_plain_wsgi_application_under_the_standard_librarys_server():
    app = create_app(MYPRODUCT)
    httpd = wsgiref.simple_server.make_server("127.0.0.1", 0, app,
                                              handler_class=_QuietHandler)  # fmt: skip
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        data = (b'POST /api/v0/echo/read HTTP/1.1\r\nHost: x\r\nConnection: close\r\n'
                b'Content-Length: 18\r\n\r\n{"hello": "world"}')  # fmt: skip
        answer = exchange(httpd.server_port, data)
        assert answer.startswith(b"HTTP/1.0 200 OK\r\n")
        assert body_of(answer) == b'{"hello": "world", "server": "myproduct"}'
        missing = exchange(httpd.server_port, data.replace(b"echo", b"nothing"))
        assert missing.startswith(b"HTTP/1.0 404 ") and b"nosniff" in missing
    finally:
        httpd.shutdown()
        thread.join(10)
        httpd.server_close()


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _private_uses(path: Path) -> list[str]:
    """Imports of gevent.pywsgi, and anything prefixed ``_`` taken from another package."""
    tree = ast.parse(path.read_text())
    modules: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("gevent.pywsgi") or any(
                    part.startswith("_") for part in alias.name.split(".")
                ):
                    found.append(f"import {alias.name}")
                if not alias.name.startswith("apiphant"):
                    modules.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            module = node.module or ""
            if module.startswith("apiphant") or module == "__future__":  # the language's
                continue
            if module.startswith("gevent.pywsgi") or any(
                part.startswith("_") for part in module.split(".")
            ):
                found.append(f"from {module} import ...")
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"from {module} import {alias.name}")
                modules.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__") and isinstance(node.value, ast.Name)
                and node.value.id in modules):  # fmt: skip
            found.append(f"{node.value.id}.{node.attr}")
    return [f"{path.relative_to(REPO)}: {use}" for use in found]


def test_apiphant_uses_only_public_names_of_other_packages():
    files = sorted((REPO / "apiphant").rglob("*.py"))
    assert len(files) > 20
    assert [use for path in files for use in _private_uses(path)] == []


def test_the_private_use_check_finds_what_it_looks_for(tmp_path):
    sample = REPO / "apiphant" / "_sample_for_the_check.py"
    sample.write_text("from __future__ import annotations\n"  # the language's: not counted
                      "import gevent\nfrom gevent.pywsgi import Input\n"
                      "from gevent._socketcommon import x\nfrom os import _exit\n"
                      "gevent._config\n")  # fmt: skip
    try:
        assert len(_private_uses(sample)) == 4
    finally:
        sample.unlink()


def test_parsing_and_formatting_import_no_socket_and_no_gevent():
    for name in ("parser.py", "response.py"):
        tree = ast.parse((REPO / "apiphant" / "http" / name).read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.Import) for alias in node.names}  # fmt: skip
        imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom)}  # fmt: skip
        assert not imported & {"socket", "gevent", "select", "selectors"}, (name, imported)
