"""Shared fixtures: the template product, product folders written per test, live servers."""

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.servers import MYPRODUCT, serving, start


@pytest.fixture
def make_product(tmp_path: Path) -> Callable[..., Path]:
    """Write a product folder from {relative path: source} and return its path."""

    made: list[str] = []

    def make(files: dict[str, str], name: str = "prod") -> Path:
        made.append(name)
        root = tmp_path / "products" / name
        (root / "api").mkdir(parents=True, exist_ok=True)
        for relative, source in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
        return root

    yield make
    for name in made:  # the next test may build a product of the same name
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[module]
    parent = str(tmp_path / "products")
    while parent in sys.path:
        sys.path.remove(parent)


@pytest.fixture
def live(tmp_path: Path):
    """The template product served by a real `apiphant` process on loopback."""
    with serving(MYPRODUCT, tmp_path) as server:
        yield server


@pytest.fixture(scope="module")
def strict_worker(tmp_path_factory):
    """One worker for a whole module of bad input, with 1 s header and body deadlines."""
    live = start(
        MYPRODUCT,
        tmp_path_factory.mktemp("strict"),
        "--header-timeout",
        "1",
        "--request-timeout",
        "1",
    )
    yield live
    live.stop()


def pytest_terminal_summary(terminalreporter) -> None:
    """Print the hostile-input and fault figures, when those suites ran."""
    hostile = sys.modules.get("tests.test_hostile")
    figures = getattr(hostile, "FIGURES", None)
    if figures and figures["inputs tried"]:
        terminalreporter.write_sep("-", "hostile input")
        terminalreporter.write_line(", ".join(f"{k}: {v}" for k, v in figures.items()))
    faults = getattr(sys.modules.get("tests.test_faults"), "FIGURES", None)
    if faults:
        terminalreporter.write_sep("-", "faults under load")
        for scenario, numbers in faults.items():
            shown = ", ".join(f"{k}: {v}" for k, v in numbers.items())
            terminalreporter.write_line(f"{scenario}: {shown}")
