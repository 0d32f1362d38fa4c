"""Escape hatches for handlers that need more than a JSON object in and out."""

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


def raw_environ(handler: F) -> F:
    """The handler gets the WSGI environ instead of a parsed request (e.g. a multipart upload).

    Neither the method check nor body parsing happens; the body limit still does: a
    declared Content-Length over it, or reading a chunked body past it, is a 413.
    """
    handler.raw_environ = True  # type: ignore[attr-defined]
    return handler


def raw_response(handler: F) -> F:
    """The handler gets ``(request, start_response)`` and returns a WSGI body iterable.

    With ``@raw_environ`` too, the handler is a plain WSGI application.
    """
    handler.raw_response = True  # type: ignore[attr-defined]
    return handler
