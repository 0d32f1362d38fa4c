"""PostgreSQL for handlers and background tasks: one pool of connections per process.

    from apiphant import db

    def create(request):
        with db.transaction() as conn:
            conn.execute("INSERT INTO notes (text) VALUES (%s)", (request.text,))

The pool is psycopg_pool's, opened on first use from DATABASE_URL (or the development
database ``apiphant serve`` found), with ``--db-pool-size`` connections; a request that finds
none free waits in line up to ``--db-pool-timeout`` seconds, then gets 503 (the App maps
psycopg_pool's PoolTimeout). The server and the background runner close it when they stop.

psycopg is imported on first use only: a product that never calls ``connection()`` runs
without it installed (``pip install 'apiphant[postgres]'``), and a process that does imports
it after gevent's monkey patching, so the driver waits cooperatively.
"""

import functools
import logging
import os
import select
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apiphant.db.url import host_of, masked
from apiphant.settings import env_value, schema

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg_pool import ConnectionPool

__all__ = [
    "NO_DATABASE", "NotConfigured", "UniqueViolation", "close", "configure", "connection", "pool",
    "transaction",
]  # fmt: skip

log = logging.getLogger(__name__)

#: What ``pip`` needs for the database: apiphant's ``postgres`` extra.
EXTRA = "pip install 'apiphant[postgres]'"


#: What a client is told when the process has no database (the log line says more).
NO_DATABASE = "no database: set DATABASE_URL or run apiphant db start"
NO_DRIVER = f"no database driver: {EXTRA}"


class NotConfigured(RuntimeError):
    """No database to connect to, or no driver to connect with: a request answers 503 with
    ``answer`` (what to set or install; never the URL), and the log line says the same. Not
    a bug to report: the product's code is fine, the process lacks its database."""

    def __init__(self, message: str, answer: str = NO_DATABASE) -> None:
        super().__init__(message)
        self.answer = answer


class _Config:
    """The process's database: its URL and pool settings, and the pool once opened."""

    def __init__(self) -> None:
        self.url: str | None = None  # None: DATABASE_URL, read when the pool opens
        self.size: int = schema.BY_NAME["db_pool_size"].default
        self.timeout: float = schema.BY_NAME["db_pool_timeout"].default
        #: How long an Idempotency-Key's first answer is kept (apiphant.db.idempotency).
        self.idempotency_ttl: float = schema.BY_NAME["idempotency_ttl"].default
        self.pool: ConnectionPool | None = None
        self.opened = False
        self.pid = 0


_config = _Config()
#: The connection this greenlet (or thread) holds, so nested blocks share it.
_held: ContextVar["Connection | None"] = ContextVar("apiphant_db_connection", default=None)


def configure(url: str | None = None, pool_size: int | None = None,
              pool_timeout: float | None = None,
              idempotency_ttl: float | None = None) -> None:  # fmt: skip
    """Set the process's database before its first use (the commands do, from their options);
    what is not given keeps its value. ``url`` None reads DATABASE_URL when the pool opens."""
    if idempotency_ttl is not None:
        _config.idempotency_ttl = idempotency_ttl
    if url is not None:
        _config.url = url
    if pool_size is not None:
        _config.size = pool_size
    if pool_timeout is not None:
        _config.timeout = pool_timeout


def url() -> str:
    """The URL the pool connects to: the configured one, else DATABASE_URL."""
    found = _config.url or env_value("database_url")
    if not found:
        raise NotConfigured(
            "DATABASE_URL is not set: set it, or run apiphant db start PRODUCT "
            "for a development database"
        )
    return found


def pool() -> "ConnectionPool":
    """The process's pool, created and opened on first use (a forked child opens its own)."""
    config = _config
    if config.pool is None or config.pid != os.getpid():
        # No I/O and no greenlet switch from the test to the assignment: one pool per process.
        config.pool, config.opened, config.pid = _new_pool(url()), False, os.getpid()
    if not config.opened:
        config.pool.open()  # safe to call again while another greenlet opens it
        config.opened = True
    return config.pool


