"""The gevent server: pywsgi with the few things production needs and pywsgi lacks.

- TCP_NODELAY on every connection, and headers and body in one send:
  pywsgi's two sends otherwise stall each keep-alive request on Nagle's
  algorithm and delayed ACKs (about 40 ms).
- An idle keep-alive timeout, a deadline for request headers (slowloris),
  and a per-read timeout for bodies.
- A bound on concurrent connections (a gevent Pool).
- A graceful drain: stop accepting, close idle keep-alive connections,
  let in-flight requests finish with ``Connection: close``, bounded.
"""

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
from gevent.pool import Pool
from gevent.pywsgi import MAX_REQUEST_LINE, Input, LoggingLogAdapter, WSGIHandler, WSGIServer

log = logging.getLogger(__name__)
access_log = logging.getLogger("apiphant.access")

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
    b'Content-Length: 32\r\n\r\n{"error": "408 Request Timeout"}'
)
#: A body left unread by the application is read and dropped to keep the
#: connection, up to this size; past it, the connection is closed instead.
DISCARD_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Limits:
    """Timeouts in seconds and the connection bound of one server."""

    max_connections: int = 20000
    keepalive_timeout: float = 75.0  # above Nginx's upstream keepalive_timeout (60 s)
    header_timeout: float = 10.0
    request_timeout: float = 30.0
    drain_timeout: float = 10.0


class HeaderTimeout(ValueError):
    """Request headers took longer than the header deadline."""


class _Input(Input):
    """pywsgi's request body, which gives up dropping a large unread body and closes instead."""

    __slots__ = ("handler",)

    def _discard(self) -> None:
        handler = self.handler
        if handler.close_connection:
            return
        if self.chunked_input or (self.content_length or 0) - self.position > DISCARD_LIMIT:
            handler.close_connection = True
            return
        super()._discard()


class Handler(WSGIHandler):
    """One connection: its keep-alive loop, timeouts, and its part in the drain."""

    idle = False

    def __init__(self, sock: socket.socket, address: Any, server: "Server") -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # not TCP (a Unix socket): nothing to tune
            pass
        super().__init__(sock, address, server)

    def handle(self) -> None:
        connections = self.server.connections
        connections.add(self)
        try:
            super().handle()
        finally:
            connections.discard(self)

    def read_requestline(self) -> str:
        limits = self.server.limits
        self.socket.settimeout(limits.keepalive_timeout)
        self.idle = True
        try:
            if self.server.draining:
                return ""
            line = self.rfile.readline(MAX_REQUEST_LINE)
        finally:
            self.idle = False
        self.socket.settimeout(limits.request_timeout)
        return line.decode("latin-1")

    def read_request(self, raw_requestline: str) -> bool:
        with gevent.Timeout(self.server.limits.header_timeout, HeaderTimeout):
            return super().read_request(raw_requestline)

    def _handle_client_error(self, ex: Exception) -> tuple[str, bytes]:
        if isinstance(ex, HeaderTimeout):
            log.info("Request headers timed out (from %s)", self.client_address)
            return ("408", _TIMEOUT_RESPONSE)
        return super()._handle_client_error(ex)

    def get_environ(self) -> dict:
        env = super().get_environ()
        body = _Input(
            self.rfile,
            self.content_length,
            socket=self.wsgi_input.socket,
            chunked_input=self.wsgi_input.chunked_input,
        )
        body.handler = self
        if env["wsgi.input"] is self.wsgi_input:
            env["wsgi.input"] = body
        self.wsgi_input = body
        return env

    def start_response(self, status: str, headers: list, exc_info: Any = None) -> Callable:
        if self.server.draining:
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
                self.client_address[0] if isinstance(self.client_address, tuple) else "-",
                self.requestline,
                (self._orig_status or "000").split(" ", 1)[0],
                self.response_length or "-",
                (self.time_finish or 0) - self.time_start,
            )

    def close_if_idle(self) -> None:
        """Part of the drain: a connection waiting for its next request is closed now."""
        if self.idle and self.socket is not None:
            try:
                self.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Server(WSGIServer):
    """A pywsgi server with limits, TCP_NODELAY and a graceful drain."""

    handler_class = Handler

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
        timeout = self.limits.drain_timeout if timeout is None else timeout
        self.draining = True
        self.close()
        for handler in list(self.connections):
            handler.close_if_idle()
        finished = self.pool.join(timeout=timeout)
        if not finished:
            log.warning(
                "%d connection(s) still busy after %.1fs; closing them",
                len(self.connections),
                timeout,
            )
            self.pool.kill(block=True, timeout=1)
        return finished
