"""The route table: from a product folder to ``{"/api/v0/echo/read": Route}``.

``discover`` is pure (it only lists files); ``load`` imports the target
modules once, at start-up, so a broken target stops the server early with
its file and traceback instead of failing on the first request.
"""

import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apiphant.db import idempotency
from apiphant.errors import OK
from apiphant.product import Product
from apiphant.runtime import imports

ACTIONS = ("create", "read", "update", "delete")
VERSION_RE = re.compile(r"^v\d+$")


class RouteError(Exception):
    """A target that cannot be routed; the message names the file."""


class BadTarget(RouteError):
    """A target or hook of the wrong shape (an action that is no function, or async, a
    module beside a folder of the same name, a hook of the wrong arity): the product's
    mistake, refused at start-up with exit status 2; a failed import is exit status 1."""


@dataclass(frozen=True)
class Target:
    """One target module: ``url`` like ``/api/v0/users/settings``, ``module`` its dotted name."""

    url: str
    module: str
    file: Path


@dataclass(frozen=True)
class Route:
    """One action of one target, with the escape hatches it asked for."""

    path: str
    handler: Callable[..., Any]
    module: str
    action: str
    raw_environ: bool
    raw_response: bool
    #: ``def read(request, http)``: the handler declared a second parameter for the Http context.
    wants_http: bool = False
    #: The status line of its success: 200, or what ``@status(...)`` said.
    status: str = OK
    #: It honours an Idempotency-Key (``apiphant.db.idempotency``): a write, unless marked.
    idempotent: bool = False


@dataclass(frozen=True)
class Hooks:
    """``before(request, http)`` and ``after(request, http, response)`` from ``api/hooks.py``."""

    before: Callable[..., Any] | None = None
    after: Callable[..., Any] | None = None


#: The one place a product's hooks live: PRODUCT/api/hooks.py (never routed: not under vN/).
HOOKS_MODULE = "hooks"


def _is_public(name: str) -> bool:
    return name.isidentifier() and not name.startswith("_")


def _walk(folder: Path, url: str, module: str) -> list[Target]:
    targets: list[Target] = []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix == ".py" and _is_public(entry.stem):
            if (folder / entry.stem).is_dir():
                raise BadTarget(
                    f"{entry}: both {entry.name} and {entry.stem}/ define target {url}/{entry.stem}"
                )
            targets.append(Target(f"{url}/{entry.stem}", f"{module}.{entry.stem}", entry))
        elif entry.is_dir() and _is_public(entry.name):
            init = entry / "__init__.py"
            child_url, child_module = f"{url}/{entry.name}", f"{module}.{entry.name}"
            if init.is_file():
                targets.append(Target(child_url, child_module, init))
            targets.extend(_walk(entry, child_url, child_module))
    return targets


def discover(product: Product) -> list[Target]:
    """List every target module of the product, nested ones included, without importing."""
    targets: list[Target] = []
    for version in sorted(product.api_path.iterdir()):
        if version.is_dir() and VERSION_RE.match(version.name):
            targets.extend(
                _walk(version, f"/api/{version.name}", f"{product.name}.api.{version.name}")
            )
    return targets


def _import(target: Target, product: Product) -> Any:
    try:
        return importlib.import_module(target.module)
    except Exception as error:
        raise RouteError(imports.problem(error, product.path, target.file)) from error


def _positional(handler: Callable[..., Any]) -> int:
    """How many positional arguments a handler accepts (a *args counts as many)."""
    try:
        parameters = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = [p.kind for p in parameters]
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        return 99
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for kind in kinds if kind in positional)


def load_hooks(product: Product) -> Hooks:
    """Import ``PRODUCT/api/hooks.py`` when there is one; its before and after run for every
    action."""
    file = product.api_path / f"{HOOKS_MODULE}.py"
    if not file.is_file():
        return Hooks()
    target = Target("", f"{product.name}.api.{HOOKS_MODULE}", file)
    module = _import(target, product)
    hooks = Hooks(module.__dict__.get("before"), module.__dict__.get("after"))
    for name, hook, count in (("before", hooks.before, 2), ("after", hooks.after, 3)):
        if hook is not None and (not callable(hook) or _positional(hook) < count):
            raise BadTarget(f"{file}: {name} should be a function of {count} arguments")
    return hooks


def _check_handler(handler: Any, action: str, file: Path) -> None:
    """Refuse at start-up what would fail on every request: a handler that is no function,
    an ``async def`` one (its coroutine is never awaited: gevent needs no async), or a
    generator (its answer is not a dict; a ``@raw_response`` one may stream its body)."""
    if not callable(handler):
        raise BadTarget(f"{file}: {action} is not a function")
    code = getattr(inspect.unwrap(handler), "__code__", None)
    where = f"{file}:{code.co_firstlineno}" if code is not None else str(file)
    if inspect.iscoroutinefunction(handler) or inspect.isasyncgenfunction(handler):
        raise BadTarget(f"{where}: {action} is async def; apiphant runs handlers on gevent, "
                        f"which needs no async: write def {action}(request)")  # fmt: skip
    if inspect.isgeneratorfunction(handler) and not getattr(handler, "raw_response", False):
        raise BadTarget(f"{where}: {action} is a generator (it yields); return a dict instead")


def load(product: Product) -> dict[str, Route]:
    """Import every target and map each action's URL path to its Route."""
    routes: dict[str, Route] = {}
    for target in discover(product):
        module = _import(target, product)
        for action in ACTIONS:
            handler = module.__dict__.get(action)
            if handler is None:
                continue
            _check_handler(handler, action, target.file)
            path = f"{target.url}/{action}"
            routes[path] = Route(
                path=path,
                handler=handler,
                module=target.module,
                action=action,
                raw_environ=bool(getattr(handler, "raw_environ", False)),
                raw_response=bool(getattr(handler, "raw_response", False)),
                wants_http=_positional(handler) >= 2,
                status=getattr(handler, "success_status", OK),
                idempotent=not (getattr(handler, "raw_environ", False)
                                or getattr(handler, "raw_response", False))
                and idempotency.applies(action, getattr(handler, "idempotent", None)),
            )
    return routes


def describe(routes: dict[str, Route]) -> list[str]:
    """One line a route, for ``apiphant routes``."""
    lines = []
    for path in sorted(routes):
        route = routes[path]
        flags = [flag for flag in ("raw_environ", "raw_response") if getattr(route, flag)]
        suffix = f"  [{', '.join(flags)}]" if flags else ""
        lines.append(f"POST {path}  {route.module}:{route.action}{suffix}")
    return lines
