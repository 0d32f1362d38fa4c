"""ApiError and HTTP status lines: how a handler answers with something other than 200."""

from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable)


def status_line(code: int) -> str:
    """``404`` -> ``"404 Not Found"``; codes without a standard phrase get ``Unknown``."""
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Unknown"
    return f"{code} {phrase}"


#: What a handler answers when it says nothing else (apiphant 0.2's only success).
OK = "200 OK"
#: Success statuses that carry no body: a handler's answer is a JSON object, so never these.
_NO_BODY = (204, 205)


def success_status(code: int) -> str:
    """The status line of a handler's success, ``@status(201)`` or ``http.status = 201``:
    a 2xx that carries a body. The one home of that rule; ValueError names a bad code (at
    import for the decorator, a 500 for the request that set it)."""
    if isinstance(code, bool) or not isinstance(code, int) or not 200 <= code <= 299:
        raise ValueError(f"a success status is an int from 200 to 299, got {code!r}; "
                         "raise ApiError for an error")  # fmt: skip
    if code in _NO_BODY:
        raise ValueError(f"status {code} has no body, and a handler answers JSON")
    return status_line(code)


def status(code: int) -> Callable[[F], F]:
    """``@status(201)`` over an action: its success answers ``code`` instead of 200 (a
    create's 201 Created), as FastAPI's ``status_code=``; errors keep theirs. A handler that
    decides per request sets ``http.status`` instead, which wins."""
    line = success_status(code)

    def mark(handler: F) -> F:
        handler.success_status = line  # type: ignore[attr-defined]
        return handler

    return mark


#: 0.2's ``apiphant.validation.status_by_code``: the status lines 0.2 answered with.
STATUS_BY_CODE = {code: status_line(code) for code in (200, 400, 403, 404, 500, 501)}


def _is_empty(error: Any) -> bool:
    return error is None or (isinstance(error, (str, dict, list)) and not error)


class ApiError(Exception):
    """Raise to answer ``status`` with ``{"error": error}``, or the status line when empty."""

    def __init__(self, status: int, error: Any = None) -> None:
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"ApiError status must be an int from 400 to 599, got {status!r}")
        super().__init__(status, error)
        self.status = status
        self.error = error

    @property
    def status_code(self) -> int:
        """apiphant 0.2's name for ``status``."""
        return self.status

    @property
    def body(self) -> dict[str, Any]:
        return {"error": status_line(self.status) if _is_empty(self.error) else self.error}


class BadRequest(ApiError):
    """400 ``{"error": {"field": ..., "state": ..., "explain": ...}}``."""

    def __init__(self, field_name: str, state: str, explain: Any = "") -> None:
        error = {"field": field_name, "state": state}
        if explain is not None and explain != "":
            error["explain"] = explain
        super().__init__(400, error)


class Missing(BadRequest):
    def __init__(self, field_name: str, explain: Any = "") -> None:
        super().__init__(field_name, "missing", explain)


class Invalid(BadRequest):
    def __init__(self, field_name: str, explain: Any = "") -> None:
        super().__init__(field_name, "invalid", explain)
