"""Every response head, as bytes and as WSGI header lists: one home for each line.

Status line, headers and body are built once and sent in one write. The JSON
head (Content-Type, nosniff, Content-Length) is spelled here only: the App's
answers (``json_headers``, and ``JSON_LINES`` for its direct path), the
application's head as the server completes it (``head``), the server's own
error answers (``error_response``, ``error_head``), and the keep-alive
decision (``keep_alive``).

Pure: the clock comes in as an argument. The Date header is formatted once a
second (as uvicorn does), not once a response, and status lines are cached.
"""

import json
import re
from email.utils import formatdate
from typing import TYPE_CHECKING

from apiphant.errors import status_line

if TYPE_CHECKING:
    from apiphant.http.parser import Request

JSON = "application/json"
#: Every answer, the application's and the server's own: never sniffed as a page or script.
NOSNIFF_HEADER = ("X-Content-Type-Options", "nosniff")
NOSNIFF = "{}: {}\r\n".format(*NOSNIFF_HEADER).encode()
CONTENT_TYPE_JSON = f"Content-Type: {JSON}\r\n".encode()
#: The JSON head's lines as a %-template of the body's length, formatted once: App.direct
#: appends its own lines (the request id) and fills the length in, on the hot path.
JSON_LINES = CONTENT_TYPE_JSON + NOSNIFF + b"Content-Length: %d\r\n"
CLOSE = b"Connection: close\r\n"
KEEP_ALIVE = b"Connection: keep-alive\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
SERVER_ERROR = status_line(500)
#: A body left unread by the application is read and dropped to keep the connection, up to
#: this size and framed by Content-Length; past it, the connection is closed instead.
DISCARD_LIMIT = 64 * 1024

_status_lines: dict[str, bytes] = {}
_date: list = [0, b""]  # [whole second, header line]


class HeaderError(ValueError):
    """A response header the application gave that would break the response: a control
    byte, a name that is no token, or a header that frames the message (the server's)."""


