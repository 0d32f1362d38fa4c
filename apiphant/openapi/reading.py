"""What a handler's code says about its request, read with ``ast``: never run.

Each ``field()`` call names a field of the body (or of an object or list item in it), and
its literal options say what the field takes: ``valid_type``, ``valid_value`` (a value, a
set, a ``re.compile(...).fullmatch`` or a ``lambda n: 1 <= n <= 100``), ``valid_length``,
``max_length``, ``is_required``, ``default_value``, ``explain``. A call whose options are not
literals (or module constants, or a helper's literal arguments) is read as a free-form field:
its value is the handler's to check, not guessed. ``request.name`` is a required field too.
A field is required only when every way through the handler reads it: a call inside an
``if``, a loop, a ``try`` or after a conditional ``return`` is optional. ``raise
ApiError(409)`` (and ``Invalid``, ``Missing``) give the statuses an action may answer.
Helpers of the same module are followed with their literal arguments.
"""

import ast
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from apiphant.openapi import schemas
from apiphant.openapi.literals import Module, definition, evaluate, parameters, parse
from apiphant.openapi.schemas import UNKNOWN, Node, Place

#: ``field()``'s parameters, in order (apiphant.validation.field).
FIELD_PARAMETERS = ("request", "field_name", "is_required", "default_value", "valid_value",
                    "valid_type", "valid_length", "max_length", "explain")  # fmt: skip
#: The errors whose status is 400 whatever their arguments.
BAD_REQUESTS = frozenset({"Invalid", "Missing", "BadRequest"})
#: How deep helpers are followed.
MAX_DEPTH = 8
#: Names a request's attribute access never treats as fields: dict's own methods.
DICT_METHODS = frozenset(dir(dict))


@dataclass
class Reading:
    """One action's request as its code says it, and the error statuses it raises."""

    description: str = ""
    body: Node = field(default_factory=Node)
    statuses: set[int] = field(default_factory=set)
    #: Whether the source was found and read at all.
    read: bool = True


class Reader:
    """Reads handlers; each source file is parsed once (``modules``)."""

    def __init__(self) -> None:
        self.modules: dict[str, Module | None] = {}

    def module(self, filename: str) -> Module | None:
        if filename not in self.modules:
            self.modules[filename] = parse(filename)
        return self.modules[filename]

    def handler(self, handler: Callable[..., Any]) -> Reading:
        """The reading of one action's function (its decorators unwrapped)."""
        function = inspect.unwrap(handler)
        code = getattr(function, "__code__", None)
        module = self.module(code.co_filename) if code is not None else None
        found = definition(module, function.__name__, code.co_firstlineno) if (
            module is not None and code is not None) else None  # fmt: skip
        if module is None or found is None:
            return Reading(read=False)
        reading = Reading(ast.get_docstring(found) or "")
        env: dict[str, Any] = {name: UNKNOWN for name in parameters(found)}
        if found.args.args:
            env[found.args.args[0].arg] = Place()
        _Walker(module, reading).body(found.body, env, True, (found.name,))
        return reading

    def statuses(self, function: Callable[..., Any] | None) -> set[int]:
        """The statuses a hook may raise (its fields are not the actions')."""
        if function is None:
            return set()
        reading = self.handler(function)
        return reading.statuses


def _called(node: ast.Call) -> str:
    """The last name of what a call calls: ``field`` for ``validation.field(...)``."""
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(
        func, ast.Attribute) else ""  # fmt: skip


def _covers(certain: Any, place: Place) -> bool:
    """Whether a read at ``place`` happens on every way through: ``certain`` is True, False,
    or, inside a loop over a list, the list's item (what is read of each item is certain
    for every item, though the loop may not run at all)."""
    if isinstance(certain, Place):
        return place.steps[: len(certain.steps)] == certain.steps
    return bool(certain)


def _returns(statements: list[ast.stmt]) -> bool:
    """Whether a block holds a ``return`` of its function (not of a nested one)."""
    stack: list[ast.AST] = list(statements)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Return):
            return True
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                                 ast.ClassDef)):  # fmt: skip
            stack.extend(ast.iter_child_nodes(node))
    return False


