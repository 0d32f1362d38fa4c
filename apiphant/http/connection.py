"""One connection: read, parse, admit, call the application, answer, repeat.

A connection waiting for its next request holds no greenlet: it is a libev
read watcher (``loop.io``, gevent's public API) whose callback, run by the
hub, spawns a greenlet once bytes (or EOF) arrive. That greenlet answers what
came, and every request pipelined behind it, then starts the watcher again
and ends. A greenlet costs about 8 KiB (its saved C stack and its own page of
Python frames); 15,000 idle keep-alive connections are measured in bench/.

A request's way through it, top to bottom:

1. ``_wait_for_request`` reads and feeds the parser until a request head is
   complete. The first read after the watcher fired finds its bytes there.
   Between requests there is no timer: the server's sweep closes
   connections idle past ``keepalive_timeout``. Once a request has begun,
   its head must be complete within ``header_timeout`` of its first byte
   (slowloris: 408), and the greenlet waits for it; a head that began
   behind another request (pipelined, or in the read of its body) too.
2. ``_answer`` takes an admission slot (``Server.admission``, a strict FIFO
   queue: under overload requests start in the order their heads arrived,
   and one that waits past ``queue_timeout`` gets 503), calls the
   application, and formats the answer (``response.head``): status line,
   headers and body in one buffer. apiphant's own App is called through
   ``App.direct`` (the parsed request in, status, headers and body out: no
   environ unless it asks for one); any other application, and the requests
   ``direct`` declines, through WSGI (an environ and ``start_response``).
   The application reads the body through ``fill``, each read bounded by
   the body deadline (``request_timeout``).
3. ``_serve`` sends the answers (pipelined requests parsed from one read
   share one send), then keeps the connection, drops a small unread body to
   keep it, or closes it (``response.keep_alive`` decided which). Each wait
   of a send for the client to take more bytes is bounded by
   ``request_timeout`` (Nginx's ``send_timeout``): a client that stops
   reading is dropped, and the answers it held let go.
4. A close with request bytes possibly still arriving is a lingering close:
   half-close, read and drop for a bounded time, then close. A plain close
   with unread input makes the kernel send a reset, which can destroy the
   answer before the client reads it (RFC 9112 section 9.6; Nginx does the same).

Every connection, idle or busy, is in ``Server.connections`` from its accept
to its ``close``, which stops its watcher before it closes the socket (a
watcher left on a closed descriptor would watch the next connection to reuse
its number). The object has ``__slots__``: no instance dict.
"""

import logging
import socket
import time
from typing import Any

import gevent

from apiphant.http import response, wsgi
from apiphant.http.parser import ProtocolError, Request, RequestParser
from apiphant.http.protocol import ConnectionOwner
from apiphant.runtime import reporting

log = logging.getLogger("apiphant.server")
access_log = logging.getLogger("apiphant.access")

#: One read's size: a request up to this size takes one recv.
RECV_SIZE = 65536
#: Answers to pipelined requests sent together, at most: then the others get their turn.
MAX_BATCH = 16
#: What ``_wait_for_request`` found: a request head, nothing yet (wait without a greenlet),
#: or the end of the connection.
READY, IDLE, DONE = range(3)


class BodyTimeout(TimeoutError):
    """The request body took longer than the request timeout (a slow body)."""


