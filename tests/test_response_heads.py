"""Every kind of answer head the server sends, pinned byte for byte (the Date line
normalised): the server's own refusals, the application's answers through App.direct and
through WSGI, the 500s, keep-alive and close, and the CORS answers.

They were built in six places; moving them to one home (apiphant.http.response) must not
change a byte, which is what these tests say. Each goes through a real Server on loopback.
"""

import re
import socket
import sys
import textwrap
import time

import pytest

from apiphant.app import create_app
from apiphant.cors import policy
from apiphant.http.server import Limits
from tests.servers import raw_exchange, server_in_thread

FILES = {
    "api/v0/echo.py": """
        def read(request):
            return {**request}
    """,
    "api/v0/note.py": """
        def read(request, http):
            http.set_header("X-Note", "n")
            return {"noted": True}
    """,
    "api/v0/bug.py": """
        def read(request):
            return {"x": 1 / 0}
    """,
    "api/v0/slow.py": """
        import gevent

        def read(request):
            gevent.sleep(request.get("s", 0))
            return {"slept": True}
    """,
}

ID = "X-Request-Id: rid-1\r\n"
KEEP_ALIVE = "Connection: keep-alive\r\n"


def post(target: str, body: bytes = b"{}", version: str = "1.1", headers: str = ID) -> bytes:
    head = f"POST {target} HTTP/{version}\r\nHost: t\r\n{headers}Content-Length: {len(body)}\r\n"
    return head.encode("latin-1") + b"\r\n" + body


def close(data: bytes) -> bytes:
    """The same request, asking the server to close after it."""
    return data.replace(b"Host: t\r\n", b"Host: t\r\nConnection: close\r\n", 1)


def normal(answer: bytes) -> bytes:
    return re.sub(rb"Date: [^\r]*\r\n", b"Date: <date>\r\n", answer)


def broken(environ, start_response):  # a WSGI application's bug: the server's own 500
    raise RuntimeError("broken")


def ok(*head: str, body: bytes) -> bytes:
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


JSON_HEAD = ("Content-Type: application/json", "X-Content-Type-Options: nosniff")
ERROR_HEAD = ("Date: <date>", "Connection: close", *JSON_HEAD)

