"""The WSGI side of a request: its environ, ``wsgi.input``, and calling the application.

The environ has the keys gevent.pywsgi gave (tests/test_wsgi.py compares the
two through sockets): CGI variables, ``HTTP_*`` for each header (names with
an underscore are dropped, so ``X_Forwarded_For`` cannot pass for
``X-Forwarded-For``; repeated headers joined with ``,``, cookies with ``; ``),
``RAW_URI`` (the target as sent) and ``wsgi.input_terminated``.

The response is collected whole before it is sent, so that status line,
headers and body leave in one write and Content-Length is always known: this
is a server for JSON answers, not for streaming.
"""

import ipaddress
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from apiphant.context import LOCAL_ADDRESS
from apiphant.http.parser import Request

if TYPE_CHECKING:
    from apiphant.http.connection import Connection

#: ``X-Request-Id`` -> ``HTTP_X_REQUEST_ID``, computed once per header name seen (bounded).
_keys: dict[str, str | None] = {}
_SKIPPED = frozenset({"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"})


def base_environ(host: str, port: int) -> dict[str, Any]:
    """What every request of one server shares; with the address it listens on, unless a
    wildcard (the deploy never binds one), for /health to know the host's own requests."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    local = {} if address is None or address.is_unspecified else {LOCAL_ADDRESS: str(address)}
    return {
        **local,
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "apiphant",
        "SCRIPT_NAME": "",
        "SERVER_NAME": host,
        "SERVER_PORT": str(port),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }


def _key(name: str) -> str | None:
    key = _keys.get(name)
    if key is None and name not in _keys:
        key = None if "_" in name else "HTTP_" + name.replace("-", "_").upper()
        if key in _SKIPPED:
            key = None
        if len(_keys) < 1024:
            _keys[name] = key
    return key


def environ(base: dict[str, Any], request: Request, body: Any, remote: Any) -> dict[str, Any]:
    """The environ of one request, from the server's shared part."""
    env = base.copy()
    target = request.target
    path, _, query = target.partition("?")
    env["REQUEST_METHOD"] = request.method
    env["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1") if "%" in path else path
    env["QUERY_STRING"] = query
    env["SERVER_PROTOCOL"] = "HTTP/" + request.version
    env["RAW_URI"] = target
    env["wsgi.input"] = body
    if isinstance(remote, tuple):
        env["REMOTE_ADDR"] = str(remote[0])
        env["REMOTE_PORT"] = str(remote[1])
    for name, value in request.headers:
        key = _key(name)
        if key is None:
            lower = name.lower()
            if lower == "content-type":
                env.setdefault("CONTENT_TYPE", value)
            elif lower == "content-length" and value:
                env.setdefault("CONTENT_LENGTH", value)
            continue
        value = value.strip()
        if key in env:
            env[key] += ("; " if "COOKIE" in key else ",") + value
        else:
            env[key] = value
    return env


class Lines:
    """``readlines`` and iteration by line, from a stream's own ``readline``: what
    io.IOBase gives a file, for the WSGI inputs that are not files (``Body``, and the
    App's size-limited stream)."""

    __slots__ = ()

    def readline(self, size: int | None = -1) -> bytes:
        raise NotImplementedError

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class Body(Lines):
    """``wsgi.input``: the request body, read from the connection as the application asks.

    Reads wait at most until the body deadline (a TimeoutError past it); a body
    that breaks HTTP (a bad chunk) raises ValueError, a client gone OSError.
    ``100 Continue`` is sent on the first read that has to wait, not before:
    an answer given without reading never invites the body.
    """

    __slots__ = ("_connection", "_request")

    def __init__(self, connection: "Connection", request: Request) -> None:
        self._connection = connection
        self._request = request

    def read(self, size: int | None = -1) -> bytes:
        request = self._request
        if size is None or size < 0:
            self._connection.fill(request, sys.maxsize)
            size = len(request.body)
        elif len(request.body) < size:
            self._connection.fill(request, size)
        buffer = request.body
        if size >= len(buffer):
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:size])
            del buffer[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        request = self._request
        limit = sys.maxsize if size is None or size < 0 else size
        while True:
            buffer = request.body
            end = buffer.find(b"\n", 0, limit)
            if end >= 0:
                return self.read(end + 1)
            if request.complete or len(buffer) >= limit:
                return self.read(limit)
            self._connection.fill(request, len(buffer) + 1)


class StartResponse:
    """The ``start_response`` of one request: it keeps what the application said."""

    __slots__ = ("status", "headers", "written")

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.written: list[bytes] = []

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if self.status is not None and exc_info is None:
            raise RuntimeError("start_response called twice without exc_info")
        self.status = status
        self.headers = headers
        return self.written.append  # PEP 3333's write(); collected like the rest


def call(app: Callable, env: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run the WSGI application: (status, headers, whole body)."""
    response = StartResponse()
    result: Iterable[bytes] = app(env, response)
    try:
        if type(result) is list and len(result) == 1 and not response.written:
            body = result[0]
        else:
            body = b"".join([*response.written, *result])
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    if response.status is None:
        raise RuntimeError("the application did not call start_response")
    return response.status, response.headers, body