#: Hop-by-hop headers besides Connection (RFC 9110 section 7.6.1; PEP 3333 forbids them to
#: applications): the server alone frames an answer and speaks for the connection. Behind
#: Nginx, a Transfer-Encoding of the application's was an ``invalid chunked response``.
HOP_BY_HOP = frozenset(
    {"transfer-encoding", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"}
)
#: What a handler may not set through ``http.set_header``: the hop-by-hop headers, and the
#: two the server writes from what it knows (the body's length, whether to close).
SERVER_HEADERS = HOP_BY_HOP | {"connection", "content-length"}
#: A field name is a token (RFC 9110 section 5.1).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: No control byte in a field value or a reason phrase but HTAB (RFC 9110 section 5.5):
#: CR and LF split the answer, NUL and the others are refused or mangled on the way.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def check_header(name: str, value: str) -> None:
    """Refuse a header line that would break the answer or frame it (HeaderError)."""
    if not _TOKEN.fullmatch(name) or _CONTROL.search(value) or not _latin1(value):
        raise HeaderError(f"bad response header {name[:40]!r}: {value[:40]!r}")
    if name.lower() in HOP_BY_HOP:
        raise HeaderError(f"the response header {name} is the server's to send")


def status_bytes(status: str) -> bytes:
    """``"200 OK"`` -> ``b"HTTP/1.1 200 OK\\r\\n"``, cached for the statuses an app uses."""
    line = _status_lines.get(status)
    if line is None:
        if _CONTROL.search(status) or not status[:3].isdigit():
            raise HeaderError(f"bad status {status[:40]!r}")
        line = f"HTTP/1.1 {status}\r\n".encode("latin-1")
        if len(_status_lines) < 256:
            _status_lines[status] = line
    return line


def date_header(now: float) -> bytes:
    """The Date header line for the wall-clock time ``now``, formatted once a second."""
    second = int(now)
    if _date[0] != second:
        _date[0] = second
        _date[1] = f"Date: {formatdate(second, usegmt=True)}\r\n".encode("ascii")
    return _date[1]


#: What a response header means to the server, besides its line.
PLAIN, CONNECTION_CLOSE, CONNECTION_OTHER, LENGTH, SNIFF = range(5)
_lines: dict[tuple[str, str], tuple[bytes, int]] = {}


def header_line(name: str, value: str) -> tuple[bytes, int]:
    """One response header as its line and its kind, checked (``check_header``) and
    formatted once per (name, value) seen: an application sends the same few again and
    again."""
    known = _lines.get((name, value))
    if known is not None:
        return known
    check_header(name, value)
    lower = name.lower()
    kind = PLAIN
    if lower == "connection":
        kind = CONNECTION_CLOSE if value.strip().lower() == "close" else CONNECTION_OTHER
    elif lower == "content-length":
        kind = LENGTH
    elif lower == "x-content-type-options":
        kind = SNIFF
    known = (f"{name}: {value}\r\n".encode("latin-1"), kind)
    if len(_lines) < 4096:
        _lines[(name, value)] = known
    return known


def check_length(value: str, length: int, head: bool = False) -> None:
    """An application's Content-Length must be its body's (a shorter one leaves the rest
    to be read as the next answer); for HEAD, whose body is not sent, any length."""
    value = value.strip()
    if value == str(length) or (head and value.isascii() and value.isdigit()):
        return
    raise HeaderError(f"Content-Length {value[:20]!r} for a body of {length} bytes")


def error_body(status: int) -> bytes:
    """The JSON body of an error answer that says no more than its status."""
    return json.dumps({"error": status_line(status)}).encode()


SERVER_ERROR_BODY = error_body(500)


def json_headers(
    length: int, close: bool = False, extra: list[tuple[str, str]] | tuple = ()
) -> list[tuple[str, str]]:
    """A JSON answer's headers in the WSGI list form, ``extra`` last."""
    # nosniff: a browser never runs an answer as a script or page, whatever it holds.
    headers = [("Content-Type", JSON), NOSNIFF_HEADER, ("Content-Length", str(length))]
    if close:
        headers.append(("Connection", "close"))
    headers += extra
    return headers


def keep_alive(request: "Request", *, draining: bool, broken_behind: bool) -> bool:
    """Whether the connection is kept after answering ``request``.

    Not when draining, asked by the client to close (or upgrade), a broken request is
    pipelined behind (``broken_behind``), or a body is left unread that is too large
    (or never invited: Expect) to drop.
    """
    if draining or not request.keep_alive or request.upgrade or broken_behind:
        return False
    if request.complete:
        return True
    left = request.unread()
    return not (left is None or left > DISCARD_LIMIT or request.expect_continue)


def head(
    status: str,
    headers: list[tuple[str, str]] | bytes,
    length: int,
    close: bool,
    version: str,
    now: float,
    bodiless: bool = False,
) -> tuple[bytes, bool]:
    """An application's status line and headers, and whether the connection closes after
    its answer: ``close`` (``keep_alive``'s no), or the application's ``Connection: close``,
    said once.

    ``headers`` is the WSGI list, each checked (``header_line``), with Content-Length
    (checked against ``length``; any for a ``bodiless`` HEAD answer) and nosniff added when
    missing; or App.direct's lines, formatted and complete (bytes). An HTTP/1.0 client is
    told when the connection is kept.
    """
    parts = [status_bytes(status), date_header(now)]
    if type(headers) is bytes:  # App.direct's lines: checked, Content-Length and nosniff in
        parts.append(headers)
    else:
        has_length = sniff = False
        for name, value in headers:
            line, kind = header_line(name, value)
            if kind == PLAIN:
                parts.append(line)
            elif kind == LENGTH:
                has_length = True
                check_length(value, length, bodiless)
                parts.append(line)
            elif kind == SNIFF:
                sniff = True
                parts.append(line)
            elif kind == CONNECTION_CLOSE:
                close = True  # said once, below
        if not has_length:
            parts.append(b"Content-Length: %d\r\n" % length)
        if not sniff:
            parts.append(NOSNIFF)
    if close:
        parts.append(CLOSE)
    elif version == "1.0":
        parts.append(KEEP_ALIVE)
    parts.append(b"\r\n")
    return b"".join(parts), close


def error_head(status: str, length: int, now: float) -> bytes:
    """The head of the server's 500 for an application that failed: JSON, closing."""
    return b"".join(
        (
            status_bytes(status),
            date_header(now),
            CONTENT_TYPE_JSON,
            NOSNIFF,
            CLOSE,
            b"Content-Length: %d\r\n\r\n" % length,
        )
    )


def error_response(status: int, now: float, extra: bytes = b"") -> bytes:
    """A complete JSON error answer from the server itself, closing the connection."""
    body = error_body(status)
    return b"".join(
        (
            status_bytes(status_line(status)),
            date_header(now),
            CLOSE,
            CONTENT_TYPE_JSON,
            NOSNIFF,
            extra,
            b"Content-Length: %d\r\n\r\n" % len(body),
            body,
        )
    )