class Connection:
    """One client connection: a read watcher while idle, a greenlet while busy."""

    __slots__ = (
        "server",
        "sock",
        "address",
        "parser",
        "watcher",
        "greenlet",
        "idle_since",
        "deadline",
        "head_deadline",
        "head_of",
        "timed",
        "out",
        "error",
    )

    def __init__(self, server: ConnectionOwner, sock: socket.socket, address: Any) -> None:
        self.server = server
        self.sock = sock
        self.address = address
        self.parser = RequestParser()
        self.watcher: Any = server.loop.io(sock.fileno(), 1)  # None once closed
        self.greenlet: Any = None  # while busy
        self.idle_since: float | None = None  # waiting for a request since, or None
        self.deadline = 0.0  # of the request body
        self.head_deadline = 0.0  # of the request head being received
        self.head_of = 0  # which head (RequestParser.heads) head_deadline is for
        # The socket's timeout bounds each wait of a send, and of a read no deadline covers:
        # the request timeout, set once here. A read under a deadline sets what is left of it
        # (``timed``), and the next send or idle wait puts the request timeout back: no
        # settimeout (~0.3 µs) on a request that came in one read and left in one send.
        sock.settimeout(server.limits.request_timeout)
        self.timed = False
        self.out: list[bytes] = []  # answers not sent yet
        self.error: ProtocolError | None = None  # a pipelined request that broke HTTP

    def wait(self) -> None:
        """Wait for the next request without a greenlet: the watcher calls ``readable``."""
        self.idle_since = time.monotonic()
        self.watcher.start(self.readable)

    def readable(self) -> None:
        """Bytes or EOF arrived (the watcher's callback: it runs in the hub and must not
        block): stop watching, and have a greenlet answer them (Server.dispatch)."""
        self.watcher.stop()
        self.idle_since = None
        self.server.dispatch(self)

    def resume(self) -> None:
        """A greenlet's work: answer what arrived, then wait idle again or close."""
        idle = False
        try:
            idle = self._serve()
        except OSError:  # the client went away: nothing to answer
            pass
        except Exception as error:  # a bug of ours: this connection ends, the worker does not
            log.error("connection from %s failed", self.client_host(), exc_info=error)
        finally:
            self.greenlet = None
            if idle and self.watcher is not None:
                self.wait()
            else:
                self.close()

    def close(self) -> None:
        """Stop watching, close the socket, leave the server's registry (once)."""
        watcher = self.watcher
        if watcher is None:
            return
        self.watcher = None
        self.idle_since = None
        watcher.stop()
        watcher.close()
        self.sock.close()
        self.out.clear()  # answers a client stopped reading can be large
        self.server.forget(self)

    def send(self, data: bytes) -> None:
        """Every byte of every answer leaves through here, in one write when the socket
        takes it all (gevent's sendall costs a getsockopt and a timer on every call). Each
        wait for the client to take more is bounded by the request timeout (TimeoutError):
        a slow reader that keeps reading is served, one that stops is not held."""
        sock = self.sock
        if self.timed:  # a read's deadline is on the socket, not the request timeout
            sock.settimeout(self.server.limits.request_timeout)
            self.timed = False
        sent = sock.send(data)
        if sent < len(data):
            view = memoryview(data)
            while sent < len(view):
                sent += sock.send(view[sent:])

    def _flush(self) -> None:
        out = self.out
        if out:
            self.send(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    def _serve(self) -> bool:
        """Answer requests until none is left: True to wait for the next one idle,
        False when the connection is done."""
        parser = self.parser
        ready = parser.ready
        readable = True  # the watcher fired: the first read finds bytes or EOF
        while True:
            if not ready or len(self.out) >= MAX_BATCH:
                had_batch = len(self.out) >= MAX_BATCH
                self._flush()
                if had_batch:
                    gevent.sleep(0)  # a pipelining client goes to the back of the line
                if not ready:
                    found = self._wait_for_request(readable)
                    if found != READY:
                        return found == IDLE
                    readable = False
                continue
            request = ready[0]
            keep = self._answer(request)
            ready.popleft()
            if not keep:
                self._flush()
                self._close(request)
                return False
            if not request.complete:
                self._flush()
                if not self._drop_body(request):
                    self._linger()
                    return False

    def _wait_for_request(self, readable: bool) -> int:
        """Read until a request head is complete (READY); IDLE when nothing has come
        and there is no reason to wait in this greenlet; DONE when the connection is."""
        parser, sock, server = self.parser, self.sock, self.server
        while not parser.ready:
            if self.error is not None:
                self._refuse(self.error.status, str(self.error))
                return DONE
            if parser.idle:
                if not readable:
                    if server.draining:
                        return DONE
                    if self.timed:  # the state the next readable() finds
                        sock.settimeout(server.limits.request_timeout)
                        self.timed = False
                    return IDLE
                readable = False  # what the watcher saw is read now, without a wait
            else:
                left = self.head_deadline - time.monotonic()
                if left <= 0:
                    self._refuse(408, "request headers timed out")
                    return DONE
                sock.settimeout(left)
                self.timed = True
            try:
                data = sock.recv(RECV_SIZE)
            except TimeoutError:
                self._refuse(408, "request headers timed out")
                return DONE
            if not data:
                return DONE
            try:
                parser.feed(data)
            except ProtocolError as error:
                self.error = error
                continue
            if parser.receiving_head:
                self._head_began()
        return READY

    def _head_began(self) -> None:
        """A request head is arriving: its header deadline runs from its first read (the
        request deadline of the one before it is not its own)."""
        heads = self.parser.heads
        if heads != self.head_of:
            self.head_of = heads
            self.head_deadline = time.monotonic() + self.server.limits.header_timeout

    def fill(self, request: Request, wanted: int) -> None:
        """Read until ``wanted`` body bytes are buffered or the body is complete (Body's reads)."""
        if request.complete or len(request.body) >= wanted:
            return
        if self.error is not None:
            raise self.error  # this body broke HTTP in the read that brought its head
        self._flush()
        sock = self.sock
        if request.expect_continue:
            request.expect_continue = False
            self.send(response.CONTINUE)
        while not request.complete and len(request.body) < wanted:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise BodyTimeout("request body timed out")
            sock.settimeout(left)
            self.timed = True
            try:
                data = sock.recv(RECV_SIZE)
            except TimeoutError:
                raise BodyTimeout("request body timed out") from None
            if not data:
                raise ConnectionResetError("the client closed before the end of the body")
            try:
                self.parser.feed(data)
            except ProtocolError as error:
                if not request.complete:
                    raise  # this body breaks HTTP: the application answers 400
                self.error = error  # a later request does: answered after this one
            if self.parser.receiving_head:  # the next request began behind this body
                self._head_began()

    def _answer(self, request: Request) -> bool:
        """Answer one request into ``out``; True when the connection can be kept."""
        server = self.server
        admission = server.admission
        if admission.busy():
            self._flush()  # nothing waits behind the queue
        started = time.monotonic()
        if not admission.acquire(timeout=server.limits.queue_timeout):
            self._log_refusal(503, "not admitted within the queue timeout")
            self.out.append(response.error_response(503, time.time(), b"Retry-After: 1\r\n"))
            return False
        try:
            self.deadline = started + server.limits.request_timeout
            stream = wsgi.Body(self, request)
            try:
                answer = None
                if server.direct is not None:  # apiphant's App: no environ unless it asks
                    answer = server.direct(request, stream, lambda: self._environ(request, stream))
                if answer is None:
                    answer = wsgi.call(server.application, self._environ(request, stream))
                status, headers, body = answer
                keep = response.keep_alive(
                    request, draining=server.draining, broken_behind=self.error is not None
                )
                head, close = response.head(
                    status, headers, len(body), not keep, request.version, time.time(),
                    request.method == "HEAD",
                )  # fmt: skip
            except Exception as error:  # the application's bug: a 500, never a dead worker
                log.error("%s %s failed", request.method, request.target[:200], exc_info=error)
                reporting.capture(error, route=request.target.partition("?")[0][:200])
                status, close = response.SERVER_ERROR, True
                body = response.SERVER_ERROR_BODY
                head = response.error_head(status, len(body), time.time())
        finally:
            admission.release()
        if request.method == "HEAD":
            body = b""
        self.out.append(head + body if body else head)
        if server.access_log:
            self._log_access(request.request_line, status, len(body), started)
        return not close

    def _environ(self, request: Request, stream: wsgi.Body) -> dict[str, Any]:
        return wsgi.environ(self.server.environ, request, stream, self.address)

    def _drop_body(self, request: Request) -> bool:
        """Read and drop the small unread rest of a body, to keep the connection."""
        try:
            while not request.complete:
                request.body.clear()
                self.fill(request, 1)
        except (OSError, ValueError):
            return False
        request.body.clear()
        return True

    def _refuse(self, status: int, reason: str) -> None:
        """Answer a request that broke HTTP or took too long, then close with a linger."""
        self._log_refusal(status, reason)
        self._flush()
        self.send(response.error_response(status, time.time()))
        self._linger()

    def _close(self, request: Request) -> None:
        """Close after an answer: with a linger when the client may still be sending."""
        if not request.complete or self.parser.ready or not self.parser.idle:
            self._linger()
            return
        self.sock.settimeout(0.0)
        try:  # bytes already here and unread would turn the close into a reset
            pending = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, TimeoutError):
            return
        if pending:
            self._linger()

    def _linger(self) -> None:
        """Half-close, then read and drop what the client still sends, bounded in time."""
        limits = self.server.limits
        sock = self.sock
        deadline = time.monotonic() + limits.linger_time
        try:
            sock.shutdown(socket.SHUT_WR)
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(min(limits.linger_timeout, left))
                if not sock.recv(RECV_SIZE):
                    break
        except OSError:  # a reset or a timeout: done
            pass

    def close_if_idle(self, for_at_least: float = 0.0) -> bool:
        """The sweep's and the drain's: close this connection if it has waited that long
        for a request (it has no greenlet then, and no unread input)."""
        idle_since = self.idle_since
        if idle_since is None or time.monotonic() - idle_since < for_at_least:
            return False
        self.close()
        return True

    def client_host(self) -> str:
        address = self.address
        return str(address[0]) if isinstance(address, tuple) else str(address or "-")

    def _log_refusal(self, status: int, reason: str) -> None:
        log.info("Refused a request from %s: %d %s", self.client_host(), status, reason)

    def _log_access(self, request_line: str, status: str, length: int, started: float) -> None:
        access_log.info(
            '%s "%s" %s %s %.6f',
            self.client_host(),
            request_line,
            status.split(" ", 1)[0],
            length or "-",
            time.monotonic() - started,
        )
