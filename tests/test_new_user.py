"""A new user's first hour, end to end, with nothing activated: a fresh virtualenv with a
non-editable install of this checkout (the wheel a deploy builds from it, with the deploy
extra, as `pip install 'apiphant[deploy]'` would), `apiphant new shop` beside it, `apiphant
serve shop` in the background, then `shop/test.sh` (its own server, and against the one
running) and `pytest` inside shop/, each called by its path from a shell whose PATH has no
virtualenv. Then the mistakes a new user makes, each answered clearly (a 4xx with a JSON
error, or one line at start-up).

Everything runs on loopback; every process started here is stopped, also on failure.
"""

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from apiphant.deploy import artifacts
from tests.servers import REPO
from tests.support.ports import free_port, port_open, wait_for_port
from tests.support.processes import stop

#: A shell with no virtualenv activated: the system's PATH only; no PYTHON, no APIPHANT_*.
BARE = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}

#: The endpoint the user adds, with the mistakes of a first handler.
TROUBLE = '''\
import datetime
import decimal
import uuid

from apiphant.validation import field


def read(request):
    return {"name": request.name}  # apiphant 0.2's attribute style, the key absent


def update(request):
    return {"name": field(request, "name", max_length=8)}


def create(request):
    return {
        "at": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        "day": datetime.date(2026, 1, 2),
        "price": decimal.Decimal("19.90"),
        "id": uuid.UUID(int=1),
        "tags": {"b", "a"},
    }
'''