def _new_pool(conninfo: str) -> "ConnectionPool":
    try:
        from psycopg_pool import ConnectionPool
    except ImportError:
        raise NotConfigured(f"psycopg is not installed: {EXTRA}", NO_DRIVER) from None
    log.info("PostgreSQL: a pool of %d connections to %s", _config.size, host_of(conninfo))
    return ConnectionPool(
        conninfo,
        min_size=_config.size,  # a fixed size, as psycopg_pool advises: no growth under a burst
        max_size=_config.size,
        open=False,
        timeout=_config.timeout,
        check=check,  # a connection broken since its last use is replaced, not handed out
        name="apiphant",  # (a database restart costs no request)
        kwargs={"autocommit": True},  # a statement is one round trip; transaction() groups
    )


@functools.cache
def _system_poll() -> Any:
    """The system's poll, even after gevent's patching: a zero timeout never waits, and
    gevent's would switch greenlets for nothing (poll, not select: a socket's number may
    pass 1,024). Looked up on first use: the command line loads no gevent until it serves."""
    from gevent.monkey import get_original

    return get_original("select", "poll")


def check(conn: "Connection") -> None:
    """The pool's check of a connection before it is lent: raise if it is broken, so the
    pool replaces it. A server that ends a session (a restart, a terminated backend, an idle
    timeout) says so on the socket and closes it, so a round trip is needed only when the
    idle socket has something to read; a healthy one has nothing and is lent without one.
    psycopg_pool's ``check_connection`` made that round trip on every loan: 14% of the time
    of a one-query request (py-spy under bench's single query), one of its four round trips.
    """
    from psycopg import pq
    from psycopg_pool import ConnectionPool

    pgconn = conn.pgconn
    if pgconn.status == pq.ConnStatus.OK and pgconn.transaction_status == pq.TransactionStatus.IDLE:
        poll = _system_poll()()
        poll.register(pgconn.socket, select.POLLIN)
        if not poll.poll(0):
            return
    ConnectionPool.check_connection(conn)  # psycopg raises if the server is gone


@contextmanager
def connection() -> Iterator["Connection"]:
    """A connection from the pool for the block, in autocommit: each statement is its own
    transaction and one round trip, as psycopg's authors advise for its transaction blocks
    (and Django's default); ``transaction()`` is the block that is all or nothing. Nested in
    another ``connection()`` or ``transaction()`` of the same greenlet, it is that one's (one
    connection per request, whatever the helpers it calls), inside its transaction if any.

    Waits up to the pool timeout for a free connection, then raises psycopg_pool's
    PoolTimeout, which a request answers 503.
    """
    held = _held.get()
    if held is not None:
        yield held
        return
    with pool().connection() as conn:
        token = _held.set(conn)
        try:
            yield conn
        finally:
            _held.reset(token)


@contextmanager
def transaction() -> Iterator["Connection"]:
    """``connection()`` in a transaction: all of the block or none of it, committed when it
    ends, rolled back when it raises. Nested, a savepoint:
    the inner block's error undoes only the inner block's work, if the outer one catches it."""
    with connection() as conn, conn.transaction():
        yield conn


class _NeverRaised(Exception):
    """What ``UniqueViolation`` is without psycopg: no query ran, so none was violated."""


def __getattr__(name: str) -> Any:
    """``db.UniqueViolation``: psycopg's, for ``except db.UniqueViolation:`` in a handler
    that must import without psycopg (a product's targets are all imported at start-up);
    psycopg is imported only when the clause is reached, once an error is on its way."""
    if name != "UniqueViolation":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from psycopg.errors import UniqueViolation
    except ImportError:
        return _NeverRaised
    return UniqueViolation


def close(timeout: float = 5.0) -> None:
    """Close the process's pool, if it was opened: on drain, after the last request. Imports
    nothing when the database was never used."""
    config = _config
    if config.pool is not None and config.pid == os.getpid():
        config.pool.close(timeout=timeout)
    config.pool, config.opened = None, False


def for_product(product: str | Path, found: dict[str, Any]) -> None:
    """Configure the process from a command's resolved options: the pool's size and timeout,
    and, when DATABASE_URL is unset, the product's running development database (one log
    line says so)."""
    configure(pool_size=found["db_pool_size"], pool_timeout=found["db_pool_timeout"],
              idempotency_ttl=env_value("idempotency_ttl"))  # a bad value: exit 2, at start
    if env_value("database_url"):
        return
    from apiphant.db import cluster

    running = cluster.running_url(Path(product))
    if running:
        configure(url=running)
        log.info("DATABASE_URL is unset: using the development database %s", masked(running))
