"""The `apiphant` command: clear one-line errors, routes, reload."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.servers import MYPRODUCT, free_port, serving, start


def run(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "apiphant", *args], capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in last, result.stderr
    assert "Traceback" not in result.stderr or fragments[0] == "cannot import"


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("nowhere", "127.0.0.1:8001"), ("no such product folder: nowhere",)),
        ((str(MYPRODUCT), "127.0.0.1"), ("bad address", "HOST:PORT")),
        ((str(MYPRODUCT), "127.0.0.1:http"), ("bad address", "port")),
        ((str(MYPRODUCT), "127.0.0.1:70000"), ("bad address", "port")),
        ((str(MYPRODUCT), "::1:8001"), ("bad address", "brackets")),
        ((str(MYPRODUCT), "256.1.1.1:8001"), ("cannot listen on 256.1.1.1:8001",)),
    ],
)
def test_command_line_errors_are_one_line(args, fragments):
    assert_one_line_error(run(*args), *fragments)


def test_no_api_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run(str(tmp_path / "empty"), "127.0.0.1:8001"), "no api/ folder")


def test_port_already_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(str(MYPRODUCT), f"127.0.0.1:{port}")
    assert_one_line_error(result, f"cannot listen on 127.0.0.1:{port}", "in use")


def test_bad_option_value_names_the_option():
    result = run(str(MYPRODUCT), "127.0.0.1:8001", "--max-body", "lots")
    assert result.returncode == 2 and "--max-body" in result.stderr


def test_import_error_stops_start_up_with_file_and_traceback(make_product):
    root = make_product({"api/v0/bad.py": "def read(r):\n    return {}\nundefined_name\n"},
                        name="badimport")
    result = run(str(root), f"127.0.0.1:{free_port()}")
    assert result.returncode != 0
    assert "NameError: name 'undefined_name' is not defined" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"apiphant: {root / 'api/v0/bad.py'}: cannot import badimport.api.v0.bad")


def test_routes_lists_every_route():
    result = run("routes", str(MYPRODUCT))
    assert result.returncode == 0
    assert "POST /api/v0/echo/read  myproduct.api.v0.echo:read" in result.stdout.splitlines()
    assert "POST /api/v0/users/settings/update  myproduct.api.v0.users.settings:update" in (
        result.stdout)


def test_help_lists_the_options():
    result = run("--help")
    for option in ("--max-body", "--reload", "--access-log", "--drain-timeout"):
        assert option in result.stdout


def test_reload_restarts_when_a_handler_changes(make_product, tmp_path):
    root = make_product({"api/v0/t.py": "def read(r):\n    return {'v': 1}\n"}, name="reloadme")
    with serving(root, tmp_path, "--reload") as live:
        url = f"{live.url}/api/v0/t/read"
        assert requests.post(url, json={}).json() == {"v": 1}
        time.sleep(1.1)  # a new mtime second for file systems with coarse times
        (root / "api/v0/t.py").write_text("def read(r):\n    return {'v': 2}\n")
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.post(url, json={}, timeout=2).json() == {"v": 2}:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, live.log()
            time.sleep(0.2)
        assert "Reloading:" in live.log()
    assert live.process.returncode == 0


def test_reload_child_stops_when_the_reloader_is_killed(make_product, tmp_path):
    root = make_product({"api/v0/t.py": "def read(r):\n    return {}\n"}, name="orphan")
    live = start(root, tmp_path, "--reload")
    try:
        children = Path(f"/proc/{live.process.pid}/task/{live.process.pid}/children")
        child = int(children.read_text().split()[0])
        live.process.kill()
        live.process.wait(5)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and "zombie" not in _state(child):
            assert time.monotonic() < deadline, "the server outlived its reloader"
            time.sleep(0.1)
    finally:
        live.stop()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"
