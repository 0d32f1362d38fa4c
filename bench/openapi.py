"""What the OpenAPI document costs a worker at start-up, for a product of 100 routes.

    python -m bench.openapi [--routes 100] [--repeat 7]

Writes a product of 25 targets with create, read, update and delete each (every handler
with five field() calls, one through a helper with literal arguments, and a raise), imports
its routes once (``routing.load``, what every start does anyway), then times
``apiphant.openapi.build`` from a cold reader (every source file parsed again) ``--repeat``
times. Prints the best and the median in milliseconds, and their ratio to ``routing.load``.
The product is removed on the way out.
"""

import argparse
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from apiphant.openapi import build
from apiphant.product import locate
from apiphant.routing import load

TARGET = '''
"""Target {index}: four actions, as a product writes them."""

import re

from apiphant import ApiError, status
from apiphant.validation import field

CODE = re.compile(r"[A-Z]{{3}}-[0-9]{{4}}")
KINDS = frozenset({{"a", "b", "c"}})


def _id(request, required=True):
    return field(request, "id", is_required=required, valid_type=int,
                 valid_value=lambda n: n > 0)


@status(201)
def create(request):
    """Make one."""
    name = field(request, "name", is_required=True, valid_type=str, max_length=40)
    code = field(request, "code", valid_value=CODE.fullmatch)
    kind = field(request, "kind", default_value="a", valid_value=KINDS)
    tags = field(request, "tags", default_value=[], valid_type=list, max_length=5)
    return {{"name": name, "code": code, "kind": kind, "tags": tags}}


def read(request):
    """One by id."""
    found = _id(request)
    if found > 1000:
        raise ApiError(404)
    return {{"id": found}}


def update(request):
    """Change one."""
    found = _id(request)
    name = field(request, "name", valid_type=str, max_length=40)
    for item in field(request, "items", default_value=[], valid_type=list):
        field(item, "sku", is_required=True, valid_type=str, valid_length=8)
    return {{"id": found, "name": name}}


def delete(request):
    """Remove one."""
    return {{"id": _id(request)}}
'''


def write_product(root: Path, routes: int) -> Path:
    folder = root / "benchdocs"
    (folder / "api" / "v1").mkdir(parents=True)
    for path in (folder / "__init__.py", folder / "api" / "__init__.py",
                 folder / "api" / "v1" / "__init__.py"):  # fmt: skip
        path.write_text("")
    for index in range(routes // 4):
        (folder / "api" / "v1" / f"t{index:03d}.py").write_text(
            textwrap.dedent(TARGET.format(index=index)))
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.openapi", description=__doc__)
    parser.add_argument("--routes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="apiphant-bench-docs-") as root:
        product = locate(write_product(Path(root), args.routes))
        started = time.perf_counter()
        routes = load(product)
        loading = time.perf_counter() - started
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            document = build(product.name, routes)
            times.append(time.perf_counter() - started)
        assert len(document["paths"]) == len(routes) == args.routes // 4 * 4
    best, median = min(times), statistics.median(times)
    print("| routes | routing.load ms | build ms, best | build ms, median | median / load |")
    print("|---|---|---|---|---|")
    print(f"| {len(routes)} | {loading * 1000:.1f} | {best * 1000:.1f} | {median * 1000:.1f} "
          f"| {median / loading:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