class _Walker:
    """Walks one action's statements in order, and its helpers' with their arguments."""

    def __init__(self, module: Module, reading: Reading) -> None:
        self.module = module
        self.reading = reading

    def body(self, statements: list[ast.stmt], env: dict[str, Any], certain: bool,
             stack: tuple[str, ...]) -> None:  # fmt: skip
        for statement in statements:
            self.statement(statement, env, certain, stack)
            if certain and not isinstance(statement, ast.Return) and _returns([statement]):
                certain = False  # what follows a conditional return may not run

    def statement(self, node: ast.stmt, env: dict[str, Any], certain: bool,
                  stack: tuple[str, ...]) -> None:  # fmt: skip
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            if node.value is None:
                return
            found = self.expression(node.value, env, certain, stack)
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                self.assign(target, node.value, found, env)
        elif isinstance(node, ast.If):
            self.expression(node.test, env, certain, stack)
            self.body(node.body, env, False, stack)
            self.body(node.orelse, env, False, stack)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            item = self.item(self.expression(node.iter, env, certain, stack))
            self.assign(node.target, None, item, env)
            self.body(node.body, env, item if item and _covers(certain, item) else False, stack)
            self.body(node.orelse, env, False, stack)
        elif isinstance(node, ast.While):
            self.expression(node.test, env, certain, stack)
            self.body(node.body + node.orelse, env, False, stack)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                self.expression(item.context_expr, env, certain, stack)
            self.body(node.body, env, certain, stack)
        elif isinstance(node, ast.Try):
            self.body(node.body, env, certain and not node.handlers, stack)
            for handler in node.handlers:
                self.body(handler.body, env, False, stack)
            self.body(node.orelse, env, False, stack)
            self.body(node.finalbody, env, certain, stack)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return  # a nested definition runs only if called: not followed
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.expr):
                    self.expression(child, env, certain, stack)
                elif isinstance(child, ast.stmt):
                    self.statement(child, env, False, stack)

    def assign(self, target: ast.expr, value: ast.expr | None, found: Any,
               env: dict[str, Any]) -> None:  # fmt: skip
        if isinstance(target, ast.Name):
            env[target.id] = found if isinstance(found, Place) else (
                evaluate(value, self.module, env) if value is not None else UNKNOWN)
        elif isinstance(target, (ast.Tuple, ast.List)):
            values = value.elts if isinstance(value, (ast.Tuple, ast.List)) and len(
                value.elts) == len(target.elts) else [None] * len(target.elts)  # fmt: skip
            for each, each_value in zip(target.elts, values, strict=True):
                place = self.place(each_value, env) if each_value is not None else None
                self.assign(each, each_value, place, env)

    @staticmethod
    def item(found: Any) -> Place | None:
        """The item of a list in the body that a loop goes through."""
        return found.child(schemas.ITEM) if isinstance(found, Place) else None

    def place(self, node: ast.expr, env: dict[str, Any]) -> Place | None:
        """Where an expression's object sits in the request, without recording anything."""
        if isinstance(node, ast.Name) and isinstance(env.get(node.id), Place):
            return env[node.id]
        return None

    def expression(self, node: ast.expr, env: dict[str, Any], certain: bool,
                   stack: tuple[str, ...]) -> Any:  # fmt: skip
        """Record what an expression reads; the Place of its value, if it is in the body."""
        if isinstance(node, ast.Name):
            return env.get(node.id) if isinstance(env.get(node.id), Place) else None
        if isinstance(node, ast.Call):
            return self.call(node, env, certain, stack)
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            owner = self.expression(node.value, env, certain, stack)
            if isinstance(owner, Place) and not node.attr.startswith("_") and (
                    node.attr not in DICT_METHODS):  # fmt: skip
                place = owner.child(node.attr)
                self.reading.body.read_attribute(place.steps, _covers(certain, place))
                return place
            return None
        if isinstance(node, ast.Lambda):
            return None  # runs only when called
        if isinstance(node, (ast.IfExp, ast.BoolOp)):
            parts = [node.test, node.body, node.orelse] if isinstance(node, ast.IfExp) else (
                node.values)  # fmt: skip
            for index, part in enumerate(parts):
                self.expression(part, env, certain and index == 0, stack)
            return None
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            inner, each = dict(env), certain
            for generator in node.generators:
                item = self.item(self.expression(generator.iter, inner, each, stack))
                self.assign(generator.target, None, item, inner)
                each = item if item and not generator.ifs and _covers(each, item) else False
            for part in _comprehension_parts(node):
                self.expression(part, inner, each, stack)
            return None
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.expression(child, env, certain, stack)
        return None

    def call(self, node: ast.Call, env: dict[str, Any], certain: bool,
             stack: tuple[str, ...]) -> Place | None:  # fmt: skip
        name = _called(node)
        arguments = [self.expression(a, env, certain, stack) for a in node.args]
        keywords = {k.arg: self.expression(k.value, env, certain, stack) for k in node.keywords}
        if not isinstance(node.func, ast.Name):
            self.expression(node.func, env, certain, stack)
        if name == "field":
            return self.field(node, arguments, keywords, env, certain)
        if name == "ApiError" and node.args:
            status = evaluate(node.args[0], self.module, env)
            if type(status) is int:
                self.reading.statuses.add(status)
        elif name in BAD_REQUESTS:
            self.reading.statuses.add(400)
        elif isinstance(node.func, ast.Name) and name in self.module.functions and (
                name not in stack and len(stack) < MAX_DEPTH):  # fmt: skip
            self.helper(self.module.functions[name], node, arguments, keywords, env, certain,
                        (*stack, name))  # fmt: skip
        return None

    def helper(self, definition: ast.FunctionDef, node: ast.Call, arguments: list[Any],
               keywords: dict[str | None, Any], env: dict[str, Any], certain: bool,
               stack: tuple[str, ...]) -> None:  # fmt: skip
        """A function of the same module, its parameters bound to the call's arguments."""
        inner: dict[str, Any] = {name: UNKNOWN for name in parameters(definition)}
        positional = [*definition.args.posonlyargs, *definition.args.args]
        defaults = definition.args.defaults
        for parameter, default in zip(positional[len(positional) - len(defaults):], defaults,
                                      strict=True):  # fmt: skip
            inner[parameter.arg] = evaluate(default, self.module, {})
        for parameter, default in zip(definition.args.kwonlyargs, definition.args.kw_defaults,
                                      strict=True):  # fmt: skip
            if default is not None:
                inner[parameter.arg] = evaluate(default, self.module, {})
        given = [(p.arg, a, v) for p, a, v in zip(positional, node.args, arguments, strict=False)]
        given += [(k.arg, k.value, keywords[k.arg]) for k in node.keywords if k.arg]
        for name, expression, found in given:
            inner[name] = found if isinstance(found, Place) else evaluate(
                expression, self.module, env)  # fmt: skip
        self.body(definition.body, inner, certain, stack)

    def field(self, node: ast.Call, arguments: list[Any], keywords: dict[str | None, Any],
              env: dict[str, Any], certain: bool) -> Place | None:  # fmt: skip
        """One ``field(request, name, ...)`` call: recorded where its object sits."""
        given: dict[str, ast.expr] = dict(zip(FIELD_PARAMETERS, node.args, strict=False))
        given.update({k.arg: k.value for k in node.keywords if k.arg})
        owner = arguments[0] if arguments else keywords.get("request")
        name = evaluate(given["field_name"], self.module, env) if "field_name" in given else (
            UNKNOWN)  # fmt: skip
        if not isinstance(owner, Place) or not isinstance(name, str):
            return None
        options = {key: evaluate(value, self.module, env) for key, value in given.items()
                   if key not in ("request", "field_name")}  # fmt: skip
        place = owner.child(name)
        self.reading.body.read_field(place.steps, options, _covers(certain, place))
        return place


def _comprehension_parts(node: ast.expr) -> Iterator[ast.expr]:
    for generator in node.generators:  # type: ignore[attr-defined]
        yield from generator.ifs
    if isinstance(node, ast.DictComp):
        yield from (node.key, node.value)
    else:
        yield node.elt  # type: ignore[attr-defined]
