"""Validate request fields and subfields; errors name the whole path of the field.

``field(request, 'address')`` returns the nested object, and a later
``field(address, 'city')`` reports ``"address.city"``; objects inside a list
returned by ``field`` report ``"items[2].id"``, an item that is no object
``"items[2]"`` (the rule is ``apiphant.request.child_path``, attributes use it too).
BadRequest, Missing and Invalid live in ``apiphant.errors``; 0.2 imports them from here.
"""

import json
from collections.abc import Callable, Collection
from typing import Any

from apiphant.compat import moved
from apiphant.errors import ApiError, BadRequest, Invalid, Missing
from apiphant.request import AttrDict, child_path, place_of, placed

__all__ = ["ApiError", "BadRequest", "Missing", "Invalid", "field"]


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


def _whole(value: Any, valid_type: type | tuple[type, ...] | None) -> Any:
    """``2.0`` as ``2`` where an integer is wanted (and no float): JSON has one kind of
    number, and JSON Schema's ``integer`` (the OpenAPI document's) is any whole one, as
    pydantic's lax mode takes it too."""
    if type(value) is not float or valid_type is None or not value.is_integer():
        return value
    types = valid_type if isinstance(valid_type, tuple) else (valid_type,)
    return int(value) if int in types and float not in types else value


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


#: A JSON type as an explanation names it.
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               dict: "an object", AttrDict: "an object", list: "an array",
               type(None): "null"}  # fmt: skip


def _json_text(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _expected_type(valid_type: type | tuple[type, ...]) -> str:
    types = valid_type if isinstance(valid_type, tuple) else (valid_type,)
    names = dict.fromkeys(_TYPE_NAMES.get(t, f"of type {t.__name__}") for t in types)
    return " or ".join(names)


def _expected_value(valid_value: Any) -> str | None:
    if callable(valid_value):
        return None  # a predicate: what it wants is its own
    if isinstance(valid_value, (set, frozenset)):
        return "one of " + ", ".join(sorted(_json_text(choice) for choice in valid_value))
    return f"equal to {_json_text(valid_value)}"


def _broken_rule(
    value: Any,
    valid_type: type | tuple[type, ...] | None,
    valid_value: Any,
    valid_length: int | None,
    max_length: int | None,
) -> str | None:
    """The first rule ``value`` breaks, as its explanation: what was expected ("an
    integer", "at most 8 characters"); "" for a rule that cannot say (a predicate); None
    when every rule holds."""
    if valid_type is not None and not _type_ok(value, valid_type):
        return _expected_type(valid_type)
    if valid_value is not None and not _value_ok(value, valid_value):
        return _expected_value(valid_value) or ""
    length = _length(value)
    unit = "characters" if isinstance(value, str) else "items"
    if valid_length is not None and length != valid_length:
        return f"exactly {valid_length} {unit}" if length is not None else (
            f"a length of {valid_length}")
    if max_length is not None and (length is None or length > max_length):
        return f"at most {max_length} {unit}" if length is not None else (
            f"a length of at most {max_length}")
    return None


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
    predicate. ``valid_type=int`` refuses ``true`` and takes ``2.0`` as ``2``;
    ``valid_type=float`` accepts ``1``. A JSON ``null`` counts as present.
    """
    path = child_path(request, field_name)
    try:
        value = request[field_name]
    except (KeyError, IndexError, TypeError):
        if not is_required:
            return default_value
        named = isinstance(field_name, str) and not isinstance(request, dict)
        place = place_of(request) if named else None
        if place is not None:  # an item of a list that is no object: name the item
            raise Invalid(place, "an object") from None
        raise Missing(path, explain) from None
    value = _whole(value, valid_type)
    rule = _broken_rule(value, valid_type, valid_value, valid_length, max_length)
    if rule is not None:
        # the handler's own explain wins; None asks for none
        raise Invalid(path, rule if explain == "" else explain)
    return placed(request, field_name, value)



# 0.2's table of status lines, for products that still read it: works, warns once.
__getattr__ = moved(__name__, {"status_by_code": "apiphant.errors:STATUS_BY_CODE"})
