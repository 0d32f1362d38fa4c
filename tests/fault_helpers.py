"""A private copy of what `fab deploy` leaves on a host, and a load that counts what fails.

The stack is rendered by the deploy kit itself (apiphant.deploy.render) from
myproduct's deploy.toml, with only its host paths moved into a temporary
folder: /opt/myproduct and /var/log/myproduct become folders of the test, and
``user=myproduct`` becomes the user running the test (the tests must not
create a system user; e2e already checks the real one). Everything else is
the deploy's own: config/run starts every program, Supervisor's programs keep
their options (drain, idle grace, stopwaitsecs, autorestart), and Nginx's site
keeps its upstream, keepalive and next_upstream settings.

Its own supervisord (socket and pidfile in the folder) runs two API workers
and the background runner; its own nginx fronts the two workers. The product
is myproduct plus one test target, ``api/v0/ledger.py``, whose ``create``
appends the request id to a file before it answers, so a create that Nginx
sent twice shows as a duplicate line.
"""

import http.client
import ipaddress
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from apiphant.deploy import render
from apiphant.deploy.config import load
from apiphant.deploy.layout import NGINX_PIDFILE, SUPERVISOR_PIDFILE, Layout
from tests.deploy_helpers import (
    CHECKOUT,
    SERVER_NAME,
    deploy_toml,
    nginx_command,
    port_open,
    private_nginx,
)
from tests.servers import SELFCHECK
from tests.support import load as support
from tests.support.ports import service_ports
from tests.support.processes import stop

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SUPERVISORD = shutil.which("supervisord") or "/usr/bin/supervisord"
SUPERVISORCTL = shutil.which("supervisorctl") or "/usr/bin/supervisorctl"
RELEASE = "20260101000000"
PRODUCT = "myproduct"
SECRET = "fault-stack-secret-5172"

#: The test target. Its answers wait DELAY seconds, so that a fault finds requests in
#: flight; a create is recorded before that wait, like a database commit before the
#: rest of the work, so a create whose answer is lost has still happened.
LEDGER = '''\
"""Test target of the fault tests: a create is recorded once per request id."""

import os
import time

from apiphant.validation import field

DELAY = 0.02


def read(request):
    time.sleep(DELAY)
    return {"id": field(request, "id", is_required=True, valid_type=str), "pid": os.getpid()}


def create(request):
    request_id = field(request, "id", is_required=True, valid_type=str, max_length=64)
    fd = os.open(os.environ["FAULTS_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{request_id} {os.getpid()}\\n".encode())  # one write: whole lines
    finally:
        os.close(fd)
    time.sleep(DELAY)
    return {"id": request_id, "created": True}
'''

#: Each kind of request the load sends: its path, and whether Nginx may send it twice.
KINDS = {
    "read": "/api/v0/ledger/read",  # idempotent by the URL contract: retried by Nginx
    "create": "/api/v0/ledger/create",  # never sent twice
    "update": "/api/v0/users/settings/update",  # myproduct's own; never sent twice
}

#: Client threads of a load: each has one request out at a time.
THREADS = 8
#: What a client of the public listener sends: its Host is one of the server names.
HEADERS = {"Content-Type": "application/json", "Host": SERVER_NAME}

Edit = Callable[[str, str], str]


def _replace(text: str, old: str, new: str, what: str) -> str:
    assert old in text, f"the rendered {what} no longer has {old!r}"
    return text.replace(old, new)


