"""Literal values in a module's source, read with ``ast``: constants, types, and the
predicates JSON Schema can say (``re.compile(P).fullmatch``, ``lambda n: 1 <= n <= 100``).

Pure: a value is a literal, a module constant made of literals, or a name bound to one by
the caller (a helper's argument); anything else is UNKNOWN, never guessed.
"""

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apiphant.openapi import schemas
from apiphant.openapi.schemas import UNKNOWN, Place, Predicate


@dataclass(frozen=True)
class Regex:
    """``re.compile(PATTERN)`` at a module's top level."""

    pattern: str


@dataclass
class Module:
    """A parsed source file: its top-level functions and literal constants."""

    tree: ast.Module
    functions: dict[str, ast.FunctionDef]
    constants: dict[str, Any]


def parse(filename: str) -> Module | None:
    try:
        tree = ast.parse(Path(filename).read_text(encoding="utf-8"), filename)
    except (OSError, SyntaxError, ValueError):
        return None
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    module = Module(tree, functions, {})
    for statement in tree.body:
        if isinstance(statement, ast.Assign):
            for target in statement.targets:
                _bind(module.constants, target, statement.value, module, {})
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            _bind(module.constants, statement.target, statement.value, module, {})
    return module


def definition(module: Module, name: str, line: int) -> ast.FunctionDef | None:
    """The ``def`` of a function by its name and first line (a decorator's, if any)."""
    found = module.functions.get(name)
    if found is not None:
        return found
    for node in ast.walk(module.tree):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            if line in (first, node.lineno):
                return node
    return None


def parameters(definition: ast.FunctionDef | ast.Lambda) -> list[str]:
    args = definition.args
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    every += [a for a in (args.vararg, args.kwarg) if a is not None]
    return [a.arg for a in every]


def _bind(env: dict[str, Any], target: ast.expr, value: ast.expr, module: Module,
          scope: dict[str, Any]) -> None:  # fmt: skip
    """``NAME = literal`` (and ``A, B = 1, 2``) into ``env``, for constants."""
    if isinstance(target, ast.Name):
        env[target.id] = evaluate(value, module, scope)
    elif isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(
            target.elts) == len(value.elts):  # fmt: skip
        for each_target, each_value in zip(target.elts, value.elts, strict=True):
            _bind(env, each_target, each_value, module, scope)


#: The Python types ``valid_type`` may name, as code spells them.
TYPE_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "dict": dict, "list": list,
              "AttrDict": dict}  # fmt: skip


def evaluate(node: ast.expr, module: Module, env: dict[str, Any]) -> Any:
    """The value of an expression made of literals, constants, types and readable
    predicates; UNKNOWN for anything else."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in env:
            value = env[node.id]
            return UNKNOWN if isinstance(value, Place) else value
        if node.id in module.constants:
            return module.constants[node.id]
        return TYPE_NAMES.get(node.id, UNKNOWN)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        items = [evaluate(each, module, env) for each in node.elts]
        if any(item is UNKNOWN for item in items):
            return UNKNOWN
        maker = {ast.Tuple: tuple, ast.List: list, ast.Set: frozenset}[type(node)]
        try:
            return maker(items)
        except TypeError:  # an unhashable item in a set
            return UNKNOWN
    if isinstance(node, ast.Dict):
        keys = [evaluate(k, module, env) if k is not None else UNKNOWN for k in node.keys]
        values = [evaluate(v, module, env) for v in node.values]
        if any(x is UNKNOWN for x in (*keys, *values)):
            return UNKNOWN
        return dict(zip(keys, values, strict=True))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = evaluate(node.operand, module, env)
        return -value if type(value) in (int, float) else UNKNOWN
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return _call_value(node, module, env)
    if isinstance(node, ast.Call) and dotted(node.func) == "re.compile":
        return _regex(node, module, env)
    if isinstance(node, ast.Attribute) and node.attr in ("fullmatch", "match", "search"):
        regex = evaluate(node.value, module, env)
        keywords = schemas.pattern(regex.pattern, node.attr) if isinstance(regex, Regex) else (
            None)  # fmt: skip
        return UNKNOWN if keywords is None else Predicate(keywords, frozenset({"string"}))
    if isinstance(node, ast.Lambda):
        return _lambda(node, module, env)
    return UNKNOWN


def _call_value(node: ast.Call, module: Module, env: dict[str, Any]) -> Any:
    name = node.func.id  # type: ignore[attr-defined]
    if name == "type" and len(node.args) == 1 and not node.keywords:
        return type(None) if evaluate(node.args[0], module, env) is None else UNKNOWN
    if name in ("frozenset", "set", "tuple", "list") and len(node.args) <= 1 and not node.keywords:
        items = evaluate(node.args[0], module, env) if node.args else ()
        if items is UNKNOWN:
            return UNKNOWN
        try:
            return (frozenset if name in ("set", "frozenset") else tuple if name == "tuple"
                    else list)(items)  # fmt: skip
        except TypeError:
            return UNKNOWN
    return UNKNOWN


def _regex(node: ast.Call, module: Module, env: dict[str, Any]) -> Any:
    if len(node.args) != 1 or node.keywords:
        return UNKNOWN  # flags change what the pattern means
    pattern = evaluate(node.args[0], module, env)
    return Regex(pattern) if isinstance(pattern, str) else UNKNOWN


#: A comparison's operator, with its variable on the left, as a JSON Schema keyword.
BOUNDS = {ast.Gt: "exclusiveMinimum", ast.GtE: "minimum", ast.Lt: "exclusiveMaximum",
          ast.LtE: "maximum"}  # fmt: skip
FLIPPED = {ast.Gt: ast.Lt, ast.GtE: ast.LtE, ast.Lt: ast.Gt, ast.LtE: ast.GtE}


def _lambda(node: ast.Lambda, module: Module, env: dict[str, Any]) -> Any:
    """``lambda n: 1 <= n <= 100`` (comparisons of its one argument with numbers, joined by
    ``and``) as minimum and maximum; any other predicate is UNKNOWN."""
    names = parameters(node)
    if len(names) != 1:
        return UNKNOWN
    tests = node.body.values if isinstance(node.body, ast.BoolOp) and isinstance(
        node.body.op, ast.And) else [node.body]  # fmt: skip
    keywords: dict[str, Any] = {}
    for test in tests:
        if not isinstance(test, ast.Compare):
            return UNKNOWN
        operands = [test.left, *test.comparators]
        for left, op, right in zip(operands, test.ops, operands[1:], strict=False):
            if type(op) not in BOUNDS:
                return UNKNOWN
            if isinstance(left, ast.Name) and left.id == names[0]:
                bound, kind = evaluate(right, module, env), type(op)
            elif isinstance(right, ast.Name) and right.id == names[0]:
                bound, kind = evaluate(left, module, env), FLIPPED[type(op)]
            else:
                return UNKNOWN
            if type(bound) not in (int, float):
                return UNKNOWN
            keywords[BOUNDS[kind]] = bound
    return Predicate(keywords, frozenset({"number", "integer"}))


def dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""
