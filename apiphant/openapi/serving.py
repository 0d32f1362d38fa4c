"""``/api/openapi.json`` and ``/api/docs``: a WSGI middleware in front of the App.

On when the ``docs`` setting is (``apiphant serve`` in development; a deploy only with
deploy.toml's ``[api] docs = true``). The document is built on its first request and kept
for the process, as are the page's files. GET and HEAD only: any other method is a 405
naming them. The paths never clash with a route, which is always ``/api/vN/...``.
"""

from collections.abc import Callable, Iterable
from typing import Any

from apiphant.encoding import encode
from apiphant.errors import ApiError, status_line
from apiphant.http.response import NOSNIFF_HEADER, error_body, json_headers
from apiphant.openapi import page

SCHEMA_PATH = "/api/openapi.json"
DOCS_PATH = "/api/docs"
ALLOW = "GET, HEAD"
OK = status_line(200)


class Docs:
    """Answers the document and the page, and hands every other request to ``inner``."""

    def __init__(self, inner: Callable[..., Iterable[bytes]], title: str,
                 document: Callable[[], dict[str, Any]]) -> None:  # fmt: skip
        self.inner = inner
        self.title = title
        self.document = document
        self.cache: dict[str, tuple[str, bytes]] = {}
        self.paths = {SCHEMA_PATH, DOCS_PATH, *(f"{DOCS_PATH}/{n}" for n in page.ASSETS)}

    def answer(self, path: str) -> tuple[str, bytes]:
        """(content type, body) of one of the paths, made once."""
        if path not in self.cache:
            files = page.folder()
            if path == SCHEMA_PATH:
                made = ("application/json", encode(self.document()).encode())
            elif path == DOCS_PATH:
                made = ("text/html; charset=utf-8", page.page(self.title, files))
            else:
                name = path.rsplit("/", 1)[1]
                body = page.asset(name, files)
                if body is None:
                    raise ApiError(404)
                made = (page.ASSETS[name], body)
            self.cache[path] = made
        return self.cache[path]

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        if path not in self.paths:
            return self.inner(environ, start_response)
        method = environ["REQUEST_METHOD"]
        if method not in ("GET", "HEAD"):
            body = error_body(405)
            start_response(status_line(405), json_headers(len(body), extra=[("Allow", ALLOW)]))
            return [body]
        try:
            kind, body = self.answer(path)
        except ApiError as error:
            body = error_body(error.status)
            start_response(status_line(error.status), json_headers(len(body)))
            return [body]
        headers = [("Content-Type", kind), NOSNIFF_HEADER, ("Content-Length", str(len(body))),
                   ("Cache-Control", "no-cache")]  # fmt: skip
        if path == DOCS_PATH:
            headers.append(("Content-Security-Policy", page.POLICY))
        start_response(OK, headers)
        return [b"" if method == "HEAD" else body]
