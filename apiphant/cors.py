"""CORS: let a browser page on another origin call the API (one plain WSGI middleware).

Modelled on Starlette's CORSMiddleware. Every browser sends a preflight ``OPTIONS``
before a cross-origin POST of ``application/json``; without an answer the page's
``fetch`` fails. Off unless origins are configured (``--cors-origin``,
``APIPHANT_CORS_ORIGINS``, deploy.toml's ``[api] cors_origins``).
"""

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from apiphant.context import HEADER_NAME
from apiphant.http.response import json_headers

StartResponse = Callable[..., Any]
Wsgi = Callable[[dict, StartResponse], Iterable[bytes]]

#: ``scheme://host[:port]``, nothing after: what a browser sends in ``Origin``.
ORIGIN = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")
#: How long a browser may cache a preflight answer (seconds; Chromium caps it at 7200).
MAX_AGE = 600
ALWAYS_ALLOWED_HEADERS = ("Content-Type",)
#: On every answer while CORS is on, whatever the Origin (none, refused, allowed) and the
#: status: answers differ by Origin, so a shared cache in front must not give one origin's
#: answer to another (or an answer without CORS headers to an allowed origin).
VARY = ("Vary", "Origin")
ORIGIN_EXAMPLE = "an origin like https://app.example.com (scheme, host, port; no path), or *"


class CorsError(ValueError):
    """A CORS setting that cannot be used; one line naming what is wrong."""


@dataclass(frozen=True)
class Cors:
    """Which origins may call, which request headers they may send, with credentials or not."""

    origins: tuple[str, ...]
    headers: tuple[str, ...] = ()
    credentials: bool = False
    max_age: int = MAX_AGE

    @property
    def any_origin(self) -> bool:
        return "*" in self.origins

    def allows(self, origin: str) -> bool:
        return self.any_origin or origin in self.origins

    def allow_origin(self, origin: str) -> str:
        """The value of Access-Control-Allow-Origin: ``*``, or the listed origin itself."""
        return "*" if self.any_origin else origin


def policy(
    origins: Iterable[str], headers: Iterable[str] = (), credentials: bool = False
) -> Cors | None:
    """Check the settings and build the policy; None when no origin is given (CORS off)."""
    origins = tuple(dict.fromkeys(o.strip().rstrip("/") for o in origins if o.strip()))
    headers = tuple(dict.fromkeys(h.strip() for h in headers if h.strip()))
    for origin in origins:
        if origin != "*" and not ORIGIN.fullmatch(origin):
            raise CorsError(f"expected {ORIGIN_EXAMPLE}, got {origin!r}")
    for header in headers:
        if not HEADER_NAME.fullmatch(header):
            raise CorsError(f"expected a header name like Authorization, got {header!r}")
    if "*" in origins and credentials:
        raise CorsError("'*' allows any origin, which browsers refuse with credentials: "
                        "list the origins instead")  # fmt: skip
    if not origins:
        return None
    return Cors(origins=origins, headers=headers, credentials=credentials)


def preflight_headers(cors: Cors, origin: str) -> list[tuple[str, str]]:
    """The answer to an allowed origin's preflight: what it may send, and for how long."""
    allowed = ", ".join((*ALWAYS_ALLOWED_HEADERS, *cors.headers))
    return [
        *response_headers(cors, origin),
        ("Access-Control-Allow-Methods", "POST"),
        ("Access-Control-Allow-Headers", allowed),
        ("Access-Control-Max-Age", str(cors.max_age)),
    ]


def response_headers(cors: Cors, origin: str) -> list[tuple[str, str]]:
    """Headers on every answer to an allowed origin, errors included; the browser needs them
    to let the page read the answer (X-Request-Id too)."""
    headers = [
        ("Access-Control-Allow-Origin", cors.allow_origin(origin)),
        ("Access-Control-Expose-Headers", "X-Request-Id"),
        VARY,
    ]
    if cors.credentials:
        headers.append(("Access-Control-Allow-Credentials", "true"))
    return headers


def is_preflight(environ: dict) -> bool:
    return (
        environ["REQUEST_METHOD"] == "OPTIONS"
        and "HTTP_ORIGIN" in environ
        and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ
    )


class CorsMiddleware:
    """Answer preflights and add CORS headers to the wrapped application's answers."""

    def __init__(self, app: Wsgi, cors: Cors) -> None:
        self.app = app
        self.cors = cors

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        origin = environ.get("HTTP_ORIGIN", "")
        allowed = bool(origin) and self.cors.allows(origin)
        if is_preflight(environ):
            if not allowed:
                # No CORS headers: the browser blocks the page's call.
                body = b'{"error": "CORS origin not allowed"}'
                start_response("403 Forbidden", json_headers(len(body), extra=[VARY]))
                return [body]
            start_response("204 No Content", preflight_headers(self.cors, origin))
            return [b""]
        extra = response_headers(self.cors, origin) if allowed else [VARY]

        def start(status: str, headers: list, exc_info: Any = None) -> Any:
            return start_response(status, [*headers, *extra], exc_info)

        return self.app(environ, start)

