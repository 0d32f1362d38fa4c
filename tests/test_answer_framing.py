"""Handlers cannot break the framing of an answer: the server alone says how long it is and
what becomes of the connection, and no control byte reaches the wire.

Behind Nginx, a handler's ``Transfer-Encoding: chunked`` on a body the worker framed by
Content-Length was an ``invalid chunked response``; a ``Content-Length`` shorter than the
body left the rest to be read as the next answer on a keep-alive connection.
"""

import logging
import socket

import pytest
import requests

from apiphant.app import create_app
from apiphant.context import Http
from apiphant.server import Limits
from tests.sentry_capture import capture_sentry
from tests.servers import server_in_thread, serving

FRAMING = ["Content-Length", "transfer-encoding", "Connection", "Keep-Alive", "Upgrade",
           "TE", "Trailer", "Proxy-Connection"]  # fmt: skip
CONTROL = ["a\x00b", "a\x01", "\x7f", "a\rb", "a\nb", "a\x1bb"]


@pytest.mark.parametrize("name", FRAMING)
def test_set_header_refuses_what_frames_the_answer(name):
    with pytest.raises(ValueError, match="server's"):
        Http({}, frozenset(), "id").set_header(name, "5")


@pytest.mark.parametrize("value", CONTROL)
def test_set_header_refuses_control_bytes(value):
    with pytest.raises(ValueError):
        Http({}, frozenset(), "id").set_header("X-Note", value)


def test_set_header_takes_ordinary_headers():
    http = Http({}, frozenset(), "id")
    http.set_header("X-Note", "a\tb c")  # HTAB and SP are field content
    http.set_header("Cache-Control", "no-store")
    http.set_header("X-Count", 3)
    assert http.response_headers == [("X-Note", "a\tb c"), ("Cache-Control", "no-store"),
                                     ("X-Count", "3")]  # fmt: skip


HANDLERS = {
    "api/v0/t.py": """
        from apiphant.hatches import raw_response

        def read(request, http):
            http.set_header(request.name, request.value)
            return {"set": request.name}

        @raw_response
        def create(request, start_response):
            start_response("200 OK", [(request.name, request.value)])
            return [b"raw"]

        @raw_response
        def update(request, start_response):
            start_response("200 OK", [("Content-Length", str(request.length))])
            return [b"0123456789"]
    """,
}


def post(port: int, path: str, body: bytes) -> bytes:
    """One request on a fresh connection: its answer, up to the end of the body its
    Content-Length frames (what a client reusing the connection would take as the answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                     % (path.encode(), len(body), body))  # fmt: skip
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, rest = data.partition(b"\r\n\r\n")
                length = [line for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]  # fmt: skip
                if length and len(rest) >= int(length[0].split(b":")[1]):
                    break
    return data


def assert_500_framed(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 "), answer
    assert body == b'{"error": "500 Internal Server Error"}', answer
    lines = [line.lower() for line in head.split(b"\r\n")]
    assert lines.count(b"content-length: %d" % len(body)) == 1, head
    assert not any(line.startswith(b"transfer-encoding") for line in lines), head
    assert not set(b"\x00\x01\x1b\x7f") & set(answer), answer


@pytest.fixture
def product(make_product):
    return make_product(HANDLERS, name="framing")


def test_handlers_that_try_to_frame_the_answer_get_a_500_and_the_log_names_them(
    product, caplog
):
    import json

    with caplog.at_level(logging.ERROR), server_in_thread(create_app(product)) as server:
        port = server.server_port
        for name in ("Content-Length", "Transfer-Encoding", "Connection"):
            body = json.dumps({"name": name, "value": "0"}).encode()
            assert_500_framed(post(port, "/api/v0/t/read", body))
        for name, value in (("Transfer-Encoding", "chunked"), ("X-Raw", "a\x00b"),
                            ("X-Raw", "a\x01b"), ("Upgrade", "websocket")):  # fmt: skip
            body = json.dumps({"name": name, "value": value}).encode()
            assert_500_framed(post(port, "/api/v0/t/create", body))
        # A raw answer whose Content-Length is not its body's: refused by the server
        assert_500_framed(post(port, "/api/v0/t/update", b'{"length": 4}'))
        ok = post(port, "/api/v0/t/update", b'{"length": 10}')
        assert ok.startswith(b"HTTP/1.1 200 ") and ok.endswith(b"\r\n\r\n0123456789")
        fine = post(port, "/api/v0/t/read", b'{"name": "X-Fine", "value": "a\\tb"}')
        assert fine.startswith(b"HTTP/1.1 200 ") and b"\r\nX-Fine: a\tb\r\n" in fine
    logged = caplog.text
    assert "/api/v0/t/read failed" in logged and "/api/v0/t/create failed" in logged
    assert "is the server's to send" in logged and "bad response header" in logged
    assert "Content-Length '4' for a body of 10 bytes" in logged


def test_a_wsgi_application_cannot_break_the_framing_either():
    def app(environ, start_response):
        path = environ["PATH_INFO"]
        headers = {
            "/chunked": [("Transfer-Encoding", "chunked")],
            "/nul": [("X-A", "a\x00b")],
            "/short": [("Content-Length", "3")],
            "/status": [],
        }[path]
        start_response("200 O\x00K" if path == "/status" else "200 OK", headers)
        return [b"0123456789"]

    with server_in_thread(app, Limits()) as server:
        for path in ("/chunked", "/nul", "/short", "/status"):
            assert_500_framed(post(server.server_port, path, b""))


def test_a_raw_answer_with_a_control_byte_is_reported_to_sentry_as_the_handlers_bug(
    product, tmp_path
):
    with capture_sentry() as sentry:
        with serving(product, tmp_path, env=sentry.env()) as live:
            answer = requests.post(f"{live.url}/api/v0/t/create",
                                   json={"name": "X-Raw", "value": "a\x00b"})  # fmt: skip
            assert answer.status_code == 500
            assert live.stop() == 0
        [event] = sentry.wait_for(1, timeout=10)
    assert event["tags"]["route"] == "/api/v0/t/create"
    [exception] = event["exception"]["values"]
    assert exception["type"] == "HeaderError"
