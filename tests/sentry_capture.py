"""A local Sentry endpoint for tests: real HTTP, so sentry-sdk's real transport is used.

    with capture_sentry() as sentry:
        env = {**os.environ, **sentry.env()}      # SENTRY_DSN pointing here
        ...start the process under test with env...
        [event] = sentry.wait_for(1, timeout=10)
        assert event["tags"]["task"] == "boom"

The server accepts envelopes at ``/api/<project>/envelope/``, decodes the
body as the transport sent it (gzip by default, ``br`` when the brotli
module is installed, or plain), and keeps every item. Requests it cannot
understand are answered 400 and listed in ``problems()`` so a test can
tell "nothing was sent" from "something unreadable was sent".
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ENVELOPE_PATH = re.compile(r"^/api/(?P<project>[^/]+)/envelope/?(?:\?.*)?$")


@dataclass(frozen=True)
class Item:
    """One envelope item: its header (``type``, ``length``...) and raw payload."""

    headers: dict[str, Any]
    payload: bytes

    @property
    def type(self) -> str:
        return str(self.headers.get("type", ""))

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass(frozen=True)
class Envelope:
    """One POST: the project from the URL, HTTP headers, envelope header, items."""

    project: str
    http_headers: dict[str, str]
    headers: dict[str, Any]
    items: list[Item] = field(default_factory=list)


def decode_body(body: bytes, encoding: str | None) -> bytes:
    """Undo the Content-Encoding sentry-sdk applied."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding in ("gzip", "x-gzip"):
        return gzip.decompress(body)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)
    if encoding == "br":
        try:
            import brotli  # type: ignore[import-not-found]
        except ImportError:
            raise ValueError("body is brotli-compressed but brotli is not installed") from None
        return brotli.decompress(body)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


def parse_envelope(data: bytes) -> tuple[dict[str, Any], list[Item]]:
    """Split an envelope: a JSON header line, then items of header line + payload.

    A payload is ``length`` bytes when its header says so, else one line.
    """
    end = data.find(b"\n")
    end = len(data) if end < 0 else end
    header = json.loads(data[:end] or b"{}")
    items: list[Item] = []
    pos = end + 1
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        line = data[pos:end]
        pos = end + 1
        if not line.strip():
            continue
        item_headers = json.loads(line)
        length = item_headers.get("length")
        if length is not None:
            payload = data[pos:pos + int(length)]
            pos += int(length)
            if data[pos:pos + 1] == b"\n":
                pos += 1
        else:
            end = data.find(b"\n", pos)
            end = len(data) if end < 0 else end
            payload = data[pos:end]
            pos = end + 1
        items.append(Item(item_headers, payload))
    return header, items


class SentryCapture:
    """What the endpoint received; thread-safe, with a bounded wait."""

    def __init__(self, host: str, port: int, project: str = "1", key: str = "public") -> None:
        self.host = host
        self.port = port
        self.dsn = f"http://{key}@{host}:{port}/{project}"
        self._envelopes: list[Envelope] = []
        self._problems: list[str] = []
        self._changed = threading.Condition()

    def env(self) -> dict[str, str]:
        """Environment for a process under test: the DSN, and no proxy for it."""
        return {"SENTRY_DSN": self.dsn, "NO_PROXY": self.host, "no_proxy": self.host}

    def envelopes(self) -> list[Envelope]:
        with self._changed:
            return list(self._envelopes)

    def items(self, type: str | None = None) -> list[Item]:
        return [
            item for envelope in self.envelopes() for item in envelope.items
            if type is None or item.type == type
        ]

    def events(self) -> list[dict[str, Any]]:
        """Error events (``event`` items) as dicts, in arrival order."""
        return [item.json() for item in self.items("event")]

    def problems(self) -> list[str]:
        """Requests that were refused: wrong path, undecodable body, bad envelope."""
        with self._changed:
            return list(self._problems)

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until ``count`` events arrived; return them, or fail saying what came."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                events = [
                    item.json() for envelope in self._envelopes for item in envelope.items
                    if item.type == "event"
                ]
                left = deadline - time.monotonic()
                if len(events) >= count or left <= 0:
                    break
                self._changed.wait(left)
            problems = list(self._problems)
        if len(events) < count:
            raise AssertionError(
                f"expected {count} Sentry event(s) within {timeout:g}s, got {len(events)}"
                + (f"; refused requests: {problems}" if problems else "")
            )
        return events

    def _record(self, envelope: Envelope | None, problem: str | None = None) -> None:
        with self._changed:
            if envelope is not None:
                self._envelopes.append(envelope)
            if problem is not None:
                self._problems.append(problem)
            self._changed.notify_all()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    capture: SentryCapture


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        capture = self.server.capture
        match = ENVELOPE_PATH.match(self.path)
        if not match:
            capture._record(None, f"POST {self.path}: not an envelope URL")
            self._reply(404, {"detail": "not found"})
            return
        try:
            body = decode_body(self._body(), self.headers.get("Content-Encoding"))
            header, items = parse_envelope(body)
        except Exception as error:  # a test should see this, not a hang
            capture._record(None, f"POST {self.path}: {type(error).__name__}: {error}")
            self._reply(400, {"detail": str(error)})
            return
        capture._record(Envelope(match["project"], dict(self.headers.items()), header, items))
        self._reply(200, {"id": header.get("event_id")})

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


@contextmanager
def capture_sentry(host: str = "127.0.0.1") -> Iterator[SentryCapture]:
    """Serve a capturing Sentry endpoint on a free port for the ``with`` block."""
    server = _Server((host, 0), _Handler)
    capture = server.capture = SentryCapture(host, server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, name="sentry-capture", daemon=True)
    thread.start()
    try:
        yield capture
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
