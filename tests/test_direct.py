"""The server's direct path to apiphant's App (``App.direct``: no environ, no start_response)
gives the bytes its WSGI path gives: the same App served twice by a real Server on loopback,
once as itself (direct) and once wrapped in a plain WSGI function (the WSGI path), the same
requests to both, the answers compared byte for byte (the Date and fresh request ids aside)."""

import json
import math
import re
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apiphant.app import create_app
from apiphant.cors import policy
from apiphant.encoding import encode
from apiphant.http.parser import RequestParser
from apiphant.http.wsgi import Body
from tests.servers import server_in_thread

FILES = {
    "api/v0/echo.py": """
        def read(request):
            return {**request, "server": "t"}
    """,
    "api/v0/who.py": """
        from apiphant.errors import ApiError

        def read(request, http):
            http.set_header("X-Handled", "yes")
            if request.get("fail") == "api":
                raise ApiError(409, {"conflict": request.get("x")})
            if request.get("fail") == "bug":
                return {"x": 1 / 0}
            if request.get("fail") == "nan":
                return {"x": float("nan")}
            return {"client": http.client, "scheme": http.scheme, "id": http.request_id,
                    "method": http.method, "path": http.path,
                    "headers": sorted(http.headers.items())}
    """,
    "api/v0/raw.py": """
        from apiphant.hatches import raw_environ

        @raw_environ
        def update(environ):
            return {"method": environ["REQUEST_METHOD"], "query": environ["QUERY_STRING"]}
    """,
    "api/hooks.py": """
        def before(request, http):
            http.set_header("X-Before", http.headers.get("X-Tag", "none"))

        def after(request, http, response):
            if isinstance(request, dict) and request.get("replace"):
                return {"replaced": True}
    """,
}


def request(target: str, body: bytes = b"", method: str = "POST", headers: str = "") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode("latin-1") + b"\r\n" + body


REQUESTS = [
    request("/api/v0/echo/read", b'{"hello": "world"}'),
    request("/api/v0/echo/read?x=1", b'{"a": [1, 2.5, null, true, "\\u00e9"]}'),
    request("/api/v0/echo/read", b'{"hello": "world"}', headers="X-Request-Id: abc-1\r\n"),
    request("/api/v0/echo/read", b"{}", headers="X-Request-Id: a\r\nx-request-id: b\r\n"),
    request("/api/v0/echo/read", b"{}", headers="X-Request-Id: not valid!\r\n"),
    request("/api/v0/echo/read", b"{}", headers="X_Request_Id: abc\r\n"),
    request("/api/v0/echo/read"),
    request("/api/v0/echo/read", b"[1]"),
    request("/api/v0/echo/read", b"{bad"),
    request("/api/v0/echo/read", b'{"x": NaN}'),
    request("/api/v0/echo/read", b'{"big": ' + b"9" * 300 + b"}"),
    request("/api/v0/echo/read", b'{"x": "' + b"y" * 500 + b'"}'),  # over max_body: 413
    request("/api/v0/echo/read", method="GET"),
    request("/api/v0/echo/read", b"{}", method="HEAD"),
    request("/api/v0/echo/read", b'{"replace": 1}'),
    request("/api/v0/echo%2Fread", b"{}"),
    request("/api/v0/ech%6f/read", b"{}"),
    request("/api/v0/nothing/read", b"{}"),
    request("/health", method="GET"),
    request("/api/v0/echo/read", headers="Transfer-Encoding: chunked\r\n")
    + b"5\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\n\r\n",
    request("/api/v0/who/read", b"{}", headers="X-Tag: t1\r\nUser-Agent: ua\r\nCookie: a=1\r\n"
            "Cookie: b=2\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: https\r\n"),
    request("/api/v0/who/read", b'{"fail": "api", "x": 7}'),
    request("/api/v0/who/read", b'{"fail": "bug"}'),
    request("/api/v0/who/read", b'{"fail": "nan"}'),
    request("/api/v0/who/read", b"{}", headers="Origin: https://app.example.com\r\n"),
    request("/api/v0/who/read", b"{}", headers="Origin: https://other.example.com\r\n"),
    request("/api/v0/who/read", method="OPTIONS", headers="Origin: https://app.example.com\r\n"
            "Access-Control-Request-Method: POST\r\n"),
    request("/api/v0/raw/update?q=1", b"{}", method="PUT"),
]


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def normal(answer: bytes) -> bytes:
    """The answer without what differs between any two runs: the Date and fresh ids."""
    answer = re.sub(rb"Date: [^\r]*\r\n", b"", answer)
    return re.sub(rb"\b[0-9a-f]{32}\b", b"<id>", answer)


def answers(app, direct: bool) -> list[bytes]:
    served = app if direct else (lambda environ, start_response: app(environ, start_response))
    with server_in_thread(served) as server:
        assert (server.direct is not None) == direct
        return [normal(exchange(server.server_port, data)) for data in REQUESTS]


@pytest.mark.parametrize("hooks", [True, False])
def test_the_direct_path_answers_byte_for_byte_as_the_wsgi_path(make_product, caplog, hooks):
    files = FILES if hooks else {k: v for k, v in FILES.items() if k != "api/hooks.py"}
    root = make_product(files, name=f"directp{int(hooks)}")
    app = create_app(root, max_body=400, cors=policy(["https://app.example.com"]),
                     trusted_proxies=frozenset({"127.0.0.1"}))  # fmt: skip
    direct, wsgi = answers(app, True), answers(app, False)
    for data, one, other in zip(REQUESTS, direct, wsgi, strict=True):
        assert one == other, data
    parser = RequestParser()
    parser.feed(REQUESTS[0])
    request = parser.ready[0]
    _, lines, _ = app.direct(request, Body(None, request), dict)
    # without headers of the hooks' own, the lines come formatted (bytes), else as a list
    assert isinstance(lines, list if hooks else bytes)
    if not hooks:
        return
    statuses = [answer.split(b" ", 2)[1] for answer in direct]
    assert statuses == [b"200", b"200", b"200", b"200", b"200", b"200", b"200", b"400", b"400",
                        b"400", b"200", b"413", b"405", b"405", b"200", b"404", b"404", b"404",
                        b"200", b"200", b"200", b"409", b"500", b"500", b"200", b"200", b"204",
                        b"200"]  # fmt: skip
    assert b"X-Request-Id: abc-1\r\n" in direct[2]
    assert b'"client": "10.1.2.3", "scheme": "https"' in direct[20]
    assert b"X-Before: t1\r\n" in direct[20] and b"X-Handled: yes\r\n" in direct[20]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=5), json_values, max_size=4))
def test_the_json_encoder_gives_the_standard_librarys_bytes_or_its_refusal(value):
    reference = json.JSONEncoder(allow_nan=False).encode
    try:
        expected = reference(value)
    except ValueError:  # NaN or Infinity somewhere
        with pytest.raises(ValueError):
            encode(value)
        return
    assert encode(value) == expected


def test_the_json_encoder_refuses_nan_infinity_and_integers_past_the_digit_limit():
    for bad in (math.nan, math.inf, -math.inf, 10**5000):
        with pytest.raises(ValueError):
            encode({"x": bad})
    assert encode({"x": 10**300}) == json.dumps({"x": 10**300})