#: name: (which application, limits, request bytes, the answer expected).
CASES = {
    "400 no Host": ("app", {}, b"POST /api/v0/echo/read HTTP/1.1\r\n\r\n", ok(
        "HTTP/1.1 400 Bad Request", *ERROR_HEAD, "Content-Length: 28",
        body=b'{"error": "400 Bad Request"}')),
    "400 bad JSON": ("app", {}, close(post("/api/v0/echo/read", b"{bad")), ok(
        "HTTP/1.1 400 Bad Request", "Date: <date>", *JSON_HEAD, "Content-Length: 135",
        "X-Request-Id: rid-1", "Connection: close",
        body=b'{"error": "Request content should be JSON Object: invalid JSON at line 1, '
             b'column 2: Expecting property name enclosed in double quotes"}')),
    "408": ("app", {"header_timeout": 0.3}, b"POST /api/v0/echo/read HTTP/1.1\r\nHost: t\r\n",
            ok("HTTP/1.1 408 Request Timeout", *ERROR_HEAD, "Content-Length: 32",
               body=b'{"error": "408 Request Timeout"}')),
    "413": ("app", {}, post("/api/v0/echo/read", b'{"x": "' + b"y" * 200 + b'"}'), ok(
        "HTTP/1.1 413 Request Entity Too Large", "Date: <date>", *JSON_HEAD, "Content-Length: 41",
        "X-Request-Id: rid-1", "Connection: close",
        body=b'{"error": "413 Request Entity Too Large"}')),
    "414": ("app", {}, b"POST /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", ok(
        "HTTP/1.1 414 Request-URI Too Long", *ERROR_HEAD, "Content-Length: 37",
        body=b'{"error": "414 Request-URI Too Long"}')),
    "431": ("app", {}, b"POST / HTTP/1.1\r\nHost: t\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", ok(
        "HTTP/1.1 431 Request Header Fields Too Large", *ERROR_HEAD, "Content-Length: 48",
        body=b'{"error": "431 Request Header Fields Too Large"}')),
    "501 from the parser": ("app", {}, b"POST / HTTP/1.1\r\nHost: t\r\n"
                            b"Transfer-Encoding: gzip\r\n\r\n", ok(
        "HTTP/1.1 501 Not Implemented", *ERROR_HEAD, "Content-Length: 32",
        body=b'{"error": "501 Not Implemented"}')),
    "405 from the App": ("app", {}, close(post("/api/v0/echo/read").replace(b"POST", b"GET")),
                         ok("HTTP/1.1 405 Method Not Allowed", "Date: <date>", *JSON_HEAD,
                            "Content-Length: 35", "X-Request-Id: rid-1", "Allow: POST",
                            "Connection: close",
                            body=b'{"error": "405 Method Not Allowed"}')),
    "500 from a handler bug": ("app", {}, close(post("/api/v0/bug/read")), ok(
        "HTTP/1.1 500 Internal Server Error", "Date: <date>", *JSON_HEAD, "Content-Length: 38",
        "X-Request-Id: rid-1", "Connection: close",
        body=b'{"error": "500 Internal Server Error"}')),
    "500 from a WSGI application's bug": ("broken", {}, close(post("/")), ok(
        "HTTP/1.1 500 Internal Server Error", "Date: <date>", *JSON_HEAD, "Connection: close",
        "Content-Length: 38", body=b'{"error": "500 Internal Server Error"}')),
    "200 direct, kept then closed": (
        "app", {}, post("/api/v0/echo/read", b'{"a": 1}') + close(post("/api/v0/echo/read")),
        ok("HTTP/1.1 200 OK", "Date: <date>", *JSON_HEAD, "Content-Length: 8",
           "X-Request-Id: rid-1", body=b'{"a": 1}')
        + ok("HTTP/1.1 200 OK", "Date: <date>", *JSON_HEAD, "Content-Length: 2",
             "X-Request-Id: rid-1", "Connection: close", body=b"{}")),
    "200 direct with a handler's header": ("app", {}, close(post("/api/v0/note/read")), ok(
        "HTTP/1.1 200 OK", "Date: <date>", *JSON_HEAD, "Content-Length: 15",
        "X-Request-Id: rid-1", "X-Note: n", "Connection: close", body=b'{"noted": true}')),
    "200 WSGI, kept then closed": (
        "wsgi", {}, post("/api/v0/echo/read", b'{"a": 1}') + close(post("/api/v0/echo/read")),
        ok("HTTP/1.1 200 OK", "Date: <date>", *JSON_HEAD, "Content-Length: 8",
           "X-Request-Id: rid-1", body=b'{"a": 1}')
        + ok("HTTP/1.1 200 OK", "Date: <date>", *JSON_HEAD, "Content-Length: 2",
             "X-Request-Id: rid-1", "Connection: close", body=b"{}")),
    "HEAD /health through WSGI": ("app", {}, b"HEAD /health HTTP/1.1\r\nHost: t\r\n" + ID.encode()
                                  + b"Connection: close\r\n\r\n", ok(
        "HTTP/1.1 200 OK", "Date: <date>", *JSON_HEAD, "Content-Length: 51",
        "X-Request-Id: rid-1", "Connection: close", body=b"")),
    "HTTP/1.0 closes": ("app", {}, post("/api/v0/echo/read", version="1.0"), ok(
        "HTTP/1.1 200 OK", "Date: <date>", *JSON_HEAD, "Content-Length: 2",
        "X-Request-Id: rid-1", "Connection: close", body=b"{}")),
    "HTTP/1.0 kept alive": (
        "app", {}, post("/api/v0/echo/read", version="1.0", headers=ID + KEEP_ALIVE)
        + post("/api/v0/echo/read", version="1.0"),
        ok("HTTP/1.1 200 OK", "Date: <date>", *JSON_HEAD, "Content-Length: 2",
           "X-Request-Id: rid-1", "Connection: keep-alive", body=b"{}")
        + ok("HTTP/1.1 200 OK", "Date: <date>", *JSON_HEAD, "Content-Length: 2",
             "X-Request-Id: rid-1", "Connection: close", body=b"{}")),
    "CORS preflight refused": ("cors", {}, b"OPTIONS /api/v0/echo/read HTTP/1.1\r\nHost: t\r\n"
                               + ID.encode() + b"Connection: close\r\nOrigin: https://x.example\r\n"
                               b"Access-Control-Request-Method: POST\r\n\r\n", ok(
        "HTTP/1.1 403 Forbidden", "Date: <date>", *JSON_HEAD, "Content-Length: 36",
        "Vary: Origin", "X-Request-Id: rid-1", "Connection: close",
        body=b'{"error": "CORS origin not allowed"}')),
    "CORS preflight allowed": ("cors", {}, b"OPTIONS /api/v0/echo/read HTTP/1.1\r\nHost: t\r\n"
                               + ID.encode() + b"Connection: close\r\nOrigin: https://app.example"
                               b"\r\nAccess-Control-Request-Method: POST\r\n\r\n", ok(
        "HTTP/1.1 204 No Content", "Date: <date>", "Access-Control-Allow-Origin: https://app.example",
        "Access-Control-Expose-Headers: X-Request-Id", "Vary: Origin",
        "Access-Control-Allow-Methods: POST", "Access-Control-Allow-Headers: Content-Type",
        "Access-Control-Max-Age: 600", "X-Request-Id: rid-1", "Content-Length: 0",
        "X-Content-Type-Options: nosniff", "Connection: close", body=b"")),
    "200 direct with CORS on": ("cors", {}, close(post("/api/v0/echo/read")), ok(
        "HTTP/1.1 200 OK", "Date: <date>", *JSON_HEAD, "Content-Length: 2", "Vary: Origin",
        "X-Request-Id: rid-1", "Connection: close", body=b"{}")),
}


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    """The applications the cases name, on one product (module-wide: built once)."""
    root = tmp_path_factory.mktemp("products") / "heads"
    for relative, source in FILES.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    app = create_app(root, max_body=100)
    cors = create_app(root, cors=policy(["https://app.example"]))
    yield {"app": app, "wsgi": lambda environ, start_response: app(environ, start_response),
           "cors": cors, "broken": broken}  # fmt: skip
    for module in [m for m in sys.modules if m == "heads" or m.startswith("heads.")]:
        del sys.modules[module]
    while str(root.parent) in sys.path:
        sys.path.remove(str(root.parent))


@pytest.mark.parametrize("name", list(CASES))
def test_the_answer_is_the_same_bytes(apps, name):
    which, limits, data, expected = CASES[name]
    with server_in_thread(apps[which], Limits(**limits)) as server:
        assert (server.direct is not None) == (which in ("app", "cors"))
        answer = raw_exchange("127.0.0.1", server.server_port, data)
    assert normal(answer) == expected


def test_a_request_not_admitted_in_time_gets_503_with_retry_after(apps):
    limits = Limits(max_active=1, queue_timeout=0.2)
    with server_in_thread(apps["app"], limits) as server:
        port = server.server_port
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(post("/api/v0/slow/read", b'{"s": 3}'))
            deadline = time.monotonic() + 5
            while not server.admission.busy():  # the slow request holds the only slot
                assert time.monotonic() < deadline, "the slow request was never admitted"
                time.sleep(0.01)
            answer = raw_exchange("127.0.0.1", port, close(post("/api/v0/echo/read")))
    assert normal(answer) == ok(
        "HTTP/1.1 503 Service Unavailable", *ERROR_HEAD, "Retry-After: 1", "Content-Length: 36",
        body=b'{"error": "503 Service Unavailable"}')
