"""The request: a JSON object body parsed into a dict with attribute access."""

import json
import math
from typing import Any

from apiphant.errors import ApiError

NOT_JSON_OBJECT = "Request content should be JSON Object"


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


def parse(body: bytes) -> AttrDict:
    """Turn a request body into an AttrDict; anything but a UTF-8 JSON object is a 400.

    An empty body is ``{}``. NaN and Infinity are refused because they are
    not JSON; a too deep or too long number is refused, not a crash.
    """
    if not body:
        return AttrDict()
    try:
        value = _decode(body.decode("utf-8"))
    except (ValueError, RecursionError):
        raise ApiError(400, NOT_JSON_OBJECT) from None
    if not isinstance(value, AttrDict):
        raise ApiError(400, NOT_JSON_OBJECT)
    return value
