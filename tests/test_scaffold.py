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
    assert "migrations/0001_create_users.sql" in targets  # the users example's table
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


def test_new_product_is_a_repository_that_tests_and_renders_itself(tmp_path):
    """What a new user gets: the product's own tests and test runner pass, and inside it
    `fab` needs no --product (it is the repository's)."""
    created = subprocess.run([sys.executable, "-m", "apiphant", "new", "shop", str(tmp_path)],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
    assert created.returncode == 0, created.stderr
    folder = tmp_path / "shop"
    for name in ("fabfile.py", "deploy.toml", "README.md", ".gitignore", "test.sh", "test.py",
                 "requirements.txt", "tests/test_api.py"):  # fmt: skip
        assert (folder / name).is_file(), name
    assert (folder / "test.sh").stat().st_mode & 0o100
    assert "*.secrets.env" in (folder / ".gitignore").read_text()
    env = _env_with_free_port()
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]
    own = subprocess.run(pytest, cwd=folder, capture_output=True, text=True, timeout=120, env=env)
    assert own.returncode == 0 and "2 passed" in own.stdout, own.stdout + own.stderr
    smoke = subprocess.run(["./test.sh"], cwd=folder, capture_output=True, text=True,
                           timeout=60, env=env)  # fmt: skip
    assert smoke.returncode == 0 and "'server': 'shop'" in smoke.stdout, smoke.stderr
    fab = [sys.executable, "-m", "fabric"]
    listed = subprocess.run([*fab, "--list"], cwd=folder, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    for task in ("deploy", "rollback", "render", "run", "maintenance", "history", "status"):
        assert f"  {task} " in listed.stdout, listed.stdout
    out = tmp_path / "rendered"
    rendered = subprocess.run([*fab, "render", "--out", str(out)], cwd=folder,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    assert "server_name api.example.com;" in (out / "web1" / "nginx.conf").read_text()
    assert "[program:shop-api-8001]" in (out / "web1" / "supervisor.conf").read_text()
