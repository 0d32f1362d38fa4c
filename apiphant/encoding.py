"""How an answer becomes JSON: the one encoder of every answer (App.direct, WSGI, hooks,
errors), and the rule for the values JSON has no type for.

A handler may return what Python code has at hand, as FastAPI's ``jsonable_encoder`` and
Flask's JSON provider take it (docs/handlers.md has the table):

- ``datetime``, ``date``, ``time``: an ISO 8601 string (``"2026-11-24T15:16:20+00:00"``);
- ``Decimal`` and ``UUID``: a string, every digit kept (``"19.90"``);
- ``set`` and ``frozenset``: an array, sorted when its items sort;
- a dataclass instance: an object of its fields (``dataclasses.asdict``);
- an ``Enum`` member: its value.

Anything else is the handler's bug: TypeError naming the type, a 500 whose log line
says it. NaN and Infinity are refused as before.
"""

import dataclasses
import datetime
import decimal
import enum
import json
import uuid
from collections.abc import Callable
from typing import Any


def default(value: Any) -> Any:
    """What ``value``, of a type JSON lacks, is written as; json calls it only for such a
    value, so a plain dict's answer costs nothing more."""
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:  # items that do not sort (mixed types): their iteration order
            return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _encoder() -> Callable[[Any], str]:
    """``json.JSONEncoder(allow_nan=False, default=default).encode``, its C encoder built
    once instead of on every call: the same bytes (ASCII escapes, ``", "`` and ``": "``,
    NaN and Infinity refused, integers past Python's digit limit refused), 1.1 instead of
    3.9 µs for the echo's answer; building the encoder was 4% of a request at 50
    connections (py-spy).

    Built without the circular-reference markers, so no state is shared between greenlets: a
    circular answer ends in RecursionError instead of ValueError, a 500 either way.
    """
    stdlib = json.JSONEncoder(allow_nan=False, default=default)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # a Python without the C accelerator
        return stdlib.encode
    encoder = make(
        None, default, json.encoder.encode_basestring_ascii, None,
        stdlib.key_separator, stdlib.item_separator, False, False, False,
    )  # fmt: skip
    join = "".join

    def encode(value: Any) -> str:
        if isinstance(value, str):
            return stdlib.encode(value)
        return join(encoder(value, 0))

    return encode


#: The answer's JSON text: ``encode(result).encode()`` are the bytes sent.
encode = _encoder()
