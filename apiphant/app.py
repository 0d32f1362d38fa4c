"""The WSGI application: one request from environ to handler and back, top to bottom.

It is a plain WSGI callable built from a product path, so it runs under
apiphant's gevent server, gunicorn, or any other WSGI server.
"""

import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from apiphant import reporting
from apiphant.context import REQUEST_ID_HEADER, Http, request_id_of, request_id_var
from apiphant.cors import Cors, CorsMiddleware
from apiphant.errors import ApiError, status_line
from apiphant.product import Product, locate
from apiphant.request import parse
from apiphant.routing import Hooks, Route, load, load_hooks

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 1024 * 1024
#: Any method: 200 with the product and release, for health checks by deploys and balancers.
HEALTH_PATH = "/health"
#: The deploy sets it to the release id, so a health check proves which code answers.
RELEASE_ENV = "APIPHANT_RELEASE"
#: Where the App leaves the request's Http context for handlers, hooks and middleware.
HTTP_KEY = "apiphant.http"
JSON = "application/json"
NOSNIFF = ("X-Content-Type-Options", "nosniff")

StartResponse = Callable[..., Any]
_encode = json.JSONEncoder(allow_nan=False).encode


def _headers(body: bytes, close: bool) -> list[tuple[str, str]]:
    # nosniff: a browser never runs an answer as a script or page, whatever it holds.
    headers = [("Content-Type", JSON), NOSNIFF, ("Content-Length", str(len(body)))]
    if close:
        headers.append(("Connection", "close"))
    return headers


class BodyError(ApiError):
    """The body could not be read in full; the connection is closed after the answer."""


class App:
    """Route a POST to its handler, JSON in and JSON out; every error is a JSON answer.

    Every answer carries the request id; ``hooks`` run around every action; ``cors``
    (a policy, or None for off) answers browsers' preflights; ``trusted_proxies`` are the
    peers whose X-Forwarded-For names the client.
    """

    def __init__(
        self,
        product: Product,
        routes: dict[str, Route],
        max_body: int,
        hooks: Hooks | None = None,
        cors: Cors | None = None,
        trusted_proxies: frozenset[str] = frozenset(),
    ) -> None:
        self.product = product
        self.routes = routes
        self.max_body = max_body
        self.hooks = hooks or Hooks()
        self.cors = cors
        self.trusted_proxies = trusted_proxies
        self.health = _encode(
            {"status": "ok", "product": product.name, "release": os.environ.get(RELEASE_ENV, "")}
        ).encode()
        self._entry = self._respond if cors is None else CorsMiddleware(self._respond, cors)

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        request_id = request_id_of(environ)
        request_id_var.set(request_id)  # this greenlet's context: its log lines, its events
        http = environ[HTTP_KEY] = Http(environ, self.trusted_proxies, request_id)

        def start(status: str, headers: list, exc_info: Any = None) -> Any:
            headers = [*headers, (REQUEST_ID_HEADER, request_id), *http.response_headers]
            return start_response(status, headers, exc_info)

        return self._entry(environ, start)

    def _respond(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        http: Http = environ[HTTP_KEY]
        before, after = self.hooks.before, self.hooks.after
        route = self.routes.get(environ["PATH_INFO"])
        if route is not None and "%" in environ.get("RAW_URI", ""):
            route = self._unencoded(environ, route)
        try:
            if route is None:
                if environ["PATH_INFO"] == HEALTH_PATH:
                    return self._finish(environ, start_response, "200 OK", self.health, False)
                raise ApiError(404)
            if route.raw_environ:
                self._check_length(environ)
                request = None
                if before:
                    before(None, http)
                if route.raw_response:
                    return route.handler(environ, start_response)
                result = route.handler(environ)
            else:
                if environ["REQUEST_METHOD"] != "POST":
                    raise ApiError(501)
                request = parse(self._read_body(environ))
                if before:
                    before(request, http)
                if route.raw_response:
                    return route.handler(request, start_response)
                args = (request, http) if route.wants_http else (request,)
                result = route.handler(*args)
            if result is None:
                result = {}
            if after:
                replaced = after(request, http, result)
                if replaced is not None:
                    result = replaced
            if not isinstance(result, dict):
                raise TypeError(
                    f"{route.module}.{route.action} returned {type(result).__name__}, "
                    "expected a dict or None"
                )
            body = _encode(result).encode()
            status = "200 OK"
        except ApiError as error:
            body = _encode(error.body).encode()
            status = status_line(error.status)
            close = isinstance(error, BodyError)
            return self._finish(environ, start_response, status, body, close)
        except (Exception, SystemExit, KeyboardInterrupt) as error:  # sys.exit() kills no worker
            self._report(route, error, http.scheme)
            status = "500 Internal Server Error"
            body = b'{"error": "500 Internal Server Error"}'
        return self._finish(environ, start_response, status, body, False)

    @staticmethod
    def _unencoded(environ: dict, route: Route) -> Route | None:
        """Route names never need percent-encoding: ``echo%2Fread`` is not ``echo/read``."""
        return None if "%" in environ["RAW_URI"].partition("?")[0] else route

    @staticmethod
    def _finish(
        environ: dict, start_response: StartResponse, status: str, body: bytes, close: bool
    ) -> list[bytes]:
        start_response(status, _headers(body, close))
        return [b""] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    def _check_length(self, environ: dict) -> int | None:
        """The declared body length, refused with 413 when over the limit, before any read."""
        declared = environ.get("CONTENT_LENGTH")
        if not declared:
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

    def _read_body(self, environ: dict) -> bytes:
        length = self._check_length(environ)
        stream = environ["wsgi.input"]
        try:
            if length is not None:
                body = stream.read(length)
                if len(body) < length:
                    raise BodyError(400, "Request body ended early")
                return body
            if environ.get("HTTP_TRANSFER_ENCODING", "").lower() != "chunked":
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


def create_app(
    product_path: str | Path,
    max_body: int = DEFAULT_MAX_BODY,
    cors: Cors | None = None,
    trusted_proxies: frozenset[str] = frozenset(),
) -> App:
    """Build the WSGI application for a product folder; import errors surface here."""
    product = locate(product_path)
    routes = load(product)
    return App(product, routes, max_body, load_hooks(product), cors, trusted_proxies)
