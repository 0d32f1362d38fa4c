"""Shared fixtures: the template product, product folders written per test, live servers."""

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.servers import MYPRODUCT, SELFCHECK, serving, start


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


@pytest.fixture
def selfcheck_live(tmp_path: Path):
    """apiphant's self-test product served by a real `apiphant` process on loopback."""
    with serving(SELFCHECK, tmp_path) as server:
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


#: Suites that publish the figures RELIABILITY.md quotes, in a module-level FIGURES dict.
FIGURE_SOURCES = {
    "hostile input": "tests.test_hostile",
    "faults under load": "tests.test_faults",
    "one client against a deployment": "tests.test_hardening",
    "deploy under load": "tests.test_deploy_e2e",
    "HTTPS deploy": "tests.test_deploy_tls",
    "several hosts": "tests.test_multihost",
}


def pytest_terminal_summary(terminalreporter) -> None:
    """Print each figures dict whose suite ran: flat, or one line per scenario."""
    for title, module in FIGURE_SOURCES.items():
        figures = getattr(sys.modules.get(module), "FIGURES", None)
        if not figures or not any(figures.values()):
            continue
        terminalreporter.write_sep("-", title)
        if all(isinstance(value, dict) for value in figures.values()):
            for scenario, numbers in figures.items():
                shown = ", ".join(f"{k}: {v}" for k, v in numbers.items())
                terminalreporter.write_line(f"{scenario}: {shown}")
        else:
            terminalreporter.write_line(", ".join(f"{k}: {v}" for k, v in figures.items()))


# A real PostgreSQL for the session (apiphant.db's tests): the fixture products use too.
from apiphant.testing.postgres import postgres  # noqa: E402, F401