@dataclass
class Workspace:
    """The user's folder: .venv with apiphant installed, shop/ made by `apiphant new`."""

    folder: Path
    url: str

    @property
    def venv(self) -> Path:
        return self.folder / ".venv"

    @property
    def shop(self) -> Path:
        return self.folder / "shop"

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 180,
            **env: str) -> subprocess.CompletedProcess:  # fmt: skip
        done = subprocess.run([str(a) for a in args], cwd=cwd or self.folder,
                              env={**BARE, **env}, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
        print(f"$ {' '.join(map(str, args))}\n{done.stdout}{done.stderr}(exit {done.returncode})")
        return done


def _install(folder: Path) -> Path:
    """A fresh virtualenv, and this checkout's wheel installed in it (not editable)."""
    venv = folder / ".venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    wheel = artifacts.build_from_checkout(folder / "build", REPO)
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                           f"{wheel}[deploy]"], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return venv


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Iterator[Workspace]:
    folder = tmp_path_factory.mktemp("newcomer")
    venv = _install(folder)
    made = subprocess.run([str(venv / "bin" / "apiphant"), "new", "shop"], cwd=folder,
                          env=BARE, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr
    (folder / "shop" / "api" / "v0" / "trouble.py").write_text(TROUBLE)
    port = free_port()
    log = (folder / "serve.log").open("wb")
    server = subprocess.Popen([str(venv / "bin" / "apiphant"), "serve", "shop",
                               f"127.0.0.1:{port}"], cwd=folder, env=BARE, stdout=log,
                              stderr=subprocess.STDOUT)  # fmt: skip
    try:
        try:
            wait_for_port("127.0.0.1", port, server)
        except (RuntimeError, TimeoutError):
            pytest.fail("apiphant serve shop did not start:\n" + (folder / "serve.log").read_text())
        yield Workspace(folder, f"http://127.0.0.1:{port}")
    finally:
        stop(server, timeout=15)
        log.close()


def test_the_installed_apiphant_is_not_the_checkout(workspace):
    done = workspace.run(workspace.venv / "bin" / "python", "-c",
                         "import apiphant; print(apiphant.__file__)")  # fmt: skip
    assert done.returncode == 0 and str(workspace.venv) in done.stdout, done.stdout


def test_the_served_shop_answers(workspace):
    answer = requests.post(f"{workspace.url}/api/v0/echo/read", json={"hello": "world"},
                           timeout=10)  # fmt: skip
    assert answer.json() == {"hello": "world", "server": "shop"}
    log = (workspace.folder / "serve.log").read_text()
    assert f"it answers {workspace.url}/health" in log
    assert requests.get(f"{workspace.url}/health", timeout=10).status_code == 200


def test_shop_test_sh_with_no_activation(workspace):
    own = workspace.run(workspace.shop / "test.sh", APIPHANT_PORT=str(free_port()))
    assert own.returncode == 0, own.stdout + own.stderr
    assert "OK: 7 passed" in own.stdout
    # No DATABASE_URL, no development database: the users part says so and is skipped
    assert "SKIPPED users: the server has no database (no database: set" in own.stdout
    assert (workspace.shop / "migrations" / "0001_create_users.sql").is_file()  # in the wheel
    running = workspace.run(workspace.shop / "test.sh", workspace.url)
    assert running.returncode == 0, running.stdout + running.stderr
    assert f"POST {workspace.url}/api/v0/echo/read" in running.stdout


def test_pytest_inside_shop_with_no_activation(workspace):
    done = workspace.run(workspace.venv / "bin" / "pytest", "-q", "-p", "no:cacheprovider",
                         "tests", cwd=workspace.shop)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def _post(workspace: Workspace, path: str, body: bytes, **headers: str) -> requests.Response:
    return requests.post(f"{workspace.url}/api/v0/{path}", data=body, timeout=10,
                         headers={"Content-Type": "application/json", **headers})  # fmt: skip


def _refused_at_start_up(workspace: Workspace, name: str,
                         source: str) -> subprocess.CompletedProcess:  # fmt: skip
    """`apiphant serve` of a new product with one handler file: it must exit, not listen."""
    made = workspace.run(workspace.venv / "bin" / "apiphant", "new", name)
    assert made.returncode == 0, made.stderr
    (workspace.folder / name / "api" / "v0" / "slow.py").write_text(textwrap.dedent(source))
    port = free_port()
    server = subprocess.Popen(
        [str(workspace.venv / "bin" / "apiphant"), "serve", name, f"127.0.0.1:{port}"],
        cwd=workspace.folder, env=BARE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        for _ in range(150):  # 15 s at most: it exits, or it listens (and is stopped)
            if server.poll() is not None or port_open("127.0.0.1", port, 0.1):
                break
            time.sleep(0.1)
        listening = server.poll() is None
    finally:
        stop(server, timeout=10)
    out, err = server.communicate()
    assert not listening, "apiphant serve started with an async handler"
    return subprocess.CompletedProcess(server.args, server.returncode, out, err)


def test_a_new_users_mistakes_get_clear_answers(workspace):
    # A browser's GET on a route: 405 with Allow: POST, not 501.
    got = requests.get(f"{workspace.url}/api/v0/echo/read", timeout=10)
    assert got.status_code == 405 and "POST" in got.headers["Allow"]
    # request.name with no "name": the same 400 as field() gives.
    missing = _post(workspace, "trouble/read", b"{}")
    assert (missing.status_code, missing.json()) == (
        400, {"error": {"field": "name", "state": "missing"}})
    # datetime, date, Decimal, UUID and set in an answer: encoded, not a 500.
    encoded = _post(workspace, "trouble/create", b"{}")
    assert (encoded.status_code, encoded.json()) == (200, {
        "at": "2026-01-02T03:04:05+00:00", "day": "2026-01-02", "price": "19.90",
        "id": "00000000-0000-0000-0000-000000000001", "tags": ["a", "b"]})
    # Each bad body says what is wrong, in apiphant 0.2's shape and status.
    for body, headers, words in (
        (b'{"a": ', {}, ("line 1", "column")),
        (b"a=1", {"Content-Type": "application/x-www-form-urlencoded"}, ("form",)),
        (b'{"a": "\xff"}', {}, ("UTF-8",)),
        (b'{"q": 1e400}', {}, ("out of range",)),
        (b'{"n": ' + b"9" * 5000 + b"}", {}, ("out of range",)),
    ):
        bad = _post(workspace, "echo/read", body, **headers)
        assert bad.status_code == 400, body[:20]
        error = bad.json()["error"]
        assert isinstance(error, str) and all(word in error for word in words), (body[:20], error)
    # max_length says what it expected.
    long = _post(workspace, "trouble/update", json.dumps({"name": "x" * 9}).encode())
    assert (long.status_code, long.json()) == (400, {"error": {
        "field": "name", "state": "invalid", "explain": "at most 8 characters"}})
    # An async handler is refused at start-up in one line naming its file and function.
    refused = _refused_at_start_up(workspace, "asyncshop", """\
        async def read(request):
            return {}
        """)
    assert refused.returncode == 2
    last = refused.stderr.strip().splitlines()[-1]
    assert "slow.py" in last and "read" in last and "async" in last, refused.stderr
