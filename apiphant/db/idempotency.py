"""Idempotency-Key: a write retried with the same key gets the first answer again, and its
handler runs once (the IETF httpapi draft "The Idempotency-Key HTTP Header Field"; Stripe's
keys work the same way).

Which actions: the writes, ``create``, ``update`` and ``delete``, when the request carries
the header; a ``read`` is safe to repeat and ignores it. ``@idempotent(False)`` turns a write
off (one that is harmless to repeat and must not need a database), ``@idempotent()`` turns a
read on (one that changes something). The escape hatches (``raw_environ``, ``raw_response``)
ignore it: their answer is not the App's to keep.

How: in one transaction of the request's connection, the key's row is inserted, the handler
runs (its ``db.connection()`` and ``db.transaction()`` blocks share that connection, a nested
transaction being a savepoint), and its answer is written into the row: the writes and the
stored answer commit together or not at all. A handler that fails (a 500) rolls both back,
so a retry runs it afresh, as if the first had never come. A duplicate that arrives while the
first runs waits on the row's insert, up to the pool timeout, then gets the stored answer
(or 409 past it, as the draft says); the same key with another body gets 422.

Keys are scoped per route and per credentials: the route's path, a SHA-256 of the request's
Authorization header (its value is never stored), and the key itself. The row is kept for
``APIPHANT_IDEMPOTENCY_TTL`` seconds (a day), in the table ``apiphant_idempotency``, which
the first keyed request of a process creates if it is missing; expired rows are deleted a
few at a time by the keyed requests that follow.
"""

import hashlib
import json
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from apiphant import db
from apiphant.errors import ApiError, BadRequest, status_line

if TYPE_CHECKING:
    from apiphant.context import Http

F = TypeVar("F", bound=Callable)

HEADER = "Idempotency-Key"
HEADER_LOWER = HEADER.lower()
#: The WSGI environ's key of the header.
ENVIRON_KEY = "HTTP_IDEMPOTENCY_KEY"
#: On a 409: the duplicate may come back in a second.
RETRY_AFTER = ("Retry-After", "1")
#: On an answer given again: the header Stripe's clients know.
REPLAYED = ("Idempotent-Replayed", "true")
#: The actions that honour a key unless marked otherwise.
WRITES = frozenset({"create", "update", "delete"})
TABLE = "apiphant_idempotency"
#: The advisory lock that serialises creating the table (two workers' first keyed requests).
LOCK_KEY = 0x61706970_69646D70  # "apipidmp"
#: A key: 1 to 255 printable ASCII characters (a UUID, as the draft suggests, fits).
KEY = re.compile(r"[\x20-\x7e]{1,255}")
#: RFC 8941's String: printable ASCII in quotes, a backslash escaping " and itself.
SF_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
EXPLAIN = "1 to 255 printable ASCII characters, like a UUID"
BUSY = f"a request with this {HEADER} is still being processed; retry later"
REUSED = f"this {HEADER} was used with another request body"
#: PostgreSQL's lock_not_available: the duplicate waited past its lock timeout.
LOCK_NOT_AVAILABLE = "55P03"

