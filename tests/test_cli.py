"""The `apiphant` command: clear one-line errors, routes, reload."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.servers import MYPRODUCT, free_port, serving, start


def test_serve_listens_by_default_where_the_tests_call():
    """`apiphant serve shop` and shop/test.py (apiphant.test, test.sh) meet on one port."""
    from apiphant import cli
    from apiphant import test as functional
    from apiphant.settings.values import parse_address

    default = parse_address(cli.parser().parse_args(["serve", "shop"]).address)
    assert default == (functional.config.host, functional.DEFAULT_PORT)


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


def test_import_error_stops_start_up_with_one_line(make_product):
    root = make_product({"api/v0/bad.py": "def read(r):\n    return {}\nundefined_name\n"},
                        name="badimport")
    result = run(str(root), f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert result.stderr.strip() == (f"apiphant: cannot import {root / 'api/v0/bad.py'}:3: "
                                     "NameError: name 'undefined_name' is not defined")


def test_import_error_shows_the_traceback_with_debug(make_product):
    root = make_product({"api/v0/bad.py": "undefined_name\n"}, name="debugimport")
    result = run("routes", str(root), "--debug")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("apiphant: cannot import ")


def test_routes_with_a_broken_handler_is_one_line(make_product):
    root = make_product({"api/v0/bad.py": "import nope_not_here\n"}, name="badroutes")
    result = run("routes", str(root))
    assert result.returncode == 1
    assert result.stderr == (f"apiphant: cannot import {root / 'api/v0/bad.py'}:1: "
                             "ModuleNotFoundError: No module named 'nope_not_here'\n")


def test_an_async_handler_stops_start_up_with_one_line_and_exit_2(make_product):
    root = make_product({"api/v0/late.py": "async def create(request):\n    return {}\n"},
                        name="asyncstart")
    for args in (("routes", str(root)), (str(root), f"127.0.0.1:{free_port()}")):
        result = run(*args)
        assert (result.returncode, result.stderr) == (2, (
            f"apiphant: {root / 'api/v0/late.py'}:1: create is async def; apiphant runs "
            "handlers on gevent, which needs no async: write def create(request)\n"))


ENV_ERRORS = [
    ({"APIPHANT_LOG_LEVEL": "bogus"}, ("routes", str(MYPRODUCT)),
     "apiphant: APIPHANT_LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, "
     "got 'bogus'"),
    ({"APIPHANT_LOG_FORMAT": "xml"}, ("serve", str(MYPRODUCT)),
     "apiphant: APIPHANT_LOG_FORMAT: expected one of text, json, got 'xml'"),
    ({"APIPHANT_CORS_ORIGINS": "app.example.com"}, ("serve", str(MYPRODUCT)),
     "apiphant: APIPHANT_CORS_ORIGINS: expected an origin like https://app.example.com "
     "(scheme, host, port; no path), or *, got 'app.example.com'"),
    ({"APIPHANT_TRUSTED_PROXIES": "nginx"}, ("serve", str(MYPRODUCT)),
     "apiphant: APIPHANT_TRUSTED_PROXIES: expected an IP address like 127.0.0.1, got 'nginx'"),
    ({"APIPHANT_LOG_LEVEL": "bogus"}, ("background", str(MYPRODUCT)),
     "apiphant background: APIPHANT_LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR, "
     "CRITICAL, got 'bogus'"),
]


@pytest.mark.parametrize(("env", "args", "line"), ENV_ERRORS)
def test_bad_environment_values_are_one_line_and_exit_2(env, args, line):
    result = subprocess.run([sys.executable, "-m", "apiphant", *args], capture_output=True,
                            text=True, timeout=20, env={**os.environ, **env})
    assert (result.returncode, result.stderr) == (2, line + "\n")


ARGUMENT_ERRORS = [
    (("serve", str(MYPRODUCT), "http://127.0.0.1:8001"),
     "apiphant: bad address 'http://127.0.0.1:8001': expected HOST:PORT, no scheme or path, "
     "like 127.0.0.1:8001"),
    (("new", "requests"), "apiphant new: bad product name 'requests': it would shadow the "
     "module requests"),
    (("new", "routes", "."), "apiphant new: bad product name 'routes': it is the name of the "
     "command 'apiphant routes'"),
    (("serve",), "apiphant serve: the following arguments are required: product "
     "(see apiphant serve -h)"),
    (("serve", str(MYPRODUCT), "--max-body", "lots"), "apiphant serve: argument --max-body: "
     "expected a size like 1048576, 512K or 1M, got 'lots' (see apiphant serve -h)"),
    (("serve", str(MYPRODUCT), "--cors-origin", "*", "--cors-credentials"),
     "apiphant: --cors-origin: '*' allows any origin, which browsers refuse with credentials: "
     "list the origins instead"),
    (("routes", "nowhere"), "apiphant: no such product folder: nowhere"),
    (("nowhere", "127.0.0.1:8001"), "apiphant: no such product folder: nowhere"),
    (("--frobnicate",), "apiphant: unrecognized arguments: --frobnicate (see apiphant -h)"),
]


@pytest.mark.parametrize(("args", "line"), ARGUMENT_ERRORS)
def test_bad_arguments_are_one_line_and_exit_2(args, line, tmp_path):
    result = subprocess.run([sys.executable, "-m", "apiphant", *args], capture_output=True,
                            text=True, timeout=20, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, line + "\n")


def test_version_and_help_on_each_command():
    from apiphant import __version__

    assert run("--version").stdout == f"apiphant {__version__}\n"
    for command in ("serve", "routes", "new", "background"):
        result = run(command, "-h")
        assert result.returncode == 0 and "usage:" in result.stdout, command
    assert all(c in run("-h").stdout for c in ("serve", "routes", "new", "background"))


def test_test_without_a_server_is_one_line():
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-c", "from apiphant.test import test\ntest('echo', 'read', {}, 200, {})"],
        capture_output=True, text=True, timeout=30,
        env={**os.environ, "APIPHANT_PORT": str(port), "APIPHANT_URL": ""})
    assert result.returncode == 1
    assert result.stderr == f"cannot reach http://127.0.0.1:{port}: is the server running?\n"


def test_a_bad_port_for_test_is_one_line():
    result = subprocess.run([sys.executable, "-c", "import apiphant.test"], capture_output=True,
                            text=True, timeout=30, env={**os.environ, "APIPHANT_PORT": "abc"})
    assert (result.returncode, result.stderr) == (
        2, "apiphant.test: APIPHANT_PORT: expected a port number from 1 to 65535, got 'abc'\n")


def test_serve_subcommand_and_the_seeds_form_both_serve(tmp_path):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "apiphant", "serve", str(MYPRODUCT),
                                f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        from tests.servers import wait_for_port

        wait_for_port("127.0.0.1", port, process)
        answer = requests.post(f"http://127.0.0.1:{port}/api/v0/echo/read", json={})
        assert answer.json() == {"server": "myproduct"}
    finally:
        process.terminate()
        process.wait(15)


def test_background_subcommand_runs_the_tasks(make_product, tmp_path):
    root = make_product({"api/background.py": "from apiphant.background import seconds\n"
                         "@seconds(60)\ndef tick():\n    print('tick', flush=True)\n"},
                        name="bgsub")
    process = subprocess.Popen([sys.executable, "-m", "apiphant", "background", str(root)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout.readline().startswith("INFO at background.main")
    finally:
        process.terminate()
        process.wait(15)


def test_routes_lists_every_route():
    result = run("routes", str(MYPRODUCT))
    assert result.returncode == 0
    assert "POST /api/v0/echo/read  myproduct.api.v0.echo:read" in result.stdout.splitlines()
    assert "POST /api/v0/users/settings/update  myproduct.api.v0.users.settings:update" in (
        result.stdout)


def test_help_lists_the_options():
    result = run("serve", "--help")
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
