"""Validate request fields and subfields; errors name the whole path of the field.

``field(request, 'address')`` returns the nested object, and a later
``field(address, 'city')`` reports ``"address.city"``; objects inside a list
returned by ``field`` report ``"items[2].id"``.
"""

from collections.abc import Callable, Collection
from typing import Any

from apiphant.compat import moved
from apiphant.errors import ApiError
from apiphant.request import AttrDict

__all__ = ["ApiError", "BadRequest", "Missing", "Invalid", "field"]


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


def _child_path(parent: Any, name: str | int) -> str:
    prefix = getattr(parent, "_path", "") if isinstance(parent, AttrDict) else ""
    if isinstance(name, int):
        return f"{prefix}[{name}]"
    return f"{prefix}.{name}" if prefix else name


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON means it: ``true`` is not ``1``."""
    return (type(a) is bool) == (type(b) is bool) and a == b


def _type_ok(value: Any, valid_type: type | tuple[type, ...]) -> bool:
    types = valid_type if isinstance(valid_type, tuple) else (valid_type,)
    if type(value) is bool:
        return bool in types
    if float in types and type(value) is int:
        return True  # a JSON number written without a fraction is still a number
    return isinstance(value, types)


def _value_ok(value: Any, valid_value: Any) -> bool:
    if callable(valid_value):
        try:
            return bool(valid_value(value))
        except Exception:  # a predicate that cannot judge the value refuses it
            return False
    if isinstance(valid_value, (set, frozenset)):
        return any(_json_equal(value, choice) for choice in valid_value)
    return _json_equal(value, valid_value)


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, Collection) else None


def _mark_children(value: Any, path: str) -> None:
    """Let nested objects remember their path, so later field() calls can name it."""
    if isinstance(value, AttrDict):
        value._path = path
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, AttrDict):
                item._path = f"{path}[{index}]"


def field(
    request: AttrDict | list,
    field_name: str | int,
    is_required: bool = False,
    default_value: Any = None,
    valid_value: Any | Callable[[Any], bool] = None,
    valid_type: type | tuple[type, ...] | None = None,
    valid_length: int | None = None,
    max_length: int | None = None,
    explain: Any = "",
) -> Any:
    """Return ``request[field_name]`` after checking it, or raise Missing or Invalid.

    ``valid_value`` is a value to equal, a set of allowed values, or a
    predicate. ``valid_type=int`` refuses ``true``; ``valid_type=float``
    accepts ``1``. A JSON ``null`` counts as present.
    """
    path = _child_path(request, field_name)
    try:
        value = request[field_name]
    except (KeyError, IndexError, TypeError):
        if is_required:
            raise Missing(path, explain) from None
        return default_value
    if (
        (valid_type is not None and not _type_ok(value, valid_type))
        or (valid_value is not None and not _value_ok(value, valid_value))
        or (valid_length is not None and _length(value) != valid_length)
        or (max_length is not None and (_length(value) is None or _length(value) > max_length))
    ):
        raise Invalid(path, explain)
    _mark_children(value, path)
    return value



# 0.2's table of status lines, for products that still read it: works, warns once.
__getattr__ = moved(__name__, {"status_by_code": "apiphant.errors:STATUS_BY_CODE"})
