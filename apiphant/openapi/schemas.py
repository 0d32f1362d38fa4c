"""``field()``'s options as JSON Schema, and the tree of fields a request body is read into.

Pure: what ``apiphant.validation.field`` checks, said in JSON Schema's words, so a client
generated from the document sends what the handler accepts. Each rule maps to keywords:
``valid_type`` to ``type`` (``int`` is ``integer``, ``float`` is ``number``, which takes
integers as field() does), a set of allowed values to ``enum``, one value to ``const``,
lengths to ``minLength``/``maxLength`` (or ``*Items``, ``*Properties``: field() measures
strings, lists and objects alike), a regular expression to ``pattern``, a comparison to
``minimum``/``maximum``.
"""

import json
import re
from dataclasses import dataclass, field
from typing import Any

#: The step of a path that is a list's item (``items[].id``).
ITEM = "[]"
#: What a free-form field says: its value is checked by the handler, not read.
FREE = "checked by the handler's own code, which the document does not read"


class _Unknown:
    """A value static reading cannot know."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


@dataclass(frozen=True)
class Place:
    """Where an object sits in the request body: the names (and ``ITEM`` for a list's
    item) from the body down."""

    steps: tuple[str, ...] = ()

    def child(self, name: str) -> "Place":
        return Place((*self.steps, name))


@dataclass(frozen=True)
class Predicate:
    """A ``valid_value`` function read as JSON Schema keywords, and the JSON types it can take
    at all (a comparison refuses a string: it cannot judge it)."""

    keywords: dict
    types: frozenset[str]


#: The JSON types of the Python types field() checks by.
JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", dict: "object",
              list: "array", type(None): "null"}  # fmt: skip
#: What has a length, and the keywords that bound it.
LENGTHS = {"string": ("minLength", "maxLength"), "array": ("minItems", "maxItems"),
           "object": ("minProperties", "maxProperties")}  # fmt: skip


#: What Python's ``\s`` matches in a str pattern, spelled for any regex engine: JSON
#: Schema's (ECMA-262) ``\s`` leaves out some (\x1c-\x1f, \x85).
PYTHON_SPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: Escapes whose meaning is Python's own (Unicode \d and \w, \A, \Z...), and syntax only
#: Python reads: a pattern with one is not translated (its field is free-form).
PYTHON_ONLY = re.compile(r"\\[dDwWbBAZ]|\(\?P|\(\?[aiLmsux]")


def _portable(regex: str) -> str | None:
    """``regex`` as JSON Schema reads it with Python's meaning, or None when it cannot say."""
    if PYTHON_ONLY.search(regex.replace("\\\\", "")):
        return None
    out, in_class, index = [], False, 0
    while index < len(regex):
        char = regex[index]
        if char == "\\" and index + 1 < len(regex):
            escaped = regex[index + 1]
            if escaped == "s":
                out.append(PYTHON_SPACE if in_class else f"[{PYTHON_SPACE}]")
            elif escaped == "S":
                if in_class:
                    return None
                out.append(f"[^{PYTHON_SPACE}]")
            else:
                out.append(char + escaped)
            index += 2
            continue
        if char == "[" and not in_class:
            in_class = True
            out.append(char)
            index += 1
            for opening, spelled in (("^", "^"), ("]", "\\]")):  # a ] first is itself
                if regex.startswith(opening, index):
                    out.append(spelled)
                    index += 1
            continue
        if char == "]" and in_class:
            in_class = False
        out.append(char)
        index += 1
    return "".join(out)


def pattern(regex: str, how: str) -> dict[str, str] | None:
    """``re.compile(regex).fullmatch`` (``match``, ``search``) as JSON Schema's ``pattern``,
    which searches: anchored as the method anchors; None when it is Python's own."""
    portable = _portable(regex)
    if portable is None:
        return None
    if how == "fullmatch":
        return {"pattern": f"^(?:{portable})$"}
    if how == "match":
        return {"pattern": f"^(?:{portable})"}
    return {"pattern": portable}


def _json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _types(valid_type: Any) -> set[str] | None:
    """The JSON types ``valid_type`` allows; None for no check; UNKNOWN for a class JSON
    does not have."""
    if valid_type is None:
        return None
    found = set()
    for each in valid_type if isinstance(valid_type, tuple) else (valid_type,):
        if each not in JSON_TYPES:
            return UNKNOWN
        found.add(JSON_TYPES[each])
    return found


