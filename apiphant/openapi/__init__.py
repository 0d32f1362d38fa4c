"""The OpenAPI document of a product, read from its routes and its handlers' ``field()``
calls, and the docs page that shows it.

``reading`` reads each handler's source with ``ast`` (handlers are never called),
``document`` makes the OpenAPI 3.1 dict, ``page`` and ``serving`` answer
``/api/openapi.json`` and ``/api/docs``. ``build`` puts them together, for ``apiphant
openapi`` and the server, which builds it once per process.
"""

import os
import sys
from typing import Any

from apiphant.openapi import document
from apiphant.openapi.reading import Reader
from apiphant.routing import Hooks, Route
from apiphant.settings import schema

#: The document's version when no release is deployed (APIPHANT_RELEASE unset).
DEVELOPMENT = "development"


def _target(route: Route) -> str:
    """``v0/users/settings``: the route's version and target, its operations' tag."""
    return route.path.removeprefix("/api/").rsplit("/", 1)[0]


def build(name: str, routes: dict[str, Route], hooks: Hooks | None = None,
          release: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The product's OpenAPI document: ``name`` and ``release`` (default: the deployed one,
    APIPHANT_RELEASE) are its ``info``."""
    reader = Reader()
    hooks = hooks or Hooks()
    extra = reader.statuses(hooks.before) | reader.statuses(hooks.after)
    operations, tags = {}, {}
    for path, route in routes.items():
        tags[_target(route)] = (getattr(sys.modules.get(route.module), "__doc__", "") or ""
                                ).strip()  # fmt: skip
        operations[path] = document.operation(
            path, _target(route), route.status, reader.handler(route.handler), extra,
            route.idempotent, route.raw_response)  # fmt: skip
    version = release if release is not None else os.environ.get(schema.env_name("release"), "")
    return document.document(name, version or DEVELOPMENT, operations, tags)
