"""The gevent server: pywsgi with the few things production needs and pywsgi lacks.

- TCP_NODELAY on every connection, and headers and body in one send:
  pywsgi's two sends otherwise stall each keep-alive request on Nagle's
  algorithm and delayed ACKs (about 40 ms).
- An idle keep-alive timeout, a deadline for request headers (slowloris),
  and a per-read timeout for bodies.
- A bound on concurrent connections (a gevent Pool).
- A lingering close: a connection closed with request bytes still arriving
  is half-closed and drained for a bounded time first, so the client reads
  its answer instead of a TCP reset (behind Nginx, a reset takes the worker
  out of rotation).
- A graceful drain: stop accepting, let in-flight requests finish with
  ``Connection: close``, and close idle keep-alive connections, bounded.
  Behind Nginx, idle connections are closed only after ``drain_idle_grace``:
  Nginx does not retry a POST that fails on a reused connection, so the
  worker must never close one that Nginx may be writing to. With the grace
  above Nginx's upstream ``keepalive_timeout``, Nginx closes them first.
"""

import email.parser
import http.client
import json
import logging
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
from gevent.pool import Pool
from gevent.pywsgi import (
    MAX_REQUEST_LINE,
    Input,
    LoggingLogAdapter,
    OldMessage,
    WSGIHandler,
    WSGIServer,
    unquote_latin1,
)

from apiphant.errors import status_line

log = logging.getLogger(__name__)
access_log = logging.getLogger("apiphant.access")

#: A body left unread by the application is read and dropped to keep the
#: connection, up to this size; past it, the connection is closed instead.
DISCARD_LIMIT = 64 * 1024
#: http.client's limits: a longer header line, or more lines, is refused with 431.
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100
#: A header block of plain ``Name: value`` lines, which parse without the email package.
_PLAIN_HEADERS = re.compile(r"(?:[!-9;-~]+:[^\r\n]*\r?\n)*\r?\n")
_HEADER_FIELD = re.compile(r"([!-9;-~]+):[ \t]*([^\r\n]*)\r?\n")
#: The read buffer of a connection. pywsgi's 8 KiB cost about 5 KiB of resident
#: memory per idle keep-alive connection (bench/RESULTS.md). A request up to
#: this size takes one recv; a larger body is read straight into its bytes.
READ_BUFFER = 1024


