"""The gevent server: a listening socket, its limits, admission, and the graceful drain.

Built on gevent's public API only (``gevent.server.StreamServer``, the
hub's loop watchers, ``gevent.spawn_raw``, ``gevent.hub.Waiter``); each
accepted connection is an ``apiphant.http.connection.Connection``, which is
where a request is read, answered and kept alive (start reading there).

- A connection waiting for a request is a read watcher, not a greenlet:
  ``handle`` runs in the hub (``spawn=None``) and only registers it. When
  bytes arrive, ``dispatch`` hands it to a parked worker greenlet, or spawns
  one. A worker that is done parks for the next connection (up to
  ``max_parked``) instead of ending: a new greenlet costs a fresh Python data
  stack (an mmap and a page fault in CPython 3.11) and its teardown, which
  took 18% of the throughput when every wake-up spawned one.

- TCP_NODELAY on every connection, and each answer in one send: otherwise a
  keep-alive request can stall about 40 ms on Nagle's algorithm and delayed ACKs.
- Idle keep-alive connections are closed after ``keepalive_timeout`` by one
  sweep a second, not by a timer per connection.
- A bound on concurrent connections, idle ones included (``connections``, the
  registry of open connections; ``max_connections`` is sized to the
  open-files limit): past it, accepting stops and new connections wait in the
  kernel's accept queue, in order, until one closes.
- Every pending connection is accepted at each wake-up (``max_accept``): under
  load, accepting 100 per loop iteration left hundreds of connections waiting
  a second or more in the accept queue, and their first requests timed out
  (bench/RESULTS.md, the I/O-bound scenario).
- Admission in arrival order: at most ``max_active`` requests run the
  application at once; the others wait in a strict FIFO queue
  (apiphant.http.admission), and one not admitted within ``queue_timeout``
  gets 503 with ``Retry-After``.
- A graceful drain: stop accepting, let in-flight requests finish with
  ``Connection: close``, and close idle keep-alive connections, bounded.
  Behind Nginx, idle connections are closed only after ``drain_idle_grace``:
  Nginx does not retry a POST that fails on a reused connection, so the
  worker must never close one that Nginx may be writing to. With the grace
  above Nginx's upstream ``keepalive_timeout``, Nginx closes them first.
"""

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
from gevent.hub import Waiter
from gevent.server import StreamServer

from apiphant.http import wsgi
from apiphant.http.admission import Admission
from apiphant.http.connection import Connection
from apiphant.http.protocol import direct_path
from apiphant.settings.schema import DIRECT_MAX_CONNECTIONS, default

#: The name the server has always logged under (before it moved into http/).
log = logging.getLogger("apiphant.server")


@dataclass(frozen=True)
class Limits:
    """Timeouts in seconds, and the bounds of one server. The defaults are the settings'
    (apiphant.settings.schema), as ``apiphant serve`` has them."""

    #: Built directly, a fixed bound; the command sizes it to the open-files limit.
    max_connections: int = DIRECT_MAX_CONNECTIONS
    keepalive_timeout: float = default("keepalive_timeout")  # above Nginx's upstream 60 s
    header_timeout: float = default("header_timeout")
    #: A request's body must arrive within it, and each wait of a send (or of a read no
    #: other deadline covers) ends there: the client is dropped.
    request_timeout: float = default("request_timeout")
    drain_timeout: float = default("drain_timeout")
    #: Behind Nginx: above its upstream keepalive_timeout.
    drain_idle_grace: float = default("drain_idle_grace")
    #: A lingering close waits at most this long for each read, and this long in all
    #: (Nginx's lingering_timeout and lingering_time).
    linger_timeout: float = default("linger_timeout")
    linger_time: float = default("linger_time")
    #: Requests running the application at once; more wait their turn, in arrival order,
    #: for at most queue_timeout, then get 503.
    max_active: int = default("max_active")
    queue_timeout: float = default("queue_timeout")