class Stack:
    """supervisord + 2 workers + the background runner + nginx, as the deploy lays them out.

    ``edit(name, text)`` may change a rendered file before it is written: the
    mutation checks use it to remove a protection and see the tests fail.
    ``nginx_toml`` adds lines to deploy.toml's [nginx] table.

    Nginx runs with the deploy's own main config (nginx-main.conf: its process sizing),
    with only its system paths moved into the folder, and as root (no www-data).
    """

    def __init__(self, folder: Path, edit: Edit | None = None, nginx_toml: str = "") -> None:
        self.folder = folder
        self.edit = edit
        self.nginx_toml = nginx_toml
        self.first_port = service_ports(4)
        self.nginx_port = self.first_port + 2
        self.local_port = self.first_port + 3
        self.ports = (self.first_port, self.first_port + 1)
        self.root = folder / "opt"  # /opt/myproduct
        self.logs = folder / "log"  # /var/log/myproduct
        self.release = self.root / "releases" / RELEASE
        self.ledger = folder / "ledger.txt"
        self.conf = folder / "supervisord.conf"
        self.supervisord: subprocess.Popen | None = None
        self.nginx: subprocess.Popen | None = None
        self.seen_pids: set[int] = set()

    # Names

    def worker(self, index: int) -> str:
        return Layout(PRODUCT).worker(self.ports[index])

    @property
    def background(self) -> str:
        return Layout(PRODUCT).background

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    def log(self, program: str) -> str:
        return (self.logs / f"{program}.log").read_text(errors="replace")

    def wait_log(self, program: str, text: str, count: int, timeout: float = 20) -> str:
        """Wait (bounded) until the program's log has ``text`` ``count`` times; the log."""
        deadline = time.monotonic() + timeout
        while (log := self.log(program)).count(text) < count:
            assert time.monotonic() < deadline, f"{program}: {text!r} x{count}?\n{log[-2000:]}"
            time.sleep(0.05)
        return log

    def supervisord_log(self) -> str:
        return (self.folder / "supervisord.log").read_text(errors="replace")

    # Building

    def render(self) -> dict[str, str]:
        """The deploy's files for this stack, with the host paths moved into the folder."""
        source = self.folder / "source" / PRODUCT
        shutil.copytree(
            CHECKOUT / PRODUCT, source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        (source / "api" / "v0" / "ledger.py").write_text(LEDGER)
        shutil.copy(SELFCHECK / "api" / "v0" / "self.py", source / "api" / "v0" / "self.py")
        text = deploy_toml(
            "root@127.0.0.1",
            f"127.0.0.1:{self.nginx_port}",
            self.first_port,
            local_port=self.local_port,
        )
        text = _replace(text, "[nginx]\n", "[nginx]\n" + self.nginx_toml + "\n", "deploy.toml")
        text = _replace(
            text,
            'APIPHANT_LOG_LEVEL = "INFO"',
            f'APIPHANT_LOG_LEVEL = "INFO"\nFAULTS_LEDGER = "{self.ledger}"',
            "deploy.toml",
        )
        (source / "deploy.toml").write_text(text)
        config = load(source / "deploy.toml")
        files = render.render_host(config, config.hosts[0], RELEASE, "apiphant-test.whl")
        user = pwd.getpwuid(os.geteuid()).pw_name
        out = {}
        for name, body in files.files.items():
            body = body.replace("/opt/myproduct", str(self.root))
            body = body.replace("/var/log/myproduct", str(self.logs))
            if name == "supervisor.conf":
                body = _replace(body, "user=myproduct", f"user={user}", name)
            if name == "logrotate":  # the stack's own daemons, never this machine's
                body = _replace(body, SUPERVISOR_PIDFILE, f"{self.folder}/supervisord.pid", name)
                body = _replace(body, NGINX_PIDFILE, f"{self.folder}/nginx.pid", name)
            if name == "nginx-main.conf":
                body = private_nginx(body, self.folder, self.folder / "etc" / "nginx.conf")
            if self.edit is not None:
                body = self.edit(name, body)
            out[name] = body
        self.files = out
        self.source = source
        return out

    def lay_out(self) -> None:
        """The release folder as the deploy leaves it: product, config, a venv, current."""
        files = self.render()
        config = self.release / "config"
        config.mkdir(parents=True)
        for name, body in files.items():
            (config / name).write_text(body)
            (config / name).chmod(0o755 if name in ("run", "rotate") else 0o644)
        shutil.copytree(self.source, self.release / PRODUCT)
        # The release's virtualenv: this interpreter, which has apiphant installed.
        bin_dir = self.release / "venv" / "bin"
        bin_dir.mkdir(parents=True)
        for program, module in (
            ("apiphant", "apiphant.cli"),
            ("apiphant-background", "apiphant.background"),
        ):
            script = bin_dir / program
            code = f"import sys; from {module} import main; sys.exit(main())"
            script.write_text(f"#!/bin/sh\nexec {sys.executable} -c '{code}' \"$@\"\n")
            script.chmod(0o755)
        (self.root / "shared").mkdir()
        secrets = config / "secrets.env"  # the release's own, as the deploy writes it
        secrets.write_text(f"FAULTS_TOKEN={SECRET}\n")
        secrets.chmod(0o600)
        (self.root / "current").symlink_to(self.release)
        self.logs.mkdir()
        # The links the deploy makes into /etc, here into the folder.
        etc = self.folder / "etc"
        etc.mkdir()
        (etc / "supervisor.conf").symlink_to(self.root / "current" / "config" / "supervisor.conf")
        (etc / "nginx.conf").symlink_to(self.root / "current" / "config" / "nginx.conf")
        f = self.folder
        self.nginx_main = self.root / "current" / "config" / "nginx-main.conf"
        self.conf.write_text(
            f"[unix_http_server]\nfile={f}/supervisor.sock\nchmod=0700\n\n"
            f"[supervisord]\nlogfile={f}/supervisord.log\npidfile={f}/supervisord.pid\n"
            f"childlogdir={f}\nnodaemon=true\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            f"[supervisorctl]\nserverurl=unix://{f}/supervisor.sock\n\n"
            f"[include]\nfiles = {etc}/supervisor.conf\n"
        )

    # Running

    def start(self) -> "Stack":
        self.lay_out()
        log = (self.folder / "supervisord.out").open("wb")
        self.supervisord = subprocess.Popen(
            [SUPERVISORD, "-n", "-c", str(self.conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        nginx = nginx_command(self.folder, self.nginx_main)
        checked = subprocess.run([*nginx, "-t", "-q"], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        self.nginx = subprocess.Popen(nginx, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", self.nginx_port):
            assert self.nginx.poll() is None, "nginx exited"
            assert time.monotonic() < deadline, "nginx did not listen"
            time.sleep(0.05)
        for index in (0, 1):
            self.wait_healthy(index, timeout=30)
        self.wait_running(self.background, timeout=30)
        return self

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [SUPERVISORCTL, "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def pid(self, program: str) -> int:
        """The program's pid, 0 when it does not run."""
        answer = self.ctl("pid", program).stdout.strip()
        pid = int(answer) if answer.isdigit() else 0
        if pid:
            self.seen_pids.add(pid)
        return pid

    def wait_running(self, program: str, other_than: int = 0, timeout: float = 30) -> int:
        """Wait (bounded) until the program runs with a pid other than ``other_than``."""
        deadline = time.monotonic() + timeout
        while True:
            if self.supervisord is not None and self.supervisord.poll() is not None:
                raise AssertionError(f"supervisord exited:\n{self.supervisord_log()[-3000:]}")
            status = self.ctl("status", program).stdout
            pid = self.pid(program)
            if "RUNNING" in status and pid and pid != other_than:
                return pid
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{program} not running after {timeout}s: {status}\n"
                    f"{self.supervisord_log()[-2000:]}"
                )
            time.sleep(0.1)

    def health(self, index: int) -> dict | None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.ports[index], timeout=2)
            conn.request("GET", "/health")
            answer = json.loads(conn.getresponse().read())
            conn.close()
            return answer
        except (OSError, http.client.HTTPException, ValueError):
            return None

    def wait_healthy(self, index: int, timeout: float = 30) -> float:
        """Wait (bounded) until worker ``index`` answers /health itself; seconds waited."""
        started = time.monotonic()
        while True:
            answer = self.health(index)
            if answer and answer.get("release") == RELEASE:
                self.pid(self.worker(index))
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(
                    f"{self.worker(index)}: no /health after {timeout}s\n"
                    f"{self.log(self.worker(index))[-2000:]}"
                )
            time.sleep(0.05)

    def settle(self, timeout: float = 20) -> None:
        """Wait (bounded) until Nginx sends requests to both workers again: a worker it
        could not reach gets nothing for ``fail_timeout``."""
        wanted = {self.pid(self.worker(0)), self.pid(self.worker(1))}
        seen: set[int] = set()
        deadline = time.monotonic() + timeout
        while seen != wanted:
            assert time.monotonic() < deadline, f"Nginx reached only {seen} of {wanted}"
            conn = http.client.HTTPConnection("127.0.0.1", self.nginx_port, timeout=5)
            try:
                conn.request("POST", KINDS["read"], json.dumps({"id": "settle"}), HEADERS)
                response = conn.getresponse()
                body = response.read()
                if response.status == 200:
                    seen.add(json.loads(body)["pid"])
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            time.sleep(0.05)

    def wait_create_in_flight(self, pid: int, load: "Load", timeout: float = 5) -> bool:
        """Wait (bounded) until worker ``pid`` has recorded a create of ``load`` that is not
        answered yet: a kill then finds a create done but unanswered, the case where a
        retry by Nginx would do it twice. False if none was seen in time."""
        deadline = time.monotonic() + timeout
        offset = self.ledger.stat().st_size if self.ledger.exists() else 0
        while time.monotonic() < deadline:
            with self.ledger.open("rb") as ledger:
                ledger.seek(offset)
                fresh = ledger.read().decode()
            whole = fresh[: fresh.rfind("\n") + 1]
            offset += len(whole.encode())
            with load.lock:
                answered = set(load.created)
            for line in whole.splitlines():
                request_id, _, writer = line.partition(" ")
                if writer == str(pid) and request_id not in answered:
                    return True
            time.sleep(0.002)
        return False

    def ledger_counts(self) -> Counter:
        if not self.ledger.exists():
            return Counter()
        return Counter(line.split()[0] for line in self.ledger.read_text().splitlines() if line)

    def stop(self) -> None:
        """Nginx first (its keep-alive connections would hold the draining workers), then
        supervisord, which stops its programs; anything of ours still alive is killed."""
        for proc, timeout in ((self.nginx, 10), (self.supervisord, 45)):
            if proc is not None:
                stop(proc, timeout=timeout)
        for pid in self.seen_pids:
            if self._ours(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)  # supervisord starts each in its own group
                except OSError:
                    pass

    def _ours(self, pid: int) -> bool:
        try:
            return os.readlink(f"/proc/{pid}/cwd").startswith(str(self.root))
        except OSError:
            return False


class Load(support.Load):
    """Client threads posting through Nginx on keep-alive connections, round the kinds.

    Every request is counted by kind: sent, failed (any answer but the expected
    200 and body, or a connection error), and why; and each create by its id, with
    whether it was answered 200. Bounded: it stops when told, after ``limit`` seconds,
    or after ``max_requests`` per thread.
    """

    def __init__(
        self,
        port: int,
        tag: str,
        threads: int = THREADS,
        limit: float = 60,
        max_requests: int = 20000,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host  # a test host's Nginx (tests/testhosts.py), or this machine's
        self.port = port
        self.tag = tag
        self.created: dict[str, bool] = {}  # create id -> answered 200
        super().__init__(
            lambda: http.client.HTTPConnection(host, port, timeout=10),
            self.request,
            threads=threads,
            headers=HEADERS,
            limit=limit,
            max_requests=max_requests,
        )

    def request(self, number: int, n: int) -> support.Request:
        kinds = list(KINDS)
        kind = kinds[(n + number) % len(kinds)]
        request_id = f"{self.tag}-{number}-{n}"
        if kind == "update":
            body: dict = {"user_id": n, "settings": {"theme": "dark"}}
            expected = {"user_id": n, "settings": {"theme": "dark", "language": "en"}}
        elif kind == "create":
            body = {"id": request_id}
            expected = {"id": request_id, "created": True}
        else:
            body = {"id": request_id}
            expected = {"id": request_id}

        def check(got: object) -> bool:  # which worker answered is no part of the answer
            return isinstance(got, dict) and {k: got[k] for k in got if k != "pid"} == expected

        return kind, KINDS[kind], body, check

    def counted(self, kind: str, body: object, why: str) -> None:
        if kind == "create":
            self.created[body["id"]] = not why  # type: ignore[index]

    def figures(self, ledger: Counter) -> dict:
        """What the scenario tells: requests by kind, failures by kind and cause, creates."""
        mine = {i: c for i, c in ledger.items() if i.startswith(self.tag + "-")}
        return {
            "requests": sum(self.sent.values()),
            "sent": dict(self.sent),
            "failed": {kind: self.failed[kind] for kind in KINDS},
            "causes": dict(Counter(f"{kind} {why}" for _, kind, why in self.failures)),
            "creates recorded twice": sum(1 for c in mine.values() if c > 1),
            "creates answered 200 but not recorded": sum(
                1 for i, ok in self.created.items() if ok and i not in mine
            ),
            "creates failed but done": sum(
                1 for i, ok in self.created.items() if not ok and i in mine
            ),
        }


# The scenarios: each returns its figures; the tests say what they must be.


def rolling_restart_under_load(stack: Stack, pause: float = 4) -> dict:
    """``supervisorctl restart`` of each worker in turn (SIGTERM, drain, start: the stop and
    start a deploy does): the next one only ``pause`` seconds (more than Nginx's
    ``back_within``) after the last answered again. The load runs all along, and a second
    after the last restart."""
    stack.settle()
    old = [stack.pid(stack.worker(i)) for i in (0, 1)]
    new, took = [], []
    with Load(stack.nginx_port, tag=f"rolling-{old[0]}") as load:
        load.wait_sent(200)
        for index in (0, 1):
            if index:
                time.sleep(pause)
            started = time.monotonic()
            done = stack.ctl("restart", stack.worker(index))
            assert done.returncode == 0, done.stdout + done.stderr
            new.append(stack.wait_running(stack.worker(index), other_than=old[index]))
            stack.wait_healthy(index)
            took.append(round(time.monotonic() - started, 1))
        time.sleep(1)
    figures = load.figures(stack.ledger_counts())
    figures["restart seconds"] = took
    figures["pids"] = (old, new)
    return figures


def kill_under_load(stack: Stack, index: int = 1) -> dict:
    """``kill -9`` of one worker while the load runs; Supervisor starts it again."""
    stack.settle()
    program = stack.worker(index)
    old = stack.pid(program)
    with Load(stack.nginx_port, tag=f"kill{index}-{old}") as load:
        load.wait_sent(200)
        mid_create = stack.wait_create_in_flight(old, load)
        killed = time.monotonic()
        os.kill(old, signal.SIGKILL)
        new = stack.wait_running(program, other_than=old)
        stack.wait_healthy(index)
        answered = time.monotonic()
        time.sleep(1)
    figures = load.figures(stack.ledger_counts())
    figures["restart seconds"] = round(answered - killed, 1)
    figures["pids"] = (old, new)
    figures["failed after the restart"] = sum(1 for t, _, _ in load.failures if t > answered)
    figures["killed while a create was in flight"] = mid_create
    return figures


def time_waits(port: int) -> tuple[set, set]:
    """TIME_WAIT connections of a local TCP port, from /proc/net/tcp: (closed first by the
    side listening on ``port``, closed first by its peer). The side that closes a TCP
    connection first is the one left in TIME_WAIT."""
    by_port, by_peer = set(), set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if state != "06":
            continue
        local_port, remote_port = int(local.split(":")[1], 16), int(remote.split(":")[1], 16)
        if local_port == port:
            by_port.add((local, remote))
        elif remote_port == port:
            by_peer.add((local, remote))
    return by_port, by_peer


def sigterm_while_idle(stack: Stack, index: int = 0) -> dict:
    """SIGTERM to a worker whose Nginx keep-alive connections are idle (a quiet moment):
    the worker must leave them to Nginx, which closes them after its keepalive_timeout.
    Supervisor starts the worker again (autorestart)."""
    stack.settle()
    program = stack.worker(index)
    port = stack.ports[index]
    with Load(stack.nginx_port, tag=f"idle{index}") as load:
        load.wait_sent(300)
    time.sleep(0.3)  # every Nginx connection to the worker is idle now
    worker_before, nginx_before = time_waits(port)
    old = stack.pid(program)
    started = time.monotonic()
    os.kill(old, signal.SIGTERM)
    new = stack.wait_running(program, other_than=old)  # the old one has exited
    worker_after, nginx_after = time_waits(port)  # before /health adds connections of its own
    stack.wait_healthy(index)
    return {
        "requests before": sum(load.sent.values()),
        "failed before": sum(load.failed.values()),
        "connections closed by the worker": len(worker_after - worker_before),
        "connections closed by Nginx": len(nginx_after - nginx_before),
        "restart seconds": round(time.monotonic() - started, 1),
        "pids": (old, new),
    }


def listeners(port: int, net: Path = Path("/proc/net")) -> set[str]:
    """The addresses a local TCP port listens on, from /proc/net/tcp and tcp6 (``net``:
    another network namespace's, as /proc/PID/net)."""
    found = set()
    for name in ("tcp", "tcp6"):
        path = net / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # LISTEN
                raw = bytes.fromhex(address)
                # The kernel prints each 32-bit word in host (little-endian) order.
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(str(ipaddress.ip_address(words)))
    return found
