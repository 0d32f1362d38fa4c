"""Responses as bytes: status line, headers and body, built once and sent in one write.

Pure: the clock comes in as an argument. The Date header is formatted once a
second (as uvicorn does), not once a response, and status lines are cached.
"""

import json
import re
from email.utils import formatdate

from apiphant.errors import status_line

#: Every answer, the application's and the server's own: never sniffed as a page or script.
NOSNIFF = b"X-Content-Type-Options: nosniff\r\n"
CLOSE = b"Connection: close\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

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


def header_bytes(headers: list[tuple[str, str]]) -> bytes:
    """The headers as lines (through header_line's checks)."""
    return b"".join(header_line(name, value)[0] for name, value in headers)


def error_response(status: int, now: float, extra: bytes = b"") -> bytes:
    """A complete JSON error answer from the server itself, closing the connection."""
    body = json.dumps({"error": status_line(status)}).encode()
    return b"".join(
        (
            status_bytes(status_line(status)),
            date_header(now),
            CLOSE,
            b"Content-Type: application/json\r\n",
            NOSNIFF,
            extra,
            b"Content-Length: %d\r\n\r\n" % len(body),
            body,
        )
    )