class Server(StreamServer):
    """apiphant's HTTP/1.1 server for a WSGI application, with limits and a graceful drain."""

    connection_class = Connection
    #: The listen queue: gevent's default of 128 drops connections when a thousand
    #: clients connect at once; the kernel caps it at net.core.somaxconn. gunicorn's default.
    backlog = 2048
    #: Accept every pending connection at each wake-up (up to the connection bound).
    max_accept = 4096
    #: Worker greenlets kept parked for the next connection that wakes up, at most.
    max_parked = 64

    def __init__(
        self,
        address: tuple,
        application: Callable,
        limits: Limits = Limits(),
        access_log: bool = False,
    ) -> None:
        # spawn=None: ``handle`` runs in the hub, and a greenlet is spawned per wake-up of a
        # connection, not per connection (apiphant.http.connection).
        super().__init__(address, backlog=self.backlog, spawn=None)
        self.application = application
        #: apiphant's App is called through its direct path (App.direct: no environ, no
        #: start_response); any other WSGI application, a wrapped App included, through WSGI.
        self.direct = direct_path(application)
        self.limits = limits
        self.access_log = access_log
        self.draining = False
        #: Every open connection, idle or busy: the connection bound counts these.
        self.connections: set[Connection] = set()
        self.admission = Admission(limits.max_active)
        self.environ: dict[str, Any] = {}
        self.sweeper: gevent.Greenlet | None = None
        #: Worker greenlets waiting for a connection to serve, and how to wake each.
        self.parked: list[tuple[Any, Waiter]] = []

    def init_socket(self) -> None:
        super().init_socket()
        self.environ = wsgi.base_environ(str(self.server_host), self.server_port)

    def start(self) -> None:
        super().start()
        if self.sweeper is None:
            self.sweeper = gevent.spawn(self.sweep)

    def sweep(self) -> None:
        """Close keep-alive connections idle past the timeout: one timer for all of them,
        instead of one armed and cancelled on every request's wait."""
        timeout = self.limits.keepalive_timeout
        period = min(1.0, timeout / 4)
        while not self.draining:
            gevent.sleep(period)
            for connection in list(self.connections):
                connection.close_if_idle(timeout)

    def full(self) -> bool:
        """StreamServer's question before each accept: past the bound it stops accepting
        (``forget`` starts again)."""
        return len(self.connections) >= self.limits.max_connections

    def handle(self, sock: socket.socket, address: Any) -> None:
        """A new connection (in the hub, must not block): register it and wait for its
        first request without a greenlet."""
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # not TCP (a Unix socket), or already reset: nothing to tune
            pass
        try:
            connection = self.connection_class(self, sock, address)
        except OSError:  # gone before it could be watched
            sock.close()
            return
        self.connections.add(connection)
        connection.wait()

    def do_close(self, sock: socket.socket, *args: Any) -> None:
        """StreamServer closes a socket when ``handle`` returns; here a connection
        outlives ``handle`` and closes its socket itself (Connection.close)."""

    def forget(self, connection: Connection) -> None:
        """A connection closed: out of the registry; accept again if the bound had stopped it."""
        connections = self.connections
        connections.discard(connection)
        if len(connections) == self.limits.max_connections - 1 and self.started:
            self.start_accepting()

    def take_backlog(self) -> None:
        """Accept the connections the kernel completed but the server had not taken yet.

        Closing the listening socket resets them, and a client such as Nginx has already
        sent its request on them: a write it must not send again, so its client gets a
        502. Taken in, they are answered (with ``Connection: close``: the drain is on); a
        taken connection that stays idle past the drain's grace is closed like any other.
        """
        self.stop_accepting()
        if self.socket is None:
            return
        for _ in range(self.backlog):  # bounded: at most one queue's worth
            try:
                taken = self.do_read()  # gevent's own non-blocking accept: None when empty
            except OSError:
                return
            if taken is None:
                return
            self.handle(*taken)  # registered and watched like any other connection

    def dispatch(self, connection: Connection) -> None:
        """Bytes arrived on an idle connection (in the hub): a worker greenlet serves it."""
        parked = self.parked
        if parked:
            worker, waiter = parked.pop()  # the last parked: its memory is the warmest
            connection.greenlet = worker
            waiter.switch(connection)  # from the hub: switches to the worker at once
        else:
            connection.greenlet = gevent.spawn_raw(self.work, connection)

    def work(self, connection: Connection | None) -> None:
        """A worker greenlet: serve a connection until it waits idle or closes, then park
        for the next one (or end, past ``max_parked`` or when draining)."""
        parked, current = self.parked, gevent.getcurrent()
        while connection is not None:
            current.gr_context = None  # each wake-up starts with fresh context variables
            connection.resume()
            if self.draining or len(parked) >= self.max_parked:
                return
            waiter = Waiter()
            parked.append((current, waiter))
            connection = waiter.get()

    def drain(self, timeout: float | None = None) -> bool:
        """Stop accepting and wait for in-flight requests; True when all finished in time."""
        limits = self.limits
        timeout = limits.drain_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self.draining = True
        self.take_backlog()
        self.close()
        if self.sweeper is not None:
            self.sweeper.kill(block=False)
        connections = self.connections
        while connections and (left := deadline - time.monotonic()) > 0:
            for connection in list(connections):
                connection.close_if_idle(limits.drain_idle_grace)
            gevent.sleep(min(0.05, left))
        finished = not connections
        if not finished:
            log.warning(
                "%d connection(s) still busy after %.1fs; closing them", len(connections), timeout
            )
            for connection in list(connections):
                if connection.greenlet is not None:
                    gevent.kill(connection.greenlet)
            stop = time.monotonic() + 1
            while any(c.greenlet is not None for c in connections) and time.monotonic() < stop:
                gevent.sleep(0.01)
            for connection in list(connections):
                connection.close()
        for worker, _ in self.parked:
            gevent.kill(worker)
        self.parked.clear()
        return finished
