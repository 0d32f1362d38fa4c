"""What ships: the wheel a deploy builds from this checkout holds every module and every file
of the kit, and the host agent runs alone on a host's Python.

A module missing from the wheel shows only on a deployed host, as ModuleNotFoundError;
the kit's programs on a host (supervise.py, Supervisor's client, and agent.py) are each
uploaded as one file and must need nothing but the standard library (and Supervisor, which
they import only where they talk to it).
"""

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from apiphant.deploy import artifacts
from tests.servers import REPO

AGENTS = [REPO / "apiphant" / "deploy" / name for name in ("supervise.py", "agent.py")]


def test_the_wheel_holds_every_module_and_every_kit_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # its own wheel cache: built here
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    wheel = artifacts.build_from_checkout(tmp_path / "work", REPO)
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {str(p.relative_to(REPO)) for p in (REPO / "apiphant").rglob("*.py")}
    wanted |= {"apiphant/deploy_kit/" + str(p.relative_to(REPO / "deploy"))
               for folder in ("templates", "roles") for p in (REPO / "deploy" / folder).iterdir()
               if p.is_file()}  # fmt: skip
    missing = sorted(wanted - names)
    assert not missing, f"not in the wheel: {missing}"


@pytest.mark.parametrize("agent", AGENTS, ids=lambda path: path.name)
def test_the_host_agent_runs_alone_on_the_standard_library(tmp_path: Path, agent: Path) -> None:
    alone = tmp_path / agent.name
    alone.write_bytes(agent.read_bytes())
    done = subprocess.run([sys.executable, "-I", str(alone), "--help"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    tree = ast.parse(agent.read_text())
    top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import)
           for alias in node.names}  # fmt: skip
    top |= {(node.module or "").split(".")[0] for node in tree.body
            if isinstance(node, ast.ImportFrom)}  # fmt: skip
    outside = sorted(name for name in top if name not in sys.stdlib_module_names)
    assert not outside, f"{agent.name} imports at its top what a host may not have: {outside}"


def test_the_documented_install_brings_pytest(tmp_path: Path) -> None:
    """`pytest tests`, which `apiphant new` and the docs suggest, works after the install
    they document (`apiphant[deploy]`): the extra holds pytest, pinned like the others."""
    from setuptools._distutils.core import run_setup

    extras = run_setup(str(REPO / "setup.py"), stop_after="init").extras_require
    pins = [req for req in extras["deploy"] if req.startswith("pytest")]
    assert pins and all(">=" in pin and "<" in pin for pin in pins), extras["deploy"]
    assert set(extras["deploy"]) <= set(extras["test"])
    made = subprocess.run([sys.executable, "-m", "apiphant", "new", "shop", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr
    said = {"apiphant new": made.stdout,
            "shop/README.md": (tmp_path / "shop" / "README.md").read_text()}
    for page in ("README.md", "docs/testing.md"):
        said[page] = (REPO / page).read_text()
    for where, text in said.items():
        assert "pytest" in text and "apiphant[deploy]" in text, where
