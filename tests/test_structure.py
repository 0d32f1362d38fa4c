"""The shape of the house, checked: no module too long to read in a sitting, no import cycle,
and the layers that must stay pure.

Each allowlist below names what the redesign has still to mend; a move that mends one
removes its line, and nothing may be added to them.
"""

import ast
import subprocess
import sys
from pathlib import Path

from tests.servers import REPO

PACKAGE = REPO / "apiphant"
MAX_LINES = 450

#: Modules still over MAX_LINES, and their owners in the redesign.
OVERSIZED: set[str] = set()

#: Import cycles still there, each as the sorted set of its modules.
CYCLES: set[frozenset[str]] = set()


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module of ours an import names: itself, or its nearest parent we have."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _skipped(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` blocks and module-level ``__getattr__`` (lazy re-exports and
    compatibility shims) import for type checkers or on demand only."""
    if isinstance(node, ast.If):
        test = node.test
        return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    return isinstance(node, ast.FunctionDef) and node.name == "__getattr__"


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ours that ``name`` imports, at any depth of its code (a function-level
    import is a dependency too)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _skipped(node):
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(_resolve(alias.name, known) or "")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found.add(_resolve(f"{base}.{alias.name}", known) or "")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard("")
    found.discard(name)
    # a module's own package is imported on the way to it: not an edge of its making
    return {f for f in found if not name.startswith(f + ".")}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan's)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[frozenset[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on.add(node)
        for other in edges.get(node, ()):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                on.discard(top)
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def test_no_module_is_too_long_to_read_in_a_sitting() -> None:
    long = {str(path.relative_to(REPO)): len(path.read_text().splitlines())
            for path in modules().values()}  # fmt: skip
    over = sorted(f"{name} ({lines})" for name, lines in long.items()
                  if lines > MAX_LINES and name not in OVERSIZED)  # fmt: skip
    assert not over, f"over {MAX_LINES} lines: {', '.join(over)}"
    mended = sorted(name for name in OVERSIZED if long.get(name, 0) <= MAX_LINES)
    assert not mended, f"within {MAX_LINES} lines now: take them off OVERSIZED: {mended}"


def test_no_import_cycle() -> None:
    found = set(cycles(graph()))
    new = [sorted(c) for c in found - CYCLES]
    assert not new, f"import cycles: {new}"
    gone = [sorted(c) for c in CYCLES - found]
    assert not gone, f"no longer cycles: take them off CYCLES: {gone}"


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_protocol_code_is_pure() -> None:
    """The HTTP parser and the response heads are bytes in, bytes out: tested without
    sockets, and never able to block the hub."""
    known = modules()
    for name in ("apiphant.http.parser", "apiphant.http.response"):
        tree = ast.parse(known[name].read_text())
        named = {alias.name.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.Import) for alias in node.names}  # fmt: skip
        named |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom)}  # fmt: skip
        assert not named & {"socket", "gevent"}, (name, named & {"socket", "gevent"})


#: What http/ may import of the rest of apiphant. Besides the plan's two: wsgi.py's
#: context.LOCAL_ADDRESS (the environ key /health reads: context.py's to move), and
#: connection.py's reporting (the report of an application's 500).
HTTP_MAY_IMPORT = {"apiphant.errors", "apiphant.settings.schema", "apiphant.context",
                   "apiphant.runtime.reporting"}  # fmt: skip


def test_the_http_server_stands_alone() -> None:
    """http/ serves any WSGI application: it reaches apiphant's App through
    http.protocol, never by importing it; the App uses http's pure response heads, never
    its connections or server."""
    edges = graph()
    for name, imported in edges.items():
        if name.startswith("apiphant.http."):
            outside = {m for m in imported if not m.startswith("apiphant.http")}
            assert outside <= HTTP_MAY_IMPORT, (name, outside - HTTP_MAY_IMPORT)
    assert not edges["apiphant.app"] & {"apiphant.http.connection", "apiphant.http.server"}


def test_the_command_line_loads_no_gevent_until_it_serves() -> None:
    """``apiphant --help``, ``apiphant new`` and the deploy's config reading stay fast and
    patch nothing: gevent is imported only by what serves or schedules."""
    code = ("import sys, apiphant, apiphant.cli, apiphant.deploy.config; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'gevent'))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _only_reexports(path: Path) -> bool:
    """A module with nothing of its own: imports, ``__all__`` and the like, aliases of
    imported names, and at most a ``__main__`` block."""
    body = ast.parse(path.read_text()).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.Assign) and all(
            isinstance(t, ast.Name) and (t.id.startswith("__") or isinstance(node.value, ast.Name))
            for t in node.targets
        ):
            continue
        main = ast.Compare(ast.Name("__name__"), [ast.Eq()], [ast.Constant("__main__")])
        if isinstance(node, ast.If) and ast.dump(node.test) == ast.dump(main):
            continue
        return False
    return True


def test_no_module_only_reexports_unless_products_import_it_there() -> None:
    """A module that only passes on names from elsewhere is a path to keep for products
    (``compat.OLD_PATHS``, each tested by test_upgrade_from_02), or one to delete once its
    importers name the real home. A package's ``__init__`` is its API, and may."""
    from apiphant.compat import OLD_PATHS

    facades = sorted(name for name, path in modules().items()
                     if path.name != "__init__.py" and _only_reexports(path))  # fmt: skip
    assert facades, "the check finds none: apiphant.server is one"
    unlisted = [name for name in facades if name not in OLD_PATHS]
    assert not unlisted, f"only re-exports, no product's path: import from the home: {unlisted}"
