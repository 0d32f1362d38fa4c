"""`apiphant new`: a working product with its name everywhere, no search-and-replace."""

import subprocess
import sys

import pytest

from apiphant.client import Client
from apiphant.scaffold import ScaffoldError, check_name, create, plan, template_path
from tests.servers import MYPRODUCT, REPO


def test_template_is_the_checkouts_myproduct():
    assert template_path() == MYPRODUCT


def test_plan_renames_paths_and_skips_caches():
    targets = [str(target) for _, target, _ in plan("shop", MYPRODUCT)]
    assert "api/v0/echo.py" in targets and "test.py" in targets
    assert not any("__pycache__" in target or "myproduct" in target for target in targets)


def test_new_product_has_its_name_everywhere_and_serves(tmp_path):
    result = subprocess.run([sys.executable, "-m", "apiphant", "new", "shop", str(tmp_path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "shop"
    assert f"Created {folder}" in result.stdout
    for path in folder.rglob("*"):
        if path.is_file():
            assert "myproduct" not in path.read_text(), path
    sys.path.insert(0, str(tmp_path))
    try:
        answer = Client(folder).post("echo", "read", {"hello": "world"})
        assert answer.json == {"hello": "world", "server": "shop"}
    finally:
        sys.path.remove(str(tmp_path))
        for module in [m for m in sys.modules if m == "shop" or m.startswith("shop.")]:
            del sys.modules[module]
    smoke = subprocess.run([str(REPO / "test.sh"), "--product", str(folder)],
                           capture_output=True, text=True, timeout=60,
                           env={"APIPHANT_PORT": "0", **_env_with_free_port()})
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "'server': 'shop'" in smoke.stdout


def _env_with_free_port() -> dict[str, str]:
    import os

    from tests.servers import free_port

    return {**os.environ, "APIPHANT_PORT": str(free_port()), "PYTHON": sys.executable}


@pytest.mark.parametrize(
    "name",
    ["my-shop", "Shop", "class", "json", "test", "1shop", "", "root", "nobody", "café",
     "requests", "sentry_sdk", "a" * 32],
)  # fmt: skip
def test_bad_names_are_refused(name):
    with pytest.raises(ScaffoldError):
        check_name(name)


def test_existing_folder_is_never_overwritten(tmp_path):
    (tmp_path / "shop").mkdir()
    with pytest.raises(ScaffoldError, match="already exists"):
        create("shop", tmp_path)


def test_command_errors_are_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "apiphant", "new", "my-shop", str(tmp_path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "apiphant new: bad product name 'my-shop': expected an ASCII Python identifier "
        "like shop or my_api"]
