"""An in-process test client: calls the WSGI application directly, no socket needed.

from apiphant.client import Client
client = Client("myproduct")
result = client.post("echo", "read", {"hello": "world"})
assert result.status == 200 and result.json["server"] == "myproduct"
"""

import contextvars
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apiphant.app import DEFAULT_MAX_BODY, App, create_app


class Headers(Mapping[str, str]):
    """An answer's headers, case-insensitive as HTTP's are, like the handler's
    ``http.headers``: ``result.headers["content-type"]``. Iterating gives the names as
    sent; a repeated header reads as its last value, ``get_all`` gives every one."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._pairs = list(pairs)
        self._last = {name.lower(): value for name, value in self._pairs}
        self._names = list(dict.fromkeys(name for name, _ in self._pairs))

    def __getitem__(self, name: str) -> str:
        return self._last[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._last

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def get_all(self, name: str) -> list[str]:
        return [value for sent, value in self._pairs if sent.lower() == name.lower()]

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"


@dataclass
class Result:
    """What the application answered."""

    status: int
    headers: Headers
    body: bytes
    reason: str = ""
    _json: Any = field(default=None, repr=False)

    @property
    def json(self) -> Any:
        if self._json is None:
            self._json = json.loads(self.body)
        return self._json


class Client:
    """Drive an App like a server would: a WSGI environ in, status, headers and body out."""

    def __init__(
        self, app: App | str | Path, version: str = "v0", max_body: int = DEFAULT_MAX_BODY
    ) -> None:
        self.app = app if isinstance(app, App) else create_app(app, max_body=max_body)
        self.version = version

    def post(self, target: str, action: str, request: Any = None, **kwargs: Any) -> Result:
        """POST a JSON request (None: no body; bytes: sent as they are) to a target's action."""
        return self.request(f"/api/{self.version}/{target}/{action}", request, **kwargs)

    def request(
        self,
        path: str,
        body: Any = None,
        method: str = "POST",
        headers: dict[str, str] | None = None,
    ) -> Result:
        if body is None:
            raw = b""
        elif isinstance(body, bytes):
            raw = body
        else:
            raw = json.dumps(body).encode()
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "testclient",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(raw)) if raw else "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(raw),
            "wsgi.errors": io.StringIO(),
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in (headers or {}).items():
            key = name.upper().replace("-", "_")
            environ[key if key in ("CONTENT_LENGTH", "CONTENT_TYPE") else f"HTTP_{key}"] = value
        started: list[Any] = []

        def start_response(status: str, response_headers: list, exc_info: Any = None) -> Any:
            started[:] = [status, response_headers]
            return lambda data: None

        # A fresh context a request, as each greenlet has under the server.
        chunks = contextvars.copy_context().run(self.app, environ, start_response)
        try:
            payload = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        status, response_headers = started
        code, _, reason = status.partition(" ")
        return Result(int(code), Headers(response_headers), payload, reason)
