"""The HTTP parser and response formatting, with byte strings only: no socket, no server.

Every refusal the live worker gives for hostile input (tests/test_hostile.py)
is decided here; h11, another strict parser, is the oracle for what a valid
request means.
"""

import json

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apiphant.http import response
from apiphant.http.parser import (
    MAX_HEAD,
    MAX_HEADER_LINE,
    ProtocolError,
    Request,
    RequestParser,
)
from tests.test_hostile import CASES as HOSTILE


def parse(*chunks: bytes) -> list[Request]:
    parser = RequestParser()
    for chunk in chunks:
        parser.feed(chunk)
    return list(parser.ready)


def refusal(data: bytes) -> int:
    with pytest.raises(ProtocolError) as caught:
        parse(data)
    return caught.value.status


def head(lines: str, body: bytes = b"") -> bytes:
    return f"POST /api/v0/echo/read HTTP/1.1\r\nHost: t\r\n{lines}\r\n".encode("latin-1") + body


REFUSALS = {
    "garbage request line": (b"GARBAGE\r\n\r\n", 400),
    "HTTP/0.9 style": (b"GET /\r\n\r\n", 400),
    "unknown HTTP version": (b"POST / HTTP/9.9\r\n\r\n", 505),
    "not HTTP": (b"POST / FTP/1.0\r\n\r\n", 400),
    "control characters": (bytes(range(1, 32)) + b"\r\n\r\n", 400),
    "unknown method": (b"post / HTTP/1.1\r\n\r\n", 501),
    "request target too long": (b"POST /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
    "header line over 64 KiB": (head("X: " + "a" * MAX_HEADER_LINE + "\r\n"), 431),
    "101 header lines": (head("".join(f"X{i}: 1\r\n" for i in range(101))), 431),
    "head never ending": (head("X: " + "a" * MAX_HEAD)[:-4], 431),
    "bare LF line ends": (b"POST / HTTP/1.1\nHost: t\n\n", 400),
    "header without colon": (head("X Y: 1\r\n"), 400),
    "folded header": (head("X: 1\r\n continued\r\n"), 400),
    "NUL in a value": (head("X: a\x00b\r\n"), 400),
    "CR in a value": (head("X: a\rb\r\n"), 400),
    "negative Content-Length": (head("Content-Length: -5\r\n"), 400),
    "Content-Length not a number": (head("Content-Length: 1e3\r\n"), 400),
    "Content-Length with a sign": (head("Content-Length: +2\r\n", b"{}"), 400),
    "two Content-Lengths": (head("Content-Length: 2\r\nContent-Length: 20\r\n", b"{}"), 400),
    "Content-Length and chunked": (
        head("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
        400,
    ),
    "two Transfer-Encodings": (
        head("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", b"0\r\n\r\n"),
        400,
    ),
    "gzip": (head("Transfer-Encoding: gzip\r\n", b"{}"), 501),
    "chunked then gzip": (head("Transfer-Encoding: chunked, gzip\r\n", b"{}"), 501),
    "bad chunk size": (head("Transfer-Encoding: chunked\r\n", b"zz\r\n{}\r\n0\r\n\r\n"), 400),
    # RFC 9112 3.2: Host exactly once in HTTP/1.1, at most once in HTTP/1.0.
    "HTTP/1.1 without Host": (b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400),
    "two Host headers": (head("Host: other\r\n"), 400),
    "two Host headers in HTTP/1.0": (b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400),
    # RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
    "HTTP/1.0 with chunked": (
        b"POST / HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        400,
    ),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_each_refusal_has_its_status(name):
    data, status = REFUSALS[name]
    assert refusal(data) == status


@pytest.mark.parametrize("name", list(HOSTILE))
def test_the_parser_refuses_hostile_input_only_with_the_status_the_worker_must_give(name):
    """What the parser refuses gets one of the statuses tests/test_hostile.py accepts; what
    it lets through is for the application or the deadlines (404, 413, 408, JSON 400s)."""
    data, statuses = HOSTILE[name]
    parser = RequestParser()
    try:
        parser.feed(data)
    except ProtocolError as error:
        if not parser.ready:  # else the first answer is the application's, to a whole request
            assert error.status in statuses, (name, error.status, str(error))
            return
    assert not {414, 431, 505} & set(statuses), name


def test_host_is_needed_once_in_http_1_1_only():
    [old] = parse(b"GET / HTTP/1.0\r\n\r\n")  # HTTP/1.0 had no Host
    assert (old.version, old.complete) == ("1.0", True)
    [new] = parse(b"GET / HTTP/1.1\r\nhOsT: \r\n\r\n")  # empty is valid (RFC 9112 3.2)
    assert new.complete


def test_http_1_0_with_a_content_length_body_still_parses():
    [request] = parse(b"POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}")
    assert (bytes(request.body), request.keep_alive) == (b"{}", False)


def test_pipelined_requests_come_out_in_order_with_their_bodies():
    data = (
        head("Content-Length: 8\r\n", b'{"n": 1}')
        + head("Transfer-Encoding: chunked\r\n", b'8\r\n{"n": 2}\r\n0\r\n\r\n')
        + b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    first, second, third = parse(data)
    assert (bytes(first.body), first.content_length, first.chunked) == (b'{"n": 1}', 8, False)
    assert (bytes(second.body), second.content_length, second.chunked) == (b'{"n": 2}', None, True)
    assert (third.method, third.target, third.complete) == ("GET", "/nope", True)
    assert all(r.complete and r.keep_alive for r in (first, second, third))


def test_a_head_split_anywhere_parses_the_same():
    data = head("Content-Type: application/json\r\nContent-Length: 2\r\n", b"{}")
    whole = parse(data)[0]
    for cut in range(1, len(data)):
        split = parse(data[:cut], data[cut:])[0]
        assert (split.request_line, split.headers, bytes(split.body), split.complete) == (
            whole.request_line, whole.headers, bytes(whole.body), whole.complete)  # fmt: skip


def test_keep_alive_follows_the_version_and_the_connection_header():
    def keep(version: str, connection: str = "") -> bool:
        extra = f"Connection: {connection}\r\n" if connection else ""
        return parse(f"GET / HTTP/{version}\r\nHost: t\r\n{extra}\r\n".encode())[0].keep_alive

    assert keep("1.1") and not keep("1.1", "close")
    assert not keep("1.0") and keep("1.0", "keep-alive")


def test_body_accounting_for_a_body_not_read():
    parser = RequestParser()
    parser.feed(head("Content-Length: 100\r\n", b"x" * 30))
    request = parser.ready[0]
    assert (request.received, request.unread(), request.complete) == (30, 100, False)
    request.body.clear()  # the application read the 30 bytes
    assert request.unread() == 70
    parser.feed(b"x" * 70)
    assert (request.complete, request.unread()) == (True, 70)
    chunked = parse(head("Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n"))[0]
    assert chunked.unread() is None  # unknown until the last chunk


def test_a_body_still_arriving_for_a_request_already_answered_goes_to_that_request():
    # The connection takes a request out of ``ready`` once answered; after an early
    # answer (404, 413) the rest of its body still comes through the parser.
    parser = RequestParser()
    parser.feed(head("Content-Length: 10\r\n"))
    request = parser.ready.popleft()
    parser.feed(b"x" * 6)
    parser.feed(b"x" * 4 + b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (request.received, request.complete) == (10, True)
    assert [r.target for r in parser.ready] == ["/next"] and parser.ready[0].complete


def test_expect_continue_and_upgrade_are_flagged():
    request = parse(head("Expect: 100-continue\r\nContent-Length: 5\r\n"))[0]
    assert request.expect_continue and not request.complete
    parser = RequestParser()
    parser.feed(head("Connection: upgrade\r\nUpgrade: websocket\r\n") + b"\x81\x00junk")
    assert parser.upgraded and parser.ready[0].upgrade
    parser.feed(b"more bytes that are not HTTP")  # ignored: not ours to parse


def test_request_id_and_origin_are_noted_as_the_environ_would_join_them():
    """App.direct reads these two instead of scanning the headers; repeated ids are joined
    with "," and stripped, as the WSGI environ's HTTP_X_REQUEST_ID is."""
    plain = parse(head("Content-Length: 0\r\n"))[0]
    assert (plain.request_id, plain.origin) == (None, False)
    both = parse(head("X-Request-Id:  a \r\nx-request-id: b\r\nORIGIN: https://x.example\r\n"))[0]
    assert (both.request_id, both.origin) == ("a,b", True)
    assert parse(head("X-Request-Id:\r\n"))[0].request_id == ""


HEADER_NAMES = st.sampled_from(["X-A", "Accept", "Cookie", "X-Forwarded-For", "Y"])
HEADER_VALUES = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)
TARGETS = st.sampled_from(["/", "/api/v0/echo/read", "/a?b=c&d=%20", "/%e9/x", "*"])


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS"]),
    TARGETS,
    st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6),
    st.binary(max_size=40),
    st.booleans(),
    st.integers(1, 8),
)
def test_valid_requests_parse_as_h11_parses_them(method, target, headers, body, chunked, pieces):
    """h11 as the oracle: the same method, target, headers and body, however the bytes come."""
    if chunked:
        framing = "Transfer-Encoding: chunked\r\n"
        payload = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        framing, payload = f"Content-Length: {len(body)}\r\n", body
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    data = f"{method} {target} HTTP/1.1\r\nHost: h\r\n{lines}{framing}\r\n".encode() + payload

    h11_side = h11.Connection(h11.SERVER)
    h11_side.receive_data(data)
    event = h11_side.next_event()
    assert isinstance(event, h11.Request)
    h11_body = b""
    while isinstance(part := h11_side.next_event(), h11.Data):
        h11_body += part.data
    assert isinstance(part, h11.EndOfMessage)

    size = max(1, len(data) // pieces)
    [ours] = parse(*(data[i : i + size] for i in range(0, len(data), size)))
    assert ours.method == event.method.decode()
    assert ours.target == event.target.decode()
    assert [(n.lower(), v.strip()) for n, v in ours.headers] == [
        (n.decode(), v.decode()) for n, v in event.headers
    ]
    assert bytes(ours.body) == h11_body and ours.complete


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_requests_or_a_protocol_error(data):
    try:
        parse(data)
    except ProtocolError as error:
        assert 400 <= error.status <= 505


def test_status_lines_are_cached_and_checked():
    assert response.status_bytes("200 OK") == b"HTTP/1.1 200 OK\r\n"
    assert response.status_bytes("200 OK") is response.status_bytes("200 OK")
    for bad in ("200 OK\r\nX: y", "OK"):
        with pytest.raises(response.HeaderError):
            response.status_bytes(bad)


def test_date_is_formatted_once_a_second():
    first = response.date_header(1_700_000_000.1)
    assert first == b"Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
    assert response.date_header(1_700_000_000.9) is first
    assert response.date_header(1_700_000_001.0) != first


def test_response_headers_refuse_cr_and_lf():
    assert response.header_line("A", "1") == (b"A: 1\r\n", response.PLAIN)
    assert response.header_line("connection", "Close") == (b"connection: Close\r\n",
                                                           response.CONNECTION_CLOSE)  # fmt: skip
    for name, value in (("A", "1\r\nSet-Cookie: x"), ("A\n", "1"), ("A", "1\r"), ("A:", "1")):
        with pytest.raises(response.HeaderError):
            response.header_line(name, value)


def test_error_answers_are_json_close_and_nosniff():
    answer = response.error_response(503, 0.0, b"Retry-After: 1\r\n")
    head_part, _, body = answer.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    for line in (b"Connection: close", b"X-Content-Type-Options: nosniff", b"Retry-After: 1",
                 b"Content-Type: application/json", b"Content-Length: %d" % len(body)):  # fmt: skip
        assert line in head_part.split(b"\r\n"), line
    assert body == b'{"error": "503 Service Unavailable"}'


def request_of(data: bytes, more: bytes = b"") -> Request:
    """The first request of ``data``, with ``more`` fed after it (a body's rest)."""
    parser = RequestParser()
    parser.feed(data)
    if more:
        parser.feed(more)
    return parser.ready[0]


POST = b"POST / HTTP/1.1\r\nHost: t\r\n"


@pytest.mark.parametrize(
    ("data", "draining", "broken_behind", "kept"),
    [
        (POST + b"Content-Length: 2\r\n\r\n{}", False, False, True),
        (POST + b"Content-Length: 2\r\n\r\n{}", True, False, False),
        (POST + b"Content-Length: 2\r\n\r\n{}", False, True, False),
        (POST + b"Connection: close\r\nContent-Length: 2\r\n\r\n{}", False, False, False),
        (b"POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}", False, False, False),
        (b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", False,
         False, True),
        # a body left unread: dropped to keep the connection when small and already invited
        (POST + b"Content-Length: %d\r\n\r\n" % response.DISCARD_LIMIT, False, False, True),
        (POST + b"Content-Length: %d\r\n\r\n" % (response.DISCARD_LIMIT + 1), False, False,
         False),
        (POST + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n", False, False, False),
        (POST + b"Transfer-Encoding: chunked\r\n\r\n", False, False, False),
    ],
)  # fmt: skip
def test_the_keep_alive_decision(data, draining, broken_behind, kept):
    request = request_of(data)
    assert response.keep_alive(request, draining=draining, broken_behind=broken_behind) is kept


def test_a_complete_chunked_body_keeps_the_connection():
    request = request_of(POST + b"Transfer-Encoding: chunked\r\n\r\n", b"2\r\n{}\r\n0\r\n\r\n")
    assert request.complete
    assert response.keep_alive(request, draining=False, broken_behind=False)


def test_an_applications_head_is_completed_and_checked():
    now = 1_700_000_000.0
    date = response.date_header(now)
    head, close = response.head("200 OK", [("Content-Type", "text/plain")], 5, False, "1.1", now)
    assert not close
    assert head == (b"HTTP/1.1 200 OK\r\n" + date + b"Content-Type: text/plain\r\n"
                    b"Content-Length: 5\r\n" + response.NOSNIFF + b"\r\n")  # fmt: skip
    head, close = response.head("200 OK", [("Connection", "close"), ("Content-Length", "5"),
                                           ("X-Content-Type-Options", "nosniff")], 5, False,
                                "1.0", now)  # fmt: skip
    assert close and head.count(b"Connection") == 1 and head.count(b"nosniff") == 1
    assert response.head("200 OK", [], 0, False, "1.0", now)[0].endswith(
        response.KEEP_ALIVE + b"\r\n")
    with pytest.raises(response.HeaderError):
        response.head("200 OK", [("Content-Length", "4")], 5, False, "1.1", now)
    head, _ = response.head("200 OK", [("Content-Length", "4")], 0, False, "1.1", now, True)
    assert b"Content-Length: 4\r\n" in head  # HEAD: its body is not sent
    direct = response.JSON_LINES % 2
    assert response.head("200 OK", direct, 2, True, "1.1", now) == (
        b"HTTP/1.1 200 OK\r\n" + date + direct + response.CLOSE + b"\r\n", True)


def test_the_json_head_is_spelled_once():
    assert response.json_headers(2, True, [("Vary", "Origin")]) == [
        ("Content-Type", "application/json"), ("X-Content-Type-Options", "nosniff"),
        ("Content-Length", "2"), ("Connection", "close"), ("Vary", "Origin")]  # fmt: skip
    lines = b"".join(response.header_line(n, v)[0] for n, v in response.json_headers(7))
    assert lines == response.JSON_LINES % 7
    assert response.error_head(response.SERVER_ERROR, 38, 0.0).startswith(
        b"HTTP/1.1 500 Internal Server Error\r\n")
    assert json.loads(response.SERVER_ERROR_BODY) == {"error": response.SERVER_ERROR}
