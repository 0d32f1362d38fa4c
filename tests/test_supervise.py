"""apiphant/deploy/supervise.py, the deploy's Supervisor client, against a real supervisord
started here with programs of its own (a small /health server, a runner without a port)."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from apiphant.deploy import supervise
from apiphant.deploy.host.agents import SUPERVISOR_PYTHON

SUPERVISORD = shutil.which("supervisord") or "/usr/bin/supervisord"
pytestmark = pytest.mark.skipif(not os.path.exists(SUPERVISORD), reason="no supervisord")
SCRIPT = Path(supervise.__file__)

# A worker: serves /health with the release it read at start (the deploy's `current`).
HEALTH = """
import http.server, json, os, sys, time
release = open(sys.argv[2]).read().strip()
time.sleep(float(os.environ.get("DELAY", "0")))  # a worker still importing: not listening yet
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"release": release}).encode()
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
host, port = sys.argv[1].split(":")
http.server.HTTPServer((host, int(port)), H).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Supervisord:
    """supervisord in a folder: ``programs.conf`` is its include, rewritten by the tests."""

    #: Seconds a program must run before Supervisor calls it RUNNING.
    startsecs = 1

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.conf = folder / "supervisord.conf"
        self.release = folder / "release"
        self.release.write_text("R1\n")
        (folder / "health.py").write_text(HEALTH)
        self.retries = 2
        self.ports = {name: free_port() for name in ("p-api-1", "p-api-2")}
        self.conf.write_text(
            "[unix_http_server]\nfile=%(here)s/s.sock\nchmod=0700\n\n"
            "[supervisord]\nlogfile=%(here)s/supervisord.log\npidfile=%(here)s/supervisord.pid\n"
            "childlogdir=%(here)s\nnodaemon=true\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            "[supervisorctl]\nserverurl=unix://%(here)s/s.sock\n\n"
            "[include]\nfiles = %(here)s/programs.conf\n"
        )
        self.programs(["p-api-1", "p-background", "other"])
        self.process = subprocess.Popen(
            [SUPERVISORD, "-n", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while self.run("ping").returncode != 0:
            assert self.process.poll() is None, (folder / "supervisord.log").read_text()
            assert time.monotonic() < deadline, "supervisord did not answer"
            time.sleep(0.05)

    def program(self, name: str, extra: str = "") -> str:
        python = SUPERVISOR_PYTHON
        if name.startswith("p-api-"):
            command = (
                f"{python} {self.folder}/health.py 127.0.0.1:{self.ports[name]} {self.release}"
            )
        else:  # a runner: its release is in its environment, as config/run exports it
            command = f"/bin/sh -c 'APIPHANT_RELEASE=$(cat {self.release}) exec sleep 600'"
        return (
            f"[program:{name}]\ncommand={command}\nautostart=true\nstartsecs={self.startsecs}\n"
            f"startretries={self.retries}\n"
            f"stopwaitsecs=5\nstdout_logfile={self.folder}/{name}.log\n"
            f"redirect_stderr=true\n{extra}\n"
        )

    def programs(self, names: list[str], extra: dict[str, str] | None = None) -> None:
        text = "\n".join(self.program(n, (extra or {}).get(n, "")) for n in names)
        (self.folder / "programs.conf").write_text(text)

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [SUPERVISOR_PYTHON, str(SCRIPT), "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    @property
    def rpc(self):
        return supervise.connect(str(self.conf), timeout=30)

    def info(self, name: str) -> dict:
        return self.rpc.getProcessInfo(name)

    def wait(self, name: str, state: str = "RUNNING", timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while (info := self.info(name))["statename"] != state:
            assert time.monotonic() < deadline, info
            time.sleep(0.05)
        return info

    def starting_on(self, release: str) -> int:
        """The runner's pid once STARTING and past the shell that reads the release (it is
        in its environment then)."""
        pid = self.wait("p-background", "STARTING")["pid"]
        environ = Path(f"/proc/{pid}/environ")
        deadline = time.monotonic() + 10
        while f"APIPHANT_RELEASE={release}".encode() not in environ.read_bytes().split(b"\0"):
            assert time.monotonic() < deadline, "the runner did not read its release"
            time.sleep(0.02)
        return pid

    def restart(self, name: str, release: str, *more: str) -> subprocess.CompletedProcess:
        how = ["--env", "APIPHANT_RELEASE"]
        if "background" not in name:
            how += ["--health", f"http://127.0.0.1:{self.ports[name]}/health"]
        log = str(self.folder / f"{name}.log")
        return self.run("restart", name, "--log", log, "--release", release, *how, *more)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=10)


@pytest.fixture
def supervisord(tmp_path: Path):
    running = Supervisord(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def test_ping_says_whether_supervisord_answers(supervisord: Supervisord, tmp_path: Path) -> None:
    assert supervisord.run("ping").returncode == 0
    elsewhere = tmp_path / "elsewhere.conf"
    elsewhere.write_text(f"[supervisorctl]\nserverurl=unix://{tmp_path}/none.sock\n")
    gone = supervisord.run("-c", str(elsewhere), "ping")
    assert (gone.returncode, gone.stdout, gone.stderr) == (1, "", "")


def test_a_worker_restarts_onto_the_new_release_and_is_polled_until_it_answers(
    supervisord: Supervisord,
) -> None:
    before = supervisord.wait("p-api-1")["pid"]
    assert (
        supervisord.restart("p-api-1", "R1").stdout
        == "p-api-1 already /health answers release R1\n"
    )
    assert supervisord.info("p-api-1")["pid"] == before
    supervisord.release.write_text("R2\n")
    done = supervisord.restart("p-api-1", "R2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "p-api-1: stopped",
        "p-api-1: start requested",
        "p-api-1: /health answers release R2",
    ]
    assert supervisord.info("p-api-1")["pid"] not in (0, before)


def test_a_runner_is_checked_by_the_release_in_its_environment(supervisord: Supervisord) -> None:
    supervisord.wait("p-background")
    supervisord.release.write_text("R2\n")
    done = supervisord.restart("p-background", "R2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "p-background: runs release R2"
    # Only once Supervisor has it RUNNING, past its startsecs.
    assert supervisord.info("p-background")["statename"] == "RUNNING"


def assert_waited_for(supervisord: Supervisord, name: str, release: str, ok: str, pid: int) -> None:
    """A restart onto ``release`` found ``name`` starting on it: waited for, not restarted."""
    done = supervisord.restart(name, release)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{name}: starting on the release already; waiting for it",
        f"{name}: {ok}",
    ]
    assert supervisord.info(name)["pid"] == pid


def test_a_program_starting_on_the_release_already_is_waited_for_not_restarted(
    tmp_path: Path, monkeypatch
) -> None:
    """As on a first deploy, where supervisord starts the programs after the switch: one
    still STARTING with the release in its environment is waited for, not started twice.
    One starting on another release is restarted."""
    monkeypatch.setattr(Supervisord, "startsecs", 4)
    supervisord = Supervisord(tmp_path)

    try:
        first = supervisord.starting_on("R1")
        assert_waited_for(supervisord, "p-background", "R1", "runs release R1", first)
        supervisord.rpc.stopProcess("p-background")
        supervisord.rpc.startProcess("p-background", False)  # STARTING again, on R1
        supervisord.starting_on("R1")
        supervisord.release.write_text("R2\n")
        done = supervisord.restart("p-background", "R2")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "p-background: stopped",
            "p-background: start requested",
            "p-background: runs release R2",
        ]
    finally:
        supervisord.stop()


def test_a_worker_running_on_the_release_but_not_listening_yet_is_waited_for(
    supervisord: Supervisord,
) -> None:
    """On a first deploy supervisord starts a host's programs at once; on shared cores a
    worker can pass startsecs (RUNNING) before it listens. One on the release that has run
    for less than the wait is waited for, not killed mid-start; one that has run longer on
    the release and does not answer with it is restarted."""
    supervisord.programs(["p-api-1", "p-api-2", "p-background", "other"], {
        "p-api-1": 'environment=APIPHANT_RELEASE="R1",DELAY="2"',
        "p-api-2": 'environment=APIPHANT_RELEASE="R2"',  # its /health answers R1
    })  # fmt: skip
    synced = supervisord.run("sync", "^p-api-")
    assert synced.returncode == 0, synced.stderr
    first = supervisord.wait("p-api-1")["pid"]
    assert_waited_for(supervisord, "p-api-1", "R1", "/health answers release R1", first)
    deadline = time.monotonic() + 30
    while (info := supervisord.wait("p-api-2"))["now"] - info["start"] <= 1:
        assert time.monotonic() < deadline, info
        time.sleep(0.1)
    stale = supervisord.restart("p-api-2", "R2", "--wait", "1")
    assert stale.returncode == 1
    assert stale.stdout.splitlines()[:2] == ["p-api-2: stopped", "p-api-2: start requested"]
    assert "no /health answer with release R2" in stale.stderr


def test_no_wait_starts_the_runner_and_a_later_restart_checks_it(
    tmp_path: Path, monkeypatch
) -> None:
    """The deploy starts the runner beside the first batch without waiting out its
    startsecs, and checks it once the batches are done: the same restart, which waits for
    one STARTING on the release instead of starting it twice."""
    monkeypatch.setattr(Supervisord, "startsecs", 3)
    supervisord = Supervisord(tmp_path)
    try:
        supervisord.wait("p-background")
        supervisord.release.write_text("R2\n")
        started = supervisord.restart("p-background", "R2", "--no-wait")
        assert started.returncode == 0, started.stderr
        assert started.stdout.splitlines() == [
            "p-background: stopped",
            "p-background: start requested",
            "p-background: not waited for here; checked later",
        ]
        pid = supervisord.starting_on("R2")
        assert_waited_for(supervisord, "p-background", "R2", "runs release R2", pid)
        both = supervisord.restart("p-background", "R2", "--no-wait", "--wait", "5")
        assert both.returncode == 2 and "not allowed with argument" in both.stderr
    finally:
        supervisord.stop()


def test_a_changed_program_config_is_applied_to_that_program_alone(
    supervisord: Supervisord,
) -> None:
    other = supervisord.wait("other")["pid"]
    supervisord.release.write_text("R2\n")
    changed = {"p-api-1": "environment=CHANGED=1", "other": "environment=CHANGED=1"}
    supervisord.programs(["p-api-1", "p-background", "other"], changed)
    done = supervisord.restart("p-api-1", "R2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "p-api-1: stopped",
        "p-api-1: updated process group",
        "p-api-1: /health answers release R2",
    ]
    assert supervisord.info("other")["pid"] == other  # its change waits for its own update


def test_a_worker_that_keeps_exiting_fails_early_with_its_status_and_log(
    supervisord: Supervisord,
) -> None:
    supervisord.retries = 0  # Supervisor gives up at the first exit
    supervisord.programs(["p-api-1", "p-background", "other"])
    assert supervisord.run("sync", "^p-api-1$").returncode == 0
    supervisord.wait("p-api-1")
    (supervisord.folder / "health.py").write_text(
        "import sys\nprint('boom: no config')\nsys.exit(3)\n"
    )
    supervisord.release.write_text("R2\n")
    # A wait of 5 minutes: only the end at FATAL returns within the 60 s the run is allowed.
    done = supervisord.restart("p-api-1", "R2", "--wait", "300")
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0] == (
        f"p-api-1: no /health answer with release R2 on "
        f"http://127.0.0.1:{supervisord.ports['p-api-1']}/health"
    )
    assert lines[1].startswith("p-api-1 FATAL")
    assert "boom: no config" in done.stderr


def test_sync_adds_and_removes_only_the_deployments_programs(supervisord: Supervisord) -> None:
    supervisord.wait("p-api-1")
    supervisord.programs(["p-api-2", "p-background"])  # p-api-1 and other are gone
    done = supervisord.run("sync", "^p-(api-[0-9]+|background)$", "p-api-2", "p-background")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "p-api-1: stopped",
        "p-api-1: removed process group",
        "p-api-2: added process group",
    ]
    names = {p["name"] for p in supervisord.rpc.getAllProcessInfo()}
    assert names == {"p-api-2", "p-background", "other"}  # not ours: left as it was
    supervisord.wait("p-api-2")


def test_sync_where_supervisord_does_not_run_does_nothing(tmp_path: Path) -> None:
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"[supervisorctl]\nserverurl=unix://{tmp_path}/none.sock\n")
    done = subprocess.run(
        [SUPERVISOR_PYTHON, str(SCRIPT), "-c", str(conf), "sync", "^p-", "p-api-1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_an_unreadable_config_is_named_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [SUPERVISOR_PYTHON, str(SCRIPT), "-c", str(tmp_path / "no.conf"), "ping"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"supervise.py: {tmp_path / 'no.conf'}: ")
    assert len(done.stderr.splitlines()) == 1


def test_the_server_url_is_read_as_supervisorctl_reads_it(tmp_path: Path) -> None:
    conf = tmp_path / "s.conf"
    conf.write_text("[supervisorctl]\nserverurl=unix://%(here)s/s.sock\nusername=u\npassword=p:w\n")
    assert supervise.server_settings(str(conf)) == (f"unix://{tmp_path}/s.sock", "u", "p:w")
    # Debian's, with its comment after the value.
    conf.write_text(
        "[supervisorctl]\nserverurl=unix:///var/run/supervisor.sock ; use a unix:// URL\n"
    )
    assert supervise.server_settings(str(conf)) == ("unix:///var/run/supervisor.sock", "", "")
    conf.write_text("[supervisord]\n")
    assert supervise.server_settings(str(conf)) == ("http://localhost:9001", "", "")
    conf.write_text("[supervisorctl]\nserverurl=ftp://x\n")
    with pytest.raises(supervise.UsageError, match="serverurl: expected unix:// or http://"):
        supervise.connect(str(conf))


def test_a_broken_file_of_another_deployment_does_not_stop_a_restart(
    supervisord: Supervisord,
) -> None:
    """supervisord cannot reread its config while any included file is broken; the program
    is restarted with the config supervisord has, and the restart says why its change waits."""
    supervisord.wait("p-api-1")
    broken = supervisord.folder / "programs.conf"
    broken.write_text(
        broken.read_text() + "\n[program:theirs]\ncommand=/bin/true\nstartsecs=soon\n"
    )
    supervisord.release.write_text("R2\n")
    done = supervisord.restart("p-api-1", "R2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "p-api-1: /health answers release R2"
    assert done.stderr.startswith("p-api-1: supervisord cannot reread its config, so a change")
    assert "CANT_REREAD" in done.stderr


def test_an_inet_server_with_credentials_and_a_path(tmp_path: Path) -> None:
    """serverurl may have a path (supervisorctl posts to /RPC2 all the same); wrong
    credentials are said in one line that shows no password, exit status 2."""
    port = free_port()
    conf = tmp_path / "supervisord.conf"
    conf.write_text(
        f"[inet_http_server]\nport=127.0.0.1:{port}\nusername=deploy\npassword=s3cret\n\n"
        "[supervisord]\nlogfile=%(here)s/supervisord.log\npidfile=%(here)s/supervisord.pid\n"
        "nodaemon=true\n\n[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
        f"[supervisorctl]\nserverurl=http://127.0.0.1:{port}/ ; a comment\n"
        "username=deploy\npassword=s3cret\n"
    )
    process = subprocess.Popen(
        [SUPERVISORD, "-n", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def ping(config: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [SUPERVISOR_PYTHON, str(SCRIPT), "-c", str(config), "ping"],
            capture_output=True,
            text=True,
            timeout=30,
        )

    try:
        deadline = time.monotonic() + 30
        while (done := ping(conf)).returncode != 0:
            assert time.monotonic() < deadline and process.poll() is None, done.stderr
            time.sleep(0.05)
        wrong = tmp_path / "wrong.conf"
        wrong.write_text(
            f"[supervisorctl]\nserverurl=http://127.0.0.1:{port}\nusername=deploy\npassword=no\n"
        )
        denied = ping(wrong)
        assert denied.returncode == 2
        assert denied.stderr == (
            f"supervise.py: supervisord at http://127.0.0.1:{port} answered 401 Unauthorized; "
            f"see [supervisorctl] in {wrong}\n"
        )
    finally:
        process.terminate()
        process.wait(timeout=30)


def _daemon_conf(folder: Path, logfile: str = "%(here)s/supervisord.log") -> Path:
    """A supervisord that daemonizes, as Debian's does: ``ready`` starts it in the background."""
    conf = folder / "supervisord.conf"
    conf.write_text(
        "[unix_http_server]\nfile=%(here)s/s.sock\nchmod=0700\n\n"
        f"[supervisord]\nlogfile={logfile}\npidfile=%(here)s/supervisord.pid\n"
        "childlogdir=%(here)s\n\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
        "[supervisorctl]\nserverurl=unix://%(here)s/s.sock\n"
    )
    return conf


no_systemd = pytest.mark.skipif(
    os.path.isdir(supervise.SYSTEMD), reason="systemd runs this machine: ready would start its "
    "supervisor service")  # fmt: skip


@no_systemd
def test_ready_starts_supervisord_when_it_does_not_run(tmp_path: Path) -> None:
    """The activation's first Supervisor step: a supervisord that does not run is started
    (where systemd does not run the host, by its config) and waited for until it answers;
    one that runs is left as it is."""
    conf = _daemon_conf(tmp_path)
    pidfile = tmp_path / "supervisord.pid"

    def ready() -> subprocess.CompletedProcess:
        return subprocess.run(
            [SUPERVISOR_PYTHON, str(SCRIPT), "-c", str(conf), "ready", "--service",
             "supervisor"], capture_output=True, text=True, timeout=60)  # fmt: skip

    try:
        started = ready()
        assert (started.returncode, started.stdout) == (0, "supervisord started\n"), started.stderr
        pid = int(pidfile.read_text())
        again = ready()
        assert (again.returncode, again.stdout) == (0, "supervisord runs\n"), again.stderr
        assert int(pidfile.read_text()) == pid
    finally:
        if pidfile.exists():
            pid = int(pidfile.read_text())
            os.kill(pid, 15)
            deadline = time.monotonic() + 30
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)


@no_systemd
def test_ready_fails_when_supervisord_does_not_start(tmp_path: Path, monkeypatch, capsys) -> None:
    """A supervisord that cannot start (here: its log's folder is missing) fails the step,
    said in one line, after a bounded wait: the restarts that follow would fail anyway."""
    conf = _daemon_conf(tmp_path, f"{tmp_path}/missing/supervisord.log")
    monkeypatch.setattr(supervise, "READY_TRIES", 3)
    status = supervise.main(["-c", str(conf), "ready", "--service", "supervisor"])
    out = capsys.readouterr()
    assert status == 1
    assert out.err.splitlines()[-1] == "supervisord did not start"
    assert "supervisord started" not in out.out