CREATE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    route text NOT NULL,
    client bytea NOT NULL,
    key text NOT NULL,
    request bytea NOT NULL,
    status smallint,
    headers text NOT NULL DEFAULT '[]',
    body bytea,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (route, client, key)
);
CREATE INDEX IF NOT EXISTS {TABLE}_expires ON {TABLE} (expires_at);
"""
_WHERE = "route = %s AND client = %s AND key = %s"
_EXPIRED_ONE = f"DELETE FROM {TABLE} WHERE {_WHERE} AND expires_at <= now()"
_INSERT = (f"INSERT INTO {TABLE} (route, client, key, request, expires_at) "
           f"VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s)) "
           f"ON CONFLICT DO NOTHING RETURNING 1")  # fmt: skip
_STORED = f"SELECT request, status, headers, body FROM {TABLE} WHERE {_WHERE}"
_ANSWER = f"UPDATE {TABLE} SET status = %s, headers = %s, body = %s WHERE {_WHERE}"
#: A few expired rows at a time, skipping those another request holds.
_PURGE = (f"DELETE FROM {TABLE} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {TABLE} "
          f"WHERE expires_at <= now() LIMIT 10 FOR UPDATE SKIP LOCKED))")  # fmt: skip

#: The process that made sure the table exists (a forked worker checks again: it is cheap).
_ready_in = 0


def idempotent(on: bool = True) -> Callable[[F], F]:
    """``@idempotent(False)`` over a write: it ignores Idempotency-Key; ``@idempotent()``
    over a read that changes something: it honours it."""

    def mark(handler: F) -> F:
        handler.idempotent = on  # type: ignore[attr-defined]
        return handler

    return mark


def applies(action: str, marked: bool | None) -> bool:
    """Whether an action honours the header: as marked, else when it is a write. Pure."""
    return action in WRITES if marked is None else bool(marked)


def parse_key(value: str) -> str:
    """The key a header value holds: the draft's Structured Field string (``"..."``, with
    ``\\"`` and ``\\\\`` escapes) or, as Stripe's clients send it, the bare text. Pure; a
    malformed one is a 400 naming the header."""
    value = value.strip()
    if value.startswith('"'):
        quoted = SF_STRING.fullmatch(value)
        if not quoted:
            raise BadRequest(HEADER, "invalid", EXPLAIN)
        value = re.sub(r"\\(.)", r"\1", quoted[1])
    if not KEY.fullmatch(value):
        raise BadRequest(HEADER, "invalid", EXPLAIN)
    return value


def fingerprint(request: Any) -> bytes:
    """What "the same request" means: a SHA-256 of the body's JSON with sorted keys, so a
    retry that serialises it otherwise is the same. Pure."""
    text = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).digest()


def client_of(http: "Http") -> bytes:
    """The credentials a key belongs to: a SHA-256 of Authorization, or empty without."""
    sent = http.headers.get("Authorization", "")
    return hashlib.sha256(sent.encode("latin-1")).digest() if sent else b""


def _ensure_table() -> None:
    """Create the table on a process's first keyed request, under an advisory lock (two
    CREATE TABLE IF NOT EXISTS at once can collide)."""
    global _ready_in
    if _ready_in == os.getpid():
        return
    with db.transaction() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        conn.execute(CREATE)
    _ready_in = os.getpid()


class _Refused(Exception):
    """An error answer of the handler's: its savepoint is rolled back, the answer kept."""

    def __init__(self, answer: tuple[str, bytes]) -> None:
        self.answer = answer


def answer(header: str, route: str, request: Any, http: "Http",
           run: Callable[[], tuple[str, bytes]]) -> tuple[str, bytes]:  # fmt: skip
    """The answer to a keyed request on ``route``: the stored one, or ``run()``'s (status
    line and JSON body, ApiErrors included), stored. The headers the handler and ``after``
    set are stored with it; a replay carries them and ``Idempotent-Replayed: true``."""
    ident = (route, client_of(http), parse_key(header))
    digest = fingerprint(request)
    _ensure_table()
    mark = len(http.response_headers)
    wait_ms = max(1, int(db._config.timeout * 1000))
    try:
        with db.transaction() as conn:
            conn.execute(_EXPIRED_ONE, ident)
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{wait_ms}ms",))
            inserted = conn.execute(_INSERT, (*ident, digest, db._config.idempotency_ttl))
            first = inserted.fetchone() is not None
            conn.execute("SET LOCAL lock_timeout TO DEFAULT")
            if not first:
                return _replay(conn.execute(_STORED, ident).fetchone(), digest, http)
            try:
                with conn.transaction():  # a savepoint: an error answer undoes its writes
                    line, body = run()
                    if not line.startswith("2"):
                        raise _Refused((line, body))
            except _Refused as refused:
                line, body = refused.answer
            headers = json.dumps(http.response_headers[mark:])
            conn.execute(_ANSWER, (int(line[:3]), headers, body, *ident))
            conn.execute(_PURGE)
            return line, body
    except Exception as error:
        if getattr(error, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            http.response_headers.append(RETRY_AFTER)
            raise ApiError(409, BUSY) from None
        raise


def _replay(row: tuple | None, digest: bytes, http: "Http") -> tuple[str, bytes]:
    if row is None:  # expired and deleted between the insert and this read: rare
        http.response_headers.append(RETRY_AFTER)
        raise ApiError(409, BUSY)
    request, status, headers, body = row
    if bytes(request) != digest:
        raise ApiError(422, REUSED)
    http.response_headers.extend((name, value) for name, value in json.loads(headers))
    http.response_headers.append(REPLAYED)
    return status_line(status), bytes(body)
