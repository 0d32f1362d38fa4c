"""The top level of the package: what a product imports keeps working wherever its code
moved, and importing apiphant stays light."""

import importlib
import subprocess
import sys
import warnings

import pytest

from apiphant.compat import OLD_PATHS
from tests.servers import REPO


@pytest.mark.parametrize("module", sorted(OLD_PATHS))
def test_every_old_import_path_still_imports(module: str) -> None:
    imported = importlib.import_module(module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 0.2's moved names warn
        for name in OLD_PATHS[module]:
            assert getattr(imported, name) is not None, f"{module}.{name}"


def test_the_moved_testing_modules_are_the_same_objects() -> None:
    """``config.port = ...`` through apiphant.test must reach what ``test()`` reads."""
    import apiphant.client
    import apiphant.smoke
    import apiphant.test
    from apiphant.testing import client, functional, smoke

    assert apiphant.test.config is functional.config and apiphant.test.test is functional.test
    assert apiphant.test.counts is functional.counts
    assert apiphant.client.Client is client.Client and apiphant.smoke.main is smoke.main


def test_python_m_apiphant_smoke_still_runs(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "apiphant.smoke", "--product", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert (done.returncode, done.stderr) == (2, f"test.sh: no test.py in {tmp_path}\n")


def test_importing_the_testing_package_loads_no_functional_test() -> None:
    """apiphant.testing.functional reads the environment and may exit: never by accident."""
    code = "import apiphant.testing, sys; print('apiphant.testing.functional' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=60, env={"APIPHANT_PORT": "abc"})  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "False\n"), done.stderr
    from apiphant import testing
    from apiphant.testing import client, functional, smoke

    assert testing.Client is client.Client and testing.test is functional.test
    assert testing.run_smoke is smoke.run


def test_the_handler_api_is_at_the_top_and_loads_on_first_use() -> None:
    """``import apiphant`` loads no gevent and none of the API; each name, once asked for,
    is its home's own object."""
    import apiphant

    code = ("import sys, apiphant; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('gevent', 'apiphant')))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=60)  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "['apiphant']\n"), done.stderr
    assert apiphant.__all__ == list(apiphant.API)
    for name, home in apiphant.API.items():
        assert getattr(apiphant, name) is getattr(importlib.import_module(home), name), name
        for module in (REPO / "apiphant" / f"{name}.py", REPO / "apiphant" / name):
            assert not module.exists(), f"{name} is also a module"
    assert set(apiphant.API) <= set(dir(apiphant))
    with pytest.raises(AttributeError):
        apiphant.nothing  # noqa: B018


def test_from_apiphant_import_test_is_still_the_module() -> None:
    from apiphant import test
    from apiphant import testing as package

    assert test.__name__ == "apiphant.test" and callable(test.test)
    assert package.__name__ == "apiphant.testing"
