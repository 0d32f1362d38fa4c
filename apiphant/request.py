"""The request: a JSON object body parsed into a dict with attribute access."""

import json
import math
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from apiphant.errors import ApiError, Missing
from apiphant.settings import schema

NOT_JSON_OBJECT = "Request content should be JSON Object"
#: JSON values one request body may hold (``count_values``), by default. A body within the
#: default max_body (1 MiB) made of small objects, ``{"a": [{}, {}, ...]}``, held 27 MiB and
#: blocked its worker's loop 80 to 200 ms while it was parsed; 100,000 values parse in at
#: most about 15 ms into 10 MiB (RELIABILITY.md), and the usual JSON of a 1 MiB body (a
#: value every 15 to 20 bytes) passes. Denser bodies (long arrays of small numbers) need
#: more: --max-json-values, deploy.toml's [api] max_json_values.
DEFAULT_MAX_JSON_VALUES: int = schema.DEFAULT_MAX_JSON_VALUES


class MissingAttribute(Missing, AttributeError):
    """``request.name`` for a key the body lacks: the 400 ``field()`` gives for a missing
    field, ``{"field": "name", "state": "missing"}``; and an AttributeError, so
    ``getattr(request, "name", default)`` and ``hasattr`` keep working."""

    def __init__(self, path: str, name: str) -> None:
        super().__init__(path)
        self.name = name


class AttrDict(dict):
    """A dict whose keys read and write as attributes: ``request.hello``.

    Dict methods win over keys of the same name (``request.items`` is the
    method; ``request["items"]`` is the key). A missing key is a 400 naming it
    (``MissingAttribute``); a missing name that starts with ``_`` (``__html__``,
    what libraries probe with ``hasattr``) is a plain AttributeError. ``_path``
    remembers where a nested object sits in the request, so errors can name it.
    """

    __slots__ = ("_path",)

    def __getattr__(self, name: str) -> Any:
        try:
            value = self[name]
        except KeyError:
            if name.startswith("_"):
                raise AttributeError(name) from None
            raise MissingAttribute(child_path(self, name), name) from None
        if type(value) is AttrDict or type(value) is list:
            return placed(self, name, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_path":
            object.__setattr__(self, name, value)
        else:
            self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def copy(self) -> "AttrDict":
        return AttrDict(self)

    def __reduce__(self) -> tuple:
        return (AttrDict, (dict(self),))


#: The item of an ``Items`` list this request's code is at, (list, index), when that item
#: cannot carry its path (a number, a string, null): how ``extras[1]`` is named.
_current: ContextVar[tuple["Items", int] | None] = ContextVar("apiphant_item", default=None)


class Items(list):
    """A list of the request read through an attribute or ``field()``: it knows its path.
    Its objects know theirs (``extras[0].note``); an item that is no object is named
    itself (``extras[1]``) while a loop over the list is at it. Copies (``copy``,
    ``pickle``) are plain lists."""

    __slots__ = ("_path",)

    def __iter__(self) -> Iterator[Any]:
        previous = _current.get()
        try:
            for index, item in enumerate(list.__iter__(self)):
                if type(item) is not AttrDict:
                    _current.set((self, index))
                yield item
        finally:
            _current.set(previous)

    def __reduce__(self) -> tuple:
        return (list, (list(self),))


def child_path(parent: Any, name: str | int) -> str:
    """The one rule for a value's path in the request: ``address.city``, ``items[2].id``,
    ``extras[1]``; the name alone where the parent's place is unknown."""
    prefix = getattr(parent, "_path", "") if isinstance(parent, (AttrDict, Items)) else ""
    if isinstance(name, int):
        return f"{prefix}[{name}]"
    return f"{prefix}.{name}" if prefix else name


def placed(parent: Any, key: str | int, value: Any) -> Any:
    """``value``, read as ``parent[key]``, knowing its path: an object gets it, a plain
    list becomes ``Items`` in its parent's place (its objects marked too)."""
    path = child_path(parent, key)
    if type(value) is AttrDict:
        value._path = path
    elif type(value) is list:
        value = Items(value)
        value._path = path
        for index, item in enumerate(list.__iter__(value)):
            if type(item) is AttrDict:
                item._path = f"{path}[{index}]"
        try:
            parent[key] = value
        except TypeError:  # a parent that cannot change: the list is still placed
            pass
    return value


def place_of(value: Any) -> str | None:
    """The path of an item that cannot carry it (not an object), when the code is at it:
    ``extras[1]``; None elsewhere."""
    current = _current.get()
    if current is None:
        return None
    items, index = current
    if index < len(items) and items[index] is value:
        return child_path(items, index)
    return None


Request = AttrDict


class NotJsonObject(ApiError):
    """A body that is no JSON object: 400, apiphant 0.2's words, then what is wrong."""

    def __init__(self, problem: str) -> None:
        super().__init__(400, f"{NOT_JSON_OBJECT}: {problem}")


class _NotJson(ValueError):
    """A value json's parser would take that JSON has not (NaN, Infinity)."""


class _OutOfRange(ValueError):
    """A number no JSON answer could carry: ``1e400`` would be infinity."""


def _reject_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):
        raise _OutOfRange(f"number {text[:20]} is out of range")
    return value


