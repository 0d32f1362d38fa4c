"""The WSGI application through the in-process client: no socket, real routing and handlers."""

import logging

import pytest

from apiphant.app import App, create_app
from apiphant.client import Client
from tests.servers import MYPRODUCT, SELFCHECK


@pytest.fixture(scope="module")
def client():
    return Client(MYPRODUCT)


@pytest.fixture(scope="module")
def selfcheck():
    return Client(SELFCHECK)


def test_echo(client):
    result = client.post("echo", "read", {"hello": "world"})
    assert result.status == 200
    assert result.body == b'{"hello": "world", "server": "myproduct"}'
    assert result.headers["Content-Type"] == "application/json"
    assert result.headers["Content-Length"] == str(len(result.body))


def test_nested_target(client):
    result = client.post("users/settings", "update", {"user_id": 1, "settings": {"theme": "dark"}})
    assert result.json == {"user_id": 1, "settings": {"theme": "dark", "language": "en"}}


def test_unknown_paths_are_404_and_other_methods_405_naming_post(client):
    assert client.request("/api/v0/nothing/read").json == {"error": "404 Not Found"}
    assert client.request("/api/v0/echo/json").status == 404
    assert client.request("/api/v0/../v0/echo/read").status == 404
    assert client.request("/api/v0/echo/read/").status == 404
    assert client.request("/api/v0/nothing/read", method="GET").status == 404
    for method in ("GET", "PUT", "DELETE", "OPTIONS"):
        result = client.request("/api/v0/echo/read", method=method)
        assert (result.status, result.json) == (405, {"error": "405 Method Not Allowed"})
        assert result.headers["Allow"] == "POST"


def test_head_gets_headers_without_a_body(client):
    result = client.request("/api/v0/echo/read", method="HEAD")
    assert result.status == 405 and result.body == b""
    assert result.headers["Allow"] == "POST"
    assert int(result.headers["Content-Length"]) > 0


def test_handler_returning_none_answers_an_empty_object(selfcheck):
    assert selfcheck.post("self", "create", {"test": "return none"}).json == {}


def test_handler_returning_a_non_dict_is_500_and_logged(selfcheck, caplog):
    with caplog.at_level(logging.ERROR):
        result = selfcheck.post("self", "create", {"test": "return invalid_json_object"})
    assert (result.status, result.json) == (500, {"error": "500 Internal Server Error"})
    assert "returned str, expected a dict or None" in caplog.text


def test_unexpected_exception_is_500_without_details_and_logged(selfcheck, caplog):
    with caplog.at_level(logging.ERROR):
        result = selfcheck.post("self", "create", {"test": "1/0"})
    assert result.body == b'{"error": "500 Internal Server Error"}'
    assert "ZeroDivisionError" in caplog.text and "/api/v0/self/create" in caplog.text


def test_api_errors(selfcheck):
    result = selfcheck.post("self", "create", {"test": "api_error"})
    assert result.json == {"error": "403 Forbidden"}
    result = selfcheck.post("self", "create", {"test": "api_error_body"})
    assert (result.status, result.json) == (409, {"error": {"conflict": "exists"}})


def test_body_over_the_limit_is_413_and_closes_without_reading():
    client = Client(MYPRODUCT, max_body=100)
    result = client.post("echo", "read", {"x": "y" * 200})
    assert (result.status, result.json) == (413, {"error": "413 Request Entity Too Large"})
    assert result.headers["Connection"] == "close"
    assert client.post("echo", "read", {"x": "y" * 50}).status == 200


@pytest.mark.parametrize("length", ["abc", "-1", "1e3"])
def test_bad_content_length_is_400(client, length):
    result = client.request("/api/v0/echo/read", b"{}", headers={"Content-Length": length})
    assert result.status == 400 and result.headers["Connection"] == "close"


def test_short_body_is_400(client):
    result = client.request("/api/v0/echo/read", b"{}", headers={"Content-Length": "10"})
    assert (result.status, result.json) == (400, {"error": "Request body ended early"})


def test_raw_environ_gets_the_environ_and_any_method(selfcheck):
    result = selfcheck.request("/api/v0/raw/update", b"0123456789", method="PUT")
    assert result.json == {"method": "PUT", "length": 10}


