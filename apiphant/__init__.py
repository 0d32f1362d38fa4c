"""apiphant: a small, fast framework for JSON web APIs on gevent.

A product is a folder; ``PRODUCT/api/vN/<target>.py`` defines create, read,
update and delete, served at ``POST /api/vN/<target>/<action>``.

What a handler uses is here too, loaded on first use (``import apiphant`` stays light and
loads no gevent): ``from apiphant import ApiError, field, seconds``. Each name's home is in
``API``; those paths keep working as well.
"""

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "1.0.0"

if TYPE_CHECKING:
    from apiphant.app import create_app
    from apiphant.context import Http
    from apiphant.db.idempotency import idempotent
    from apiphant.errors import ApiError, status
    from apiphant.hatches import raw_environ, raw_response
    from apiphant.periodic import seconds
    from apiphant.request import Request
    from apiphant.validation import BadRequest, Invalid, Missing, field

#: The handler API: each name and the module that defines it. No name is a submodule's.
API = {
    "ApiError": "apiphant.errors",
    "status": "apiphant.errors",
    "BadRequest": "apiphant.validation",
    "Missing": "apiphant.validation",
    "Invalid": "apiphant.validation",
    "field": "apiphant.validation",
    "Request": "apiphant.request",
    "Http": "apiphant.context",
    "raw_environ": "apiphant.hatches",
    "raw_response": "apiphant.hatches",
    "seconds": "apiphant.periodic",
    "idempotent": "apiphant.db.idempotency",
    "create_app": "apiphant.app",
}

__all__ = [
    "ApiError", "status", "BadRequest", "Missing", "Invalid", "field", "Request", "Http",
    "raw_environ", "raw_response", "seconds", "idempotent", "create_app",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(API[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *API})