def field_schema(options: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """One field() call's options as (JSON Schema, free-form): an option that is not a
    literal makes the field free-form, its value left to the handler."""
    explain = options.get("explain", "")
    described = {"description": explain} if isinstance(explain, str) and explain else {}
    rules = {k: options.get(k) for k in ("valid_type", "valid_value", "valid_length",
                                         "max_length")}  # fmt: skip
    types = _types(rules["valid_type"])
    value = rules["valid_value"]
    if UNKNOWN in rules.values() or types is UNKNOWN or (
            value is not None and not isinstance(value, Predicate) and not _json(
                sorted(value, key=repr) if isinstance(value, frozenset) else value)):
        return {"description": f"{explain}; {FREE}" if described else FREE}, True
    schema: dict[str, Any] = {}
    if isinstance(value, Predicate):
        types = set(value.types) if types is None else types & value.types
        schema.update(value.keywords)
    elif isinstance(value, frozenset):
        schema["enum"] = sorted(value, key=lambda v: json.dumps(v, sort_keys=True))
    elif value is not None:
        schema["const"] = value
    lengths = [(n, k) for n, k in ((rules["valid_length"], "exact"), (rules["max_length"],
                                                                      "max")) if n is not None]
    if lengths:
        measured = set(LENGTHS)
        types = measured if types is None else types & measured
    for count, kind in lengths:
        for json_type in sorted(types or ()):
            low, high = LENGTHS[json_type]
            schema[high] = count
            if kind == "exact":
                schema[low] = count
    default = options.get("default_value")
    if default is not None and default is not UNKNOWN and _json(default) and not options.get(
            "is_required"):  # fmt: skip
        schema["default"] = default
    return {**_typed(types), **schema, **described}, False


def _typed(types: set[str] | None) -> dict[str, Any]:
    if types is None:
        return {}
    if "number" in types:
        types = types - {"integer"}
    if not types:
        return {"not": {}}  # no value passes every rule
    ordered = sorted(types)
    return {"type": ordered[0] if len(ordered) == 1 else ordered}


@dataclass
class Node:
    """A value of the request as the handler reads it: the body, a field, a list's item."""

    schema: dict[str, Any] | None = None
    required: bool = False
    free: bool = False
    #: Its fields by name, and its list's item under ITEM.
    children: dict[str, "Node"] = field(default_factory=dict)
    #: A field of it is required: it must be an object.
    is_object: bool = False

    def at(self, steps: tuple[str, ...]) -> "Node":
        node = self
        for step in steps:
            node = node.children.setdefault(step, Node())
        return node

    def read_field(self, steps: tuple[str, ...], options: dict[str, Any], certain: bool) -> None:
        """A field() call at ``steps``: the first call says the rules, any certain call with
        ``is_required=True`` makes it required."""
        node = self.at(steps)
        if node.schema is None:
            node.schema, node.free = field_schema(options)
        if certain and options.get("is_required") is True:
            self.require(steps)

    def read_attribute(self, steps: tuple[str, ...], certain: bool) -> None:
        """``request.name``: a missing one is a 400, as a required field's."""
        node = self.at(steps)
        if node.schema is None:
            node.schema = {}
        if certain:
            self.require(steps)

    def require(self, steps: tuple[str, ...]) -> None:
        """A required field, and what holds it: an object, present itself unless it is a
        list's item (an absent object reads as absent fields, a missing required one)."""
        for depth in range(len(steps), 0, -1):
            self.at(steps[: depth - 1]).is_object = True
            if steps[depth - 1] == ITEM:
                return
            self.at(steps[:depth]).required = True

    def json_schema(self) -> dict[str, Any]:
        schema = dict(self.schema or {})
        if self.is_object:
            kind = schema.get("type")
            if kind is None:
                schema = {"type": "object", **schema}
            elif isinstance(kind, list) and "object" in kind:
                schema["type"] = "object"
        named = {k: v for k, v in self.children.items() if k != ITEM}
        if named:
            schema["properties"] = {name: node.json_schema() for name, node in named.items()}
            required = [name for name, node in named.items() if node.required]
            if required:
                schema["required"] = required
        if ITEM in self.children:
            schema["items"] = self.children[ITEM].json_schema()
        return schema
