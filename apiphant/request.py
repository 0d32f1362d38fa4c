"""The request: a JSON object body parsed into a dict with attribute access."""

import json
import math
from typing import Any

from apiphant.errors import ApiError
from apiphant.settings import schema

NOT_JSON_OBJECT = "Request content should be JSON Object"
#: JSON values one request body may hold (``count_values``), by default. A body within the
#: default max_body (1 MiB) made of small objects, ``{"a": [{}, {}, ...]}``, held 27 MiB and
#: blocked its worker's loop 80 to 200 ms while it was parsed; 100,000 values parse in at
#: most about 15 ms into 10 MiB (RELIABILITY.md), and the usual JSON of a 1 MiB body (a
#: value every 15 to 20 bytes) passes. Denser bodies (long arrays of small numbers) need
#: more: --max-json-values, deploy.toml's [api] max_json_values.
DEFAULT_MAX_JSON_VALUES: int = schema.DEFAULT_MAX_JSON_VALUES


class AttrDict(dict):
    """A dict whose keys read and write as attributes: ``request.hello``.

    Dict methods win over keys of the same name (``request.items`` is the
    method; ``request["items"]`` is the key). ``_path`` remembers where a
    nested object sits in the request, so validation errors can name it.
    """

    __slots__ = ("_path",)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

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


Request = AttrDict


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    """``1e400`` would be infinity, which no JSON answer can carry: refuse it here."""
    value = float(text)
    if value in (math.inf, -math.inf):
        raise ValueError(f"{text[:20]} is out of range")
    return value


_decode = json.JSONDecoder(
    object_hook=AttrDict, parse_float=_finite_float, parse_constant=_reject_constant
).decode


def count_values(body: bytes) -> int:
    """The JSON values of ``body`` as its parse costs: 1, and 1 for each comma and each
    opening bracket. Exact for JSON whose strings hold none of ``,[{``; an empty ``[]`` or
    ``{}`` counts 2, a comma or bracket inside a string 1. Three counts at C speed (under a
    millisecond for 1 MiB), before any object is made."""
    return 1 + body.count(b",") + body.count(b"[") + body.count(b"{")


def too_many_values(limit: int) -> str:
    return f"Request content has more than {limit} JSON values"


def parse(body: bytes, max_values: int | None = None) -> AttrDict:
    """Turn a request body into an AttrDict; anything but a UTF-8 JSON object is a 400.

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
    except (ValueError, RecursionError):
        raise ApiError(400, NOT_JSON_OBJECT) from None
    if not isinstance(value, AttrDict):
        raise ApiError(400, NOT_JSON_OBJECT)
    return value