def error_response(status: int) -> bytes:
    """A complete JSON error response that closes the connection."""
    body = json.dumps({"error": status_line(status)}).encode()
    return (
        f"HTTP/1.1 {status_line(status)}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def parse_headers(rfile: Any) -> OldMessage:
    """Read request headers into the message pywsgi expects, as http.client would.

    http.client parses headers with the email package, a tenth of the CPU of
    a request. A block of plain ``Name: value`` lines gives the same message
    directly; anything else (folded lines, stray CRs, no colon) still goes
    through the email parser, which records its defects.
    """
    lines = []
    while True:
        line = rfile.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            message = OldMessage()
            message.status = "Line too long"  # as pywsgi reports it
            return message
        lines.append(line)
        if len(lines) > MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
        if line in (b"\r\n", b"\n", b""):
            break
    text = b"".join(lines).decode("iso-8859-1")
    if _PLAIN_HEADERS.fullmatch(text):
        message = OldMessage()
        message._headers = _HEADER_FIELD.findall(text)
        return message
    return email.parser.Parser(_class=OldMessage).parsestr(text)


class ClientError(ValueError):
    """A request that breaks HTTP: answered with ``status`` and the connection closed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class HeaderTimeout(ClientError):
    """Request headers took longer than the header deadline (slowloris)."""

    def __init__(self) -> None:
        super().__init__(408, "request headers timed out")


class BodyTimeout(TimeoutError):
    """The request body took longer than the request timeout (a slow body)."""


@dataclass(frozen=True)
class Limits:
    """Timeouts in seconds and the connection bound of one server."""

    max_connections: int = 20000
    keepalive_timeout: float = 75.0  # above Nginx's upstream keepalive_timeout (60 s)
    header_timeout: float = 10.0
    request_timeout: float = 30.0
    drain_timeout: float = 10.0
    drain_idle_grace: float = 0.0  # behind Nginx: above its upstream keepalive_timeout
    #: A lingering close waits at most this long for each read, and this long in all
    #: (Nginx's lingering_timeout and lingering_time).
    linger_timeout: float = 2.0
    linger_time: float = 30.0


class _Input(Input):
    """pywsgi's request body, with a deadline for the whole body.

    An unread body is dropped to keep the connection only when it is small
    and framed by Content-Length; otherwise, or when dropping it fails, the
    connection is closed instead, with a lingering close.
    """

    __slots__ = ("handler", "deadline")

    def read(self, length: int | None = None) -> bytes:
        return self._before_deadline(super().read, length)

    def readline(self, size: int | None = None) -> bytes:
        return self._before_deadline(super().readline, size)

    def _before_deadline(self, read: Callable, size: int | None) -> bytes:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise BodyTimeout("request body timed out")
        with gevent.Timeout(left, BodyTimeout("request body timed out")):
            return read(size)

    def unread(self) -> bool:
        """Whether body bytes may still arrive that nothing has read."""
        if self.chunked_input:
            return self.chunk_length != 0  # 0 once the last chunk is read
        return (self.content_length or 0) > self.position

    def too_large_to_drop(self) -> bool:
        """Whether dropping the unread rest would cost more than a new connection.

        A body the client was never invited to send (``Expect: 100-continue``
        with no ``100 Continue`` yet) is not waited for either.
        """
        return (
            self.chunked_input
            or (self.content_length or 0) - self.position > DISCARD_LIMIT
            or self.socket is not None
        )

    def _discard(self) -> None:
        handler = self.handler
        if handler.close_connection or not self.unread():
            return
        if self.too_large_to_drop():
            handler.close_connection = True
            return
        try:
            super()._discard()
        except BaseException:
            handler.close_connection = True
            raise


class Handler(WSGIHandler):
    """One connection: its keep-alive loop, timeouts, and its part in the drain."""

    # A slot, not one more key in the instance dict: pywsgi's handler already
    # sets 27 attributes, and past 28 CPython 3.11 gives each handler its own
    # 1.5 KiB dict instead of sharing the keys (tests/test_bench_smoke.py).
    __slots__ = ("idle_since",)

    def __init__(self, sock: socket.socket, address: Any, server: "Server") -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # not TCP (a Unix socket): nothing to tune
            pass
        super().__init__(sock, address, server)
        self.rfile = sock.makefile("rb", READ_BUFFER)
        self.idle_since: float | None = None  # waiting for a request since, or None

    def handle(self) -> None:
        connections = self.server.connections
        connections.add(self)
        try:
            super().handle()
        finally:
            connections.discard(self)

    def read_requestline(self) -> str:
        # Wait for the next request holding no objects of the last one: they
        # would be kept by every idle keep-alive connection.
        self.environ = self.wsgi_input = self.response_headers = None
        self.headers = WSGIHandler.headers
        limits = self.server.limits
        self.socket.settimeout(limits.keepalive_timeout)
        self.idle_since = time.monotonic()
        try:
            if self.server.draining:
                return ""
            line = self.rfile.readline(MAX_REQUEST_LINE)
        finally:
            self.idle_since = None
        self.socket.settimeout(limits.request_timeout)
        return line.decode("latin-1")

    def MessageClass(self, rfile: Any, *args: Any) -> OldMessage:  # pywsgi names it so
        return parse_headers(rfile)

    def read_request(self, raw_requestline: str) -> bool:
        """Parse the request line and headers, refusing what could desynchronise a connection.

        Unlike pywsgi, it refuses malformed header lines, folded or control
        characters in values, Content-Length with Transfer-Encoding, differing
        Content-Lengths, and transfer codings other than chunked: the
        ingredients of request smuggling.
        """
        self.requestline = raw_requestline.rstrip()
        words = self.requestline.split()
        if len(words) != 3:
            raise ClientError(400, f"bad request line {self.requestline[:100]!r}")
        self.command, self.path, self.request_version = words
        if self.request_version not in ("HTTP/1.1", "HTTP/1.0"):
            raise ClientError(
                505 if self.request_version[:5] == "HTTP/" else 400,
                f"bad HTTP version {self.request_version[:20]!r}",
            )
        try:
            with gevent.Timeout(self.server.limits.header_timeout, HeaderTimeout):
                self.headers = headers = self.MessageClass(self.rfile, 0)
        except http.client.HTTPException as error:  # more than 100 header lines
            raise ClientError(431, str(error)) from None
        if headers.status:  # a header line over 64 KiB
            raise ClientError(431, headers.status)
        if headers.defects:
            raise ClientError(400, "malformed header line")
        for _, value in headers._headers:
            if "\n" in value or "\r" in value or "\x00" in value:
                raise ClientError(400, "control character in a header value")
        lengths = headers.get_all("content-length")
        codings = headers.get_all("transfer-encoding")
        if codings and len(codings) > 1:
            raise ClientError(400, "more than one Transfer-Encoding header")
        coding = codings[0] if codings else None
        if coding is not None:
            if coding.strip().lower() != "chunked":
                raise ClientError(501, f"unsupported Transfer-Encoding {coding[:40]!r}")
            if lengths:
                raise ClientError(400, "both Content-Length and Transfer-Encoding")
            self.content_length = None
        elif lengths:
            if len(set(lengths)) > 1 or not lengths[0].isdigit() or not lengths[0].isascii():
                raise ClientError(400, f"bad Content-Length {lengths[0][:40]!r}")
            self.content_length = int(lengths[0])
        else:
            self.content_length = None
        connection = (headers.get("connection") or "").lower()
        if self.request_version == "HTTP/1.1":
            self.close_connection = connection == "close"
        else:
            self.close_connection = connection != "keep-alive"
        return True

    def handle_one_request(self) -> Any:
        result = super().handle_one_request()
        if isinstance(result, tuple):
            # Refused before the application: the rest of the request may be on its
            # way. pywsgi's own refusals (414) answer in JSON too.
            self._orig_status = result[0]
            try:
                self.socket.sendall(error_response(int(result[0])))
            except OSError:
                return None
            self.time_finish = time.time()
            self.log_request()
            self.linger()
            return None
        if result is None and self.socket is not None:
            body = self.wsgi_input
            if body is not None and body.unread():
                self.linger()
        return result

    def linger(self) -> None:
        """Half-close, then read and drop what the client still sends, bounded in time.

        A close() with request bytes unread makes the kernel send a reset, which
        can destroy the answer before the client reads it: a direct client sees
        ECONNRESET instead of its 413, and Nginx takes the worker out of rotation
        (RFC 9112 section 9.6; Nginx's lingering close does the same).
        """
        limits = self.server.limits
        sock, rfile = self.socket, self.rfile
        deadline = time.monotonic() + limits.linger_time
        try:
            sock.shutdown(socket.SHUT_WR)
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(min(limits.linger_timeout, left))
                if not rfile.read1(16384):
                    break
        except (OSError, ValueError):  # a reset, a timeout, or a closed file: done
            pass

    def _handle_client_error(self, ex: Exception) -> tuple[str, bytes]:
        status = ex.status if isinstance(ex, ClientError) else 400
        log.info("Refused a request from %s: %d %s", self._client_host(), status, ex)
        return str(status), error_response(status)

    def _client_host(self) -> str:
        address = self.client_address
        return address[0] if isinstance(address, tuple) else str(address or "-")

    def get_environ(self) -> dict:
        """pywsgi's environ, plus RAW_URI and a body with a deadline.

        pywsgi formats each parsed header back into a line, then splits it
        again; this builds the same dict from the parsed pairs in one pass.
        """
        env = self.server.get_environ()
        env["REQUEST_METHOD"] = self.command
        env["SCRIPT_NAME"] = ""
        path, _, query = self.path.partition("?")
        env["PATH_INFO"] = unquote_latin1(path)
        env["QUERY_STRING"] = query
        headers = self.headers
        content_type = headers.get("content-type")
        if content_type is not None:
            env["CONTENT_TYPE"] = content_type
        length = headers.get("content-length")
        if length:
            env["CONTENT_LENGTH"] = length
        env["SERVER_PROTOCOL"] = self.request_version
        address = self.client_address
        if isinstance(address, tuple):
            env["REMOTE_ADDR"] = str(address[0])
            env["REMOTE_PORT"] = str(address[1])
        for name, value in headers._headers:
            if "_" in name:  # as pywsgi: X_Forwarded_For must not pass for X-Forwarded-For
                continue
            key = "HTTP_" + name.replace("-", "_").upper()
            if key == "HTTP_CONTENT_TYPE" or key == "HTTP_CONTENT_LENGTH":
                continue
            value = value.strip()
            if key in env:
                env[key] += ("; " if "COOKIE" in key else ",") + value
            else:
                env[key] = value
        body = _Input(
            self.rfile,
            self.content_length,
            socket=self.socket if env.get("HTTP_EXPECT") == "100-continue" else None,
            chunked_input=env.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked",
        )
        body.handler = self
        body.deadline = time.monotonic() + self.server.limits.request_timeout
        self.wsgi_input = body
        reads = not self._connection_upgrade_requested()
        env["wsgi.input"] = body if reads else self.rfile
        env["wsgi.input_terminated"] = reads
        env["RAW_URI"] = self.path
        return env

    def start_response(self, status: str, headers: list, exc_info: Any = None) -> Callable:
        """Say ``Connection: close`` whenever the connection will not be reused: draining,
        asked to by the client, or a body left unread that is too large to drop."""
        body = self.wsgi_input
        if (
            self.server.draining
            or self.close_connection
            or (body is not None and body.unread() and body.too_large_to_drop())
        ):
            self.close_connection = True
            headers = [h for h in headers if h[0].lower() != "connection"]
            headers.append(("Connection", "close"))
        return super().start_response(status, headers, exc_info)

    def _write_with_headers(self, data: bytes) -> None:
        """Send the status line, headers and body together: one send, no Nagle stall."""
        self.headers_sent = True
        self.finalize_headers()
        towrite = bytearray(b"HTTP/1.1 ")
        towrite += self.status
        towrite += b"\r\n"
        for header, value in self.response_headers:
            towrite += header
            towrite += b": "
            towrite += value
            towrite += b"\r\n"
        towrite += b"\r\n"
        if data and not self.response_use_chunked:
            towrite += data
            self._sendall(towrite)
        else:
            self._sendall(towrite)
            self._write(data)

    def log_request(self) -> None:
        if self.server.access_log:
            access_log.info(
                '%s "%s" %s %s %.6f',
                self._client_host(),
                self.requestline,
                (self._orig_status or "000").split(" ", 1)[0],
                self.response_length or "-",
                (self.time_finish or 0) - self.time_start,
            )

    def close_if_idle(self, for_at_least: float = 0.0) -> None:
        """Part of the drain: close this connection if it has waited long enough for a request."""
        idle_since = self.idle_since
        if (
            idle_since is not None
            and self.socket is not None
            and time.monotonic() - idle_since >= for_at_least
        ):
            try:
                self.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Server(WSGIServer):
    """A pywsgi server with limits, TCP_NODELAY and a graceful drain."""

    handler_class = Handler
    #: pywsgi's 128 drops connections when a thousand clients connect at once;
    #: the kernel caps it at net.core.somaxconn. gunicorn's default.
    backlog = 2048

    def __init__(
        self,
        address: tuple,
        application: Callable,
        limits: Limits = Limits(),
        access_log: bool = False,
    ) -> None:
        super().__init__(
            address,
            application,
            spawn=Pool(limits.max_connections),
            log=None,
            error_log=LoggingLogAdapter(logging.getLogger("apiphant.http"), logging.INFO),
        )
        self.limits = limits
        self.access_log = access_log
        self.draining = False
        self.connections: set[Handler] = set()

    def drain(self, timeout: float | None = None) -> bool:
        """Stop accepting and wait for in-flight requests; True when all finished in time."""
        limits = self.limits
        timeout = limits.drain_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self.draining = True
        self.close()
        while self.connections and time.monotonic() < deadline:
            for handler in list(self.connections):
                handler.close_if_idle(limits.drain_idle_grace)
            self.pool.join(timeout=min(0.05, max(deadline - time.monotonic(), 0)))
        finished = self.pool.join(timeout=max(deadline - time.monotonic(), 0))
        if not finished:
            log.warning(
                "%d connection(s) still busy after %.1fs; closing them",
                len(self.connections),
                timeout,
            )
            self.pool.kill(block=True, timeout=1)
        return finished