_decode = json.JSONDecoder(
    object_hook=AttrDict, parse_float=_finite_float, parse_constant=_reject_constant
).decode

#: What a body that parsed as JSON, but is no object, is called in the error.
_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number",
          bool: "a boolean", type(None): "null"}  # fmt: skip
#: Content-Types of an HTML form (``curl -F``), and curl's default for ``-d``: a JSON body
#: sent with them still parses; one that does not is told JSON is expected.
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def form_error(content_type: str) -> NotJsonObject | None:
    """The error for a body that failed to parse and came as a form, or None."""
    media = content_type.partition(";")[0].strip().lower()
    if media not in FORMS:
        return None
    return NotJsonObject(f"got a form ({media}); send a JSON object with "
                         "Content-Type: application/json")  # fmt: skip


def _described(error: Exception, body: bytes) -> str:
    """What is wrong with a body the parser refused, from its error."""
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8 (byte 0x{body[error.start]:02x} at offset {error.start})"
    if isinstance(error, json.JSONDecodeError):
        return f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
    if isinstance(error, (_NotJson, _OutOfRange)):
        return str(error)
    if isinstance(error, RecursionError):
        return "nested too deep"
    # int() refused an integer of more digits than it converts (sys.get_int_max_str_digits)
    return f"a number is out of range (integers have at most {sys.get_int_max_str_digits()} digits)"


def count_values(body: bytes) -> int:
    """The JSON values of ``body`` as its parse costs: 1, and 1 for each comma and each
    opening bracket. Exact for JSON whose strings hold none of ``,[{``; an empty ``[]`` or
    ``{}`` counts 2, a comma or bracket inside a string 1. Three counts at C speed (under a
    millisecond for 1 MiB), before any object is made."""
    return 1 + body.count(b",") + body.count(b"[") + body.count(b"{")


def too_many_values(limit: int) -> str:
    return f"Request content has more than {limit} JSON values"


def parse(body: bytes, max_values: int | None = None) -> AttrDict:
    """Turn a request body into an AttrDict; anything but a UTF-8 JSON object is a 400
    saying what is wrong (``NotJsonObject``): where the JSON breaks, the byte that is not
    UTF-8, what the body is instead of an object, the number out of range.

    An empty body is ``{}``. NaN and Infinity are refused because they are
    not JSON; a too deep or too long number is refused, not a crash. More than
    ``max_values`` values (``count_values``) are a 413, refused before parsing.
    """
    if not body:
        return AttrDict()
    # A body no longer than the limit cannot be over it: small bodies are not counted.
    if max_values is not None and len(body) > max_values and count_values(body) > max_values:
        raise ApiError(413, too_many_values(max_values))
    try:
        value = _decode(body.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise NotJsonObject(_described(error, body)) from None
    if not isinstance(value, AttrDict):
        raise NotJsonObject(f"got {_KINDS.get(type(value), 'another value')}")
    return value
