"""The WSGI application: one request from environ to handler and back, top to bottom.

It is a plain WSGI callable built from a product path, so it runs under
apiphant's gevent server, gunicorn, or any other WSGI server.
"""

import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apiphant.context import (
    REQUEST_ID_HEADER,
    Http,
    from_deployment,
    new_request_id,
    request_id,
    request_id_of,
    request_id_var,
)
from apiphant.cors import VARY, Cors, CorsMiddleware
from apiphant.db import idempotency
from apiphant.encoding import encode
from apiphant.errors import ApiError, status_line, success_status
from apiphant.http import response
from apiphant.http.response import SERVER_ERROR, SERVER_ERROR_BODY, json_headers
from apiphant.http.wsgi import Lines
from apiphant.product import Product, locate
from apiphant.request import DEFAULT_MAX_JSON_VALUES, NotJsonObject, form_error, parse
from apiphant.routing import Hooks, Route, load, load_hooks
from apiphant.runtime import reporting
from apiphant.settings import schema

if TYPE_CHECKING:
    from apiphant.http.parser import Request as HttpRequest

log = logging.getLogger(__name__)

#: The largest request body, in bytes: the setting's default (apiphant.settings.schema).
DEFAULT_MAX_BODY: int = schema.DEFAULT_MAX_BODY
#: Any method: 200, for health checks by deploys and balancers; with the product and release
#: only to the deployment itself (``context.from_deployment``), ``{"status": "ok"}`` to others.
HEALTH_PATH = "/health"
#: The deploy sets it to the release id, so a health check proves which code answers.
RELEASE_ENV = schema.env_name("release")
#: Where the App leaves the request's Http context for handlers, hooks and middleware.
HTTP_KEY = "apiphant.http"
#: The answer when the database has no connection free in time: the server's own 503.
UNAVAILABLE = status_line(503)
UNAVAILABLE_BODY = response.error_body(503)
RETRY_AFTER = ("Retry-After", "1")

#: The methods a (JSON) route takes, for a 405's ``Allow``: POST, and OPTIONS with CORS on.
ALLOW = "POST"
ALLOW_WITH_CORS = "POST, OPTIONS"
NO_CONTENT = status_line(204)

StartResponse = Callable[..., Any]
#: What an action answers: status line, JSON body, whether the connection must close; or, from
#: a raw_response handler, an empty status and the handler's own WSGI iterable.
Answer = tuple[str, bytes, bool, Iterable[bytes] | None]


class _Later(Mapping[str, Any]):
    """The environ of a request answered by ``App.direct``, built only if a handler or hook
    looks at it through Http (its headers, client, scheme), or an error report does."""

    __slots__ = ("_make", "_built")

    def __init__(self, make: Callable[[], dict]) -> None:
        self._make = make
        self._built: dict | None = None

    def _environ(self) -> dict:
        if self._built is None:
            self._built = self._make()
        return self._built

    def __getitem__(self, key: str) -> Any:
        return self._environ()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ())

    def __len__(self) -> int:
        return len(self._environ())


#: ``json_headers`` and the request id, as the lines App.direct answers with (Content-Length,
#: id): a %-template formatted once, on the hot path.
_DIRECT_LINES = response.JSON_LINES + f"{REQUEST_ID_HEADER}: %s\r\n".encode("ascii")
#: The same with CORS on, in the WSGI path's order (CorsMiddleware's Vary, then the id).
_DIRECT_CORS_LINES = response.JSON_LINES + (
    f"{VARY[0]}: {VARY[1]}\r\n{REQUEST_ID_HEADER}: %s\r\n".encode("ascii")
)


class BodyError(ApiError):
    """The body could not be read in full; the connection is closed after the answer."""


class _Limited(Lines):
    """A raw_environ handler's ``wsgi.input``: reading more than ``limit`` bytes is a 413.
    Content-Length is checked before the handler runs; a chunked body's length is known
    only as it arrives, and a handler reading it whole took any size."""

    __slots__ = ("_stream", "_left")

    def __init__(self, stream: Any, limit: int) -> None:
        self._stream = stream
        self._left = limit

    def _count(self, data: bytes) -> bytes:
        self._left -= len(data)
        if self._left < 0:
            raise BodyError(413)
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(65536), b""))
        return self._count(self._stream.read(min(size, self._left + 1)))

    def readline(self, size: int | None = -1) -> bytes:
        wanted = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        return self._count(self._stream.readline(wanted))


