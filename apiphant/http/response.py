"""Responses as bytes: status line, headers and body, built once and sent in one write.

Pure: the clock comes in as an argument. The Date header is formatted once a
second (as uvicorn does), not once a response, and status lines are cached.
"""

import json
from email.utils import formatdate

from apiphant.errors import status_line

#: Every answer, the application's and the server's own: never sniffed as a page or script.
NOSNIFF = b"X-Content-Type-Options: nosniff\r\n"
CLOSE = b"Connection: close\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

_status_lines: dict[str, bytes] = {}
_date: list = [0, b""]  # [whole second, header line]


class HeaderError(ValueError):
    """A response header the application gave that would break the response (CR, LF)."""


def status_bytes(status: str) -> bytes:
    """``"200 OK"`` -> ``b"HTTP/1.1 200 OK\\r\\n"``, cached for the statuses an app uses."""
    line = _status_lines.get(status)
    if line is None:
        if "\r" in status or "\n" in status or not status[:3].isdigit():
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
    """One response header as its line and its kind, checked and formatted once per
    (name, value) seen (an application sends the same few again and again); a CR or LF
    in either (response splitting) is refused."""
    known = _lines.get((name, value))
    if known is not None:
        return known
    if "\r" in name or "\n" in name or "\r" in value or "\n" in value or ":" in name:
        raise HeaderError(f"bad response header {name[:40]!r}")
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