def test_raw_environ_still_enforces_the_body_limit():
    client = Client(SELFCHECK, max_body=5)
    assert client.request("/api/v0/raw/update", b"0123456789").status == 413


def test_raw_response_answers_in_its_own_format(selfcheck):
    result = selfcheck.post("raw", "delete", {"id": 3})
    assert (result.status, result.body) == (200, b"deleted 3\n")
    assert result.headers["Content-Type"] == "text/plain"


def test_raw_environ_and_raw_response_make_a_plain_wsgi_app(selfcheck):
    assert selfcheck.request("/api/v0/raw/read", method="GET").body == b"GET /api/v0/raw/read\n"


def test_health_answers_any_method_with_product_and_release(monkeypatch):
    monkeypatch.setenv("APIPHANT_RELEASE", "20261124T150000Z")
    client = Client(MYPRODUCT)
    for method in ("GET", "POST", "HEAD"):
        result = client.request("/health", method=method)
        assert result.status == 200
    assert client.request("/health").json == {
        "status": "ok", "product": "myproduct", "release": "20261124T150000Z"}


def test_nan_in_a_response_is_a_500_not_invalid_json(make_product):
    root = make_product({"api/v0/t.py": "def read(r): return {'x': float('nan')}"}, name="nanp")
    assert Client(root).post("t", "read").status == 500


def test_create_app_returns_a_plain_wsgi_callable():
    app = create_app(MYPRODUCT)
    assert isinstance(app, App) and callable(app)


@pytest.mark.parametrize("exit_call", ["sys.exit(3)", "raise KeyboardInterrupt", "exit()"])
def test_a_handler_that_exits_gets_a_500_and_kills_no_worker(make_product, exit_call):
    root = make_product({"api/v0/t.py": f"import sys\ndef read(r):\n    {exit_call}\n"},
                        name="exits")
    client = Client(root)
    assert client.post("t", "read").json == {"error": "500 Internal Server Error"}
    assert client.post("t", "read").status == 500


RAW_READERS = """
    from apiphant.hatches import raw_environ

    @raw_environ
    def read(environ):
        return {"length": len(environ["wsgi.input"].read())}

    @raw_environ
    def update(environ):
        return {"lines": sum(1 for _ in environ["wsgi.input"])}

    @raw_environ
    def delete(environ):
        stream, total = environ["wsgi.input"], 0
        while chunk := stream.read(1000):
            total += len(chunk)
        return {"length": total}
"""


def chunked_post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    """A chunked POST in 16 KiB chunks, sent whole before the answer is read."""
    import socket

    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 16384]), body[i:i + 16384])
                      for i in range(0, len(body), 16384))  # fmt: skip
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n%s0\r\n\r\n" % (path.encode(), chunks))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, answer = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), answer


def test_raw_environ_handlers_get_413_past_max_body_for_chunked_bodies_too(make_product):
    """Content-Length is checked before the handler runs; a chunked body is counted as the
    handler reads it, however it reads (whole, by lines, in pieces)."""
    from tests.servers import server_in_thread

    root = make_product({"api/v0/raw.py": RAW_READERS}, name="rawlimit")
    limit = 64 * 1024
    with server_in_thread(create_app(root, max_body=limit)) as server:
        port = server.server_port
        line = b"x" * 99 + b"\n"
        for action in ("read", "update", "delete"):
            path = f"/api/v0/raw/{action}"
            status, answer = chunked_post(port, path, line * (3 * limit // 100))
            assert (status, answer) == (413, b'{"error": "413 Request Entity Too Large"}'), action
            status, answer = chunked_post(port, path, line * (limit // 100))  # within the limit
            assert status == 200, (action, answer)


def test_a_missing_attribute_is_a_400_not_a_500(make_product):
    root = make_product({"api/v0/named.py": """
        def read(request):
            return {"hello": request.name, "city": request.address.city}
    """}, name="attrs02")
    client = Client(root)
    assert client.post("named", "read", {}).json == {"error": {"field": "name",
                                                                "state": "missing"}}
    assert client.post("named", "read", {"name": "a", "address": {}}).json == {
        "error": {"field": "address.city", "state": "missing"}}
    assert client.post("named", "read", {"name": "a", "address": {"city": "b"}}).json == {
        "hello": "a", "city": "b"}
