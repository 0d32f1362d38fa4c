"""ApiError and HTTP status lines: how a handler answers with something other than 200."""

from http import HTTPStatus
from typing import Any


def status_line(code: int) -> str:
    """``404`` -> ``"404 Not Found"``; codes without a standard phrase get ``Unknown``."""
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Unknown"
    return f"{code} {phrase}"


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