class App:
    """Route a POST to its handler, JSON in and JSON out; every error is a JSON answer.

    Every answer carries the request id; ``hooks`` run around every action; ``cors``
    (a policy, or None for off) answers browsers' preflights; ``trusted_proxies`` are the
    peers whose X-Forwarded-For names the client; a body holding more than
    ``max_json_values`` JSON values is a 413 before it is parsed (what parsing one request
    may cost its worker); ``docs`` serves the OpenAPI document and its page (openapi).
    """

    def __init__(
        self,
        product: Product,
        routes: dict[str, Route],
        max_body: int,
        hooks: Hooks | None = None,
        cors: Cors | None = None,
        trusted_proxies: frozenset[str] = frozenset(),
        max_json_values: int = DEFAULT_MAX_JSON_VALUES,
        docs: bool = False,
    ) -> None:
        self.product = product
        self.routes = routes
        self.max_body = max_body
        self.max_json_values = max_json_values
        self.hooks = hooks or Hooks()
        self.cors = cors
        self.trusted_proxies = trusted_proxies
        self.health = encode(
            {"status": "ok", "product": product.name, "release": os.environ.get(RELEASE_ENV, "")}
        ).encode()
        #: /health to anyone else: through the public name, product and release are nobody's
        #: business.
        self.public_health = encode({"status": "ok"}).encode()
        #: The ``Allow`` of a route's 405: what a route answers besides a preflight.
        self.allow = ALLOW if cors is None else ALLOW_WITH_CORS
        self._entry = self._respond if cors is None else CorsMiddleware(self._respond, cors)
        if docs:
            from apiphant.openapi import build, serving

            self._entry = serving.Docs(self._entry, product.name,
                                       lambda: build(product.name, routes, self.hooks))
        self._direct_lines = _DIRECT_LINES if cors is None else _DIRECT_CORS_LINES

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        request_id = request_id_of(environ)
        request_id_var.set(request_id)  # this greenlet's context: its log lines, its events
        http = environ[HTTP_KEY] = Http(environ, self.trusted_proxies, request_id)

        def start(status: str, headers: list, exc_info: Any = None) -> Any:
            headers = [*headers, (REQUEST_ID_HEADER, request_id), *http.response_headers]
            return start_response(status, headers, exc_info)

        return self._entry(environ, start)

    def direct(
        self, request: "HttpRequest", stream: Any, environ: Callable[[], dict]
    ) -> tuple[str, list[tuple[str, str]] | bytes, bytes] | None:
        """apiphant's server's way in: the answer the WSGI path gives, without building the
        environ and going through start_response (15% of a request at 50 connections).

        ``request`` is the parsed request, ``stream`` its ``wsgi.input``, ``environ`` builds
        its WSGI environ when asked (Http's headers, client and scheme). The answer is
        (status, headers, body); the headers are the WSGI path's list, or, for an answer
        that keeps the connection and sets no header of its own, their lines already
        formatted (bytes: the request id is checked, the rest constant). Only for the
        requests most are, a JSON action on its plain path, without a browser's Origin when
        CORS is on; None for the others (raw_environ or raw_response routes, a path not
        routed or percent-encoded, CORS), which the server sends through ``__call__``.
        """
        path = request.target.partition("?")[0]
        route = self.routes.get(path)
        if route is None or route.raw_environ or route.raw_response or "%" in path:
            return None
        if request.origin and self.cors is not None:
            return None
        incoming = request.request_id
        rid = request_id(incoming) if incoming else new_request_id()
        request_id_var.set(rid)
        http = Http(_Later(environ), self.trusted_proxies, rid)
        length, chunked = request.content_length, request.chunked
        key = _key_of(request.headers) if route.idempotent else None
        status, body, close, _ = self._act(
            route, request.method, http, lambda: self._read_body(length, chunked, stream), key=key
        )
        extra = http.response_headers
        if close or extra:
            headers = json_headers(len(body), close)
            if self.cors is not None:
                headers.append(VARY)
            headers.append((REQUEST_ID_HEADER, rid))
            headers += extra
            return status, headers, body
        return status, self._direct_lines % (len(body), rid.encode("ascii")), body

    def _respond(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        http: Http = environ[HTTP_KEY]
        route = self.routes.get(environ["PATH_INFO"])
        if route is not None and "%" in environ.get("RAW_URI", ""):
            route = self._unencoded(environ, route)
        if route is None and environ["PATH_INFO"] == HEALTH_PATH:
            own = from_deployment(environ, self.trusted_proxies)
            body = self.health if own else self.public_health
            return self._finish(environ, start_response, "200 OK", body, False)

        def read() -> bytes:
            chunked = environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"
            return self._read_body(environ.get("CONTENT_LENGTH"), chunked, environ["wsgi.input"])

        status, body, close, raw = self._act(
            route, environ["REQUEST_METHOD"], http, read, environ, start_response,
            environ.get(idempotency.ENVIRON_KEY) if route and route.idempotent else None,
        )
        if not status:  # a raw_response handler answered itself
            return raw  # type: ignore[return-value]
        return self._finish(environ, start_response, status, body, close)

    def _act(
        self,
        route: Route | None,
        method: str,
        http: Http,
        read: Callable[[], bytes],
        environ: dict | None = None,
        start_response: StartResponse | None = None,
        key: str | None = None,
    ) -> Answer:
        """Run one action, hooks around it, and turn its result or error into JSON.

        ``environ`` and ``start_response`` are for the escape hatches only (the WSGI path);
        ``key`` is the request's Idempotency-Key, for an action that honours it.
        """
        before = self.hooks.before
        try:
            if route is None:
                raise ApiError(404)
            if route.raw_environ:
                assert environ is not None
                self._check_length(environ.get("CONTENT_LENGTH"))
                environ["wsgi.input"] = _Limited(environ["wsgi.input"], self.max_body)
                request = None
                if before:
                    before(None, http)
                if route.raw_response:
                    return "", b"", False, route.handler(environ, _checked(start_response))
                result = route.handler(environ)
            else:
                if method != "POST":
                    return self._not_post(method, http)
                try:
                    request = parse(read(), self.max_json_values)
                except NotJsonObject as error:  # a form says so: JSON is what it should be
                    raise form_error(http.headers.get("Content-Type", "")) or error from None
                if before:
                    before(request, http)
                if route.raw_response:
                    return "", b"", False, route.handler(request, _checked(start_response))
                args = (request, http) if route.wants_http else (request,)
                if key is not None:  # the first answer to this key, or the one stored

                    def run() -> tuple[str, bytes]:
                        try:
                            return self._answer(route, request, http, route.handler(*args))
                        except ApiError as error:
                            return status_line(error.status), encode(error.body).encode()

                    return *idempotency.answer(key, route.path, request, http, run), False, None
                result = route.handler(*args)
            return *self._answer(route, request, http, result), False, None
        except ApiError as error:
            body = encode(error.body).encode()
            return status_line(error.status), body, isinstance(error, BodyError), None
        except (Exception, SystemExit, KeyboardInterrupt) as error:  # sys.exit() kills no worker
            if _unavailable(error):  # no database connection free in time: wait, then retry
                log.warning("%s: no database connection within the pool timeout: 503",
                            route.path if route else "?")  # fmt: skip
                http.response_headers.append(RETRY_AFTER)
                return UNAVAILABLE, UNAVAILABLE_BODY, False, None
            missing = _no_database(error)
            if missing is not None:  # the process has no database: say what to set
                log.warning("%s: %s: 503", route.path if route else "?", error)
                return UNAVAILABLE, missing, False, None
            self._report(route, error, http.scheme)  # a database error too: a 500, reported
            return SERVER_ERROR, SERVER_ERROR_BODY, False, None

    def _answer(self, route: Route, request: Any, http: Http, result: Any) -> tuple[str, bytes]:
        """A handler's result, through ``after``, as its status line and JSON body."""
        if result is None:
            result = {}
        if self.hooks.after:
            replaced = self.hooks.after(request, http, result)
            if replaced is not None:
                result = replaced
        if not isinstance(result, dict):
            raise TypeError(f"{route.module}.{route.action} returned {type(result).__name__}, "
                            "expected a dict or None")  # fmt: skip
        line = route.status if http.status is None else success_status(http.status)
        return line, encode(result).encode()

    def _not_post(self, method: str, http: Http) -> Answer:
        """Another method on a route: 405 naming the one it takes (a browser's visit, a
        HEAD). With CORS on, OPTIONS is allowed too: a preflight is answered before the
        App, and a plain OPTIONS gets 204 with ``Allow``. apiphant 0.2 answered 501."""
        http.set_header("Allow", self.allow)
        if method == "OPTIONS" and self.cors is not None:
            return NO_CONTENT, b"", False, None
        raise ApiError(405)

    @staticmethod
    def _unencoded(environ: dict, route: Route) -> Route | None:
        """Route names never need percent-encoding: ``echo%2Fread`` is not ``echo/read``."""
        return None if "%" in environ["RAW_URI"].partition("?")[0] else route

    @staticmethod
    def _finish(
        environ: dict, start_response: StartResponse, status: str, body: bytes, close: bool
    ) -> list[bytes]:
        start_response(status, json_headers(len(body), close))
        return [b""] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    def _check_length(self, declared: str | int | None) -> int | None:
        """The declared body length, refused with 413 when over the limit, before any read."""
        if declared is None or declared == "":
            return None
        try:
            length = int(declared)
        except ValueError:
            raise BodyError(400, "Content-Length should be a number") from None
        if length < 0:
            raise BodyError(400, "Content-Length should be a number")
        if length > self.max_body:
            raise BodyError(413)
        return length

    def _read_body(self, declared: str | int | None, chunked: bool, stream: Any) -> bytes:
        length = self._check_length(declared)
        try:
            if length is not None:
                body = stream.read(length)
                if len(body) < length:
                    raise BodyError(400, "Request body ended early")
                return body
            if not chunked:
                return b""
            body = stream.read(self.max_body + 1)
        except TimeoutError:
            raise BodyError(408) from None
        except OSError:
            raise BodyError(400, "Request body could not be read") from None
        except ValueError:  # gevent's Input signals a malformed chunk this way
            raise BodyError(400, "Request body could not be read") from None
        if len(body) > self.max_body:
            raise BodyError(413)
        return body

    def _report(self, route: Route | None, error: Exception, scheme: str) -> None:
        where = route.path if route else "?"
        log.error("%s failed", where, exc_info=error)
        # the client's scheme: https behind a TLS-terminating Nginx (X-Forwarded-Proto)
        reporting.capture(error, route=where, scheme=scheme)


def _unavailable(error: BaseException) -> bool:
    """psycopg_pool's PoolTimeout: the pool had no connection free within its timeout (all in
    use, or the database unreachable). Looked up only once something imported psycopg_pool,
    so a product without a database never loads it."""
    pool = sys.modules.get("psycopg_pool")
    return pool is not None and isinstance(error, pool.PoolTimeout)


def _key_of(headers: list[tuple[str, str]]) -> str | None:
    """The Idempotency-Key among a parsed request's headers (asked only of the actions that
    honour it, so other requests pay nothing)."""
    for name, value in headers:
        if name.lower() == idempotency.HEADER_LOWER:
            return value
    return None


def _no_database(error: BaseException) -> bytes | None:
    """apiphant.db's NotConfigured (no DATABASE_URL, or no psycopg): the 503 body saying what
    to set, else None. Looked up only once something imported apiphant.db."""
    db = sys.modules.get("apiphant.db")
    if db is None or not isinstance(error, db.NotConfigured):
        return None
    return encode({"error": error.answer}).encode()


def _checked(start_response: StartResponse | None) -> StartResponse:
    """A raw_response handler's start_response: a status or header that would break the
    answer (a control byte, Transfer-Encoding and the other hop-by-hop headers) raises in
    the handler, whose bug it is: a 500 reported with its route, never sent."""
    assert start_response is not None

    def start(status: str, headers: list, exc_info: Any = None) -> Any:
        response.status_bytes(status)
        for name, value in headers:
            response.header_line(name, value)
        return start_response(status, headers, exc_info)

    return start


def create_app(
    product_path: str | Path,
    max_body: int = DEFAULT_MAX_BODY,
    cors: Cors | None = None,
    trusted_proxies: frozenset[str] = frozenset(),
    max_json_values: int = DEFAULT_MAX_JSON_VALUES,
    docs: bool = False,
) -> App:
    """Build the WSGI application for a product folder; import errors surface here."""
    product = locate(product_path)
    routes = load(product)
    return App(product, routes, max_body, load_hooks(product), cors, trusted_proxies,
               max_json_values, docs)  # fmt: skip
