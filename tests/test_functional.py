"""`apiphant.test.test` and `test.sh`: the seed's output line, clear failures, both modes."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from apiphant import scaffold
from apiphant import test as functional
from tests.servers import MYPRODUCT, REPO, SELFCHECK, free_port


@pytest.fixture
def pointed(live, monkeypatch):
    monkeypatch.setitem(functional.config, "url", "")
    monkeypatch.setitem(functional.config, "host", live.host)
    monkeypatch.setitem(functional.config, "port", live.port)
    return live


def test_prints_the_seeds_line(pointed, capsys):
    functional.test("echo", "read", {"hello": "world"}, 200,
                    {"hello": "world", "server": "myproduct"})
    assert capsys.readouterr().out == (
        f"POST http://127.0.0.1:{pointed.port}/api/v0/echo/read {{\"hello\": \"world\"}} --> "
        "200 {'hello': 'world', 'server': 'myproduct'}\n")


def test_mismatch_shows_both_sides(pointed):
    with pytest.raises(AssertionError) as caught:
        functional.test("echo", "read", {"a": 1}, 200, {"a": 2})
    message = str(caught.value)
    assert "expected: 200 {'a': 2}" in message
    assert "received: 200 {'a': 1, 'server': 'myproduct'}" in message


def test_the_line_shows_what_came_back(pointed, capsys):
    with pytest.raises(AssertionError):
        functional.test("echo", "read", {"a": 1}, 200, {"a": 2})
    assert capsys.readouterr().out.endswith(
        "--> 200 {'a': 1, 'server': 'myproduct'}\n")


def test_with_no_server_nothing_claims_an_answer():
    """The line is printed once an answer came: with no server, only "cannot reach"."""
    env = {**os.environ, "APIPHANT_PORT": str(free_port()), "APIPHANT_URL": ""}
    done = subprocess.run([sys.executable, "-c", "from apiphant.test import test\n"
                           "test('echo', 'read', {}, 200, {})"],
                          env=env, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""
    assert "cannot reach http://127.0.0.1:" in done.stderr and "-->" not in done.stderr


def test_pytest_does_not_collect_the_helper(tmp_path):
    """A test module that imports ``test`` (apiphant 0.2's name) has only its own tests."""
    (tmp_path / "test_mine.py").write_text(
        "from apiphant.test import test\n\n\ndef test_mine():\n    assert test\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path / "test_mine.py")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout and "error" not in done.stdout


def test_status_mismatch_fails(pointed):
    with pytest.raises(AssertionError, match="received: 404"):
        functional.test("nothing", "read", None, 200, {})


def test_url_from_the_environment_targets_a_deployment(live):
    result = subprocess.run(
        [sys.executable, "-c",
         "from apiphant.test import test, base_url; print(base_url());"
         "test('echo', 'read', {}, 200, {'server': 'myproduct'})"],
        env={**os.environ, "APIPHANT_URL": live.url + "/"}, capture_output=True, text=True,
        timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == live.url


def smoke(*args: str, port: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "APIPHANT_PORT": str(port or free_port())}
    return subprocess.run([str(REPO / "test.sh"), *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_test_sh_starts_a_server_runs_the_tests_and_stops_it():
    port = free_port()
    result = smoke(port=port)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK:" in result.stdout and "passed" in result.stdout
    with pytest.raises(OSError):
        __import__("socket").create_connection(("127.0.0.1", port), timeout=1)


def test_test_sh_against_a_running_server(live):
    result = smoke(live.url)
    assert result.returncode == 0, result.stdout + result.stderr


def test_test_sh_fails_and_shows_the_server_log(make_product):
    root = make_product({
        "api/v0/t.py": "def read(r):\n    return {'v': 1}\n",
        "test.py": "from apiphant.test import test\ntest('t', 'read', {}, 200, {'v': 2})\n",
    }, name="failing")
    result = smoke("--product", str(root))
    assert result.returncode != 0
    assert "test.sh: tests failed; server log tail:" in result.stderr
    assert "Apiphant is serving failing" in result.stderr


def test_test_sh_when_the_server_cannot_start(make_product):
    root = make_product({"api/v0/t.py": "import nope\n", "test.py": ""}, name="nostart")
    result = smoke("--product", str(root))
    assert result.returncode != 0
    assert "the server exited" in result.stderr and "cannot import" in result.stderr


#: A shell with no virtualenv activated: the system's PATH only, no PYTHON.
BARE = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/bin:/bin"}


def new_product(tmp_path: Path) -> Path:
    """A product as `apiphant new` makes it, in a folder with no .venv of its own."""
    return scaffold.create("shop", tmp_path)


def a_python_with_apiphant(folder: Path) -> Path:
    """``folder/bin/python``: this interpreter (which has apiphant), as a virtualenv's is."""
    python = folder / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return python


def test_sh_says_what_to_do_when_no_python_has_apiphant(tmp_path):
    shop = new_product(tmp_path)
    done = subprocess.run([str(shop / "test.sh")], env=BARE, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and "set PYTHON=" in done.stderr, done.stderr


@pytest.mark.parametrize("where", ["shop/.venv", ".venv", "apiphant on PATH"])
def test_sh_finds_the_python_with_apiphant_without_activation(tmp_path, where):
    shop = new_product(tmp_path)
    env = {**BARE, "APIPHANT_PORT": str(free_port())}
    if where == "apiphant on PATH":
        python = a_python_with_apiphant(tmp_path / "venv")
        (python.parent / "apiphant").write_text(f"#!{python}\n")
        (python.parent / "apiphant").chmod(0o755)
        env["PATH"] = f"{python.parent}:{env['PATH']}"
    else:
        a_python_with_apiphant(tmp_path / where)
    done = subprocess.run([str(shop / "test.sh")], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: 7 passed" in done.stdout


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").exists(),
                    reason="the checkout's .venv (bash .ci/test makes it)")
def test_the_checkouts_test_sh_finds_its_venv():
    done = subprocess.run([str(REPO / "test.sh")], env={**BARE, "APIPHANT_PORT": str(free_port())},
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_self_tests_pass_against_the_selfcheck_fixture():
    result = smoke("--product", str(SELFCHECK))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK:" in result.stdout


def test_the_template_holds_only_what_a_product_should():
    """apiphant's own fixtures live in tests/, not in the product a user copies."""
    assert not (MYPRODUCT / "api" / "v0" / "self.py").exists()
    assert not (MYPRODUCT / "api" / "v0" / "raw.py").exists()
    assert '"self"' not in (MYPRODUCT / "test.py").read_text()


def test_selfcheck_test_py_covers_the_seed_self_tests():
    text = (SELFCHECK / "test.py").read_text()
    for case in ["optional", "default", "required", "valid_value", "valid_type", "valid_length",
                 "max_length", "explain", "return invalid_json_object", "1/0"]:
        assert f'"test": "{case}"' in text


def test_sh_takes_a_free_port_when_the_default_is_serving(tmp_path):
    """`apiphant serve .` listens on the tests' default port; test.sh started beside it still
    starts its own server, on a free port, and says so."""
    default = functional.DEFAULT_PORT
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        holder.bind(("127.0.0.1", default))
        holder.listen(1)
    except OSError:  # something listens there already: the case under test
        holder.close()
    env = {k: v for k, v in os.environ.items() if k not in ("APIPHANT_PORT", "APIPHANT_URL")}
    try:
        done = subprocess.run([str(REPO / "test.sh")], env={**env, "PYTHON": sys.executable},
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    finally:
        holder.close()
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"127.0.0.1:{default} is in use" in done.stderr
    assert f"127.0.0.1:{default}/" not in done.stdout
