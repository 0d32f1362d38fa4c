"""Supervisor's XML-RPC for the deploy, run on a host by its system Python: standard library only.

Each ``supervisorctl`` is a Python start that imports all of Supervisor, about 0.2 s of
CPU; this client restarts a worker in one start of about 0.04 s, and starts supervisord
when it does not run. The deploy uploads it to each host (``Layout.supervise``) and runs
it with ``/usr/bin/python3``, the Python Debian's supervisor runs on. It reaches
supervisord as supervisorctl does, by the ``serverurl``, ``username`` and ``password`` of
the ``[supervisorctl]`` section of supervisord's config (``%(here)s`` expanded). Exit
status 0: done, 1: failed or not running, 2: bad arguments or config, or supervisord
answered with an error. ``supervise.py -c CONF COMMAND --help`` says the rest.
"""

from __future__ import annotations  # the host's Python may be older than the deployer's

import argparse
import configparser
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import xmlrpc.client

SUCCESS = 80  # supervisor.xmlrpc.Faults.SUCCESS: a process's status in a group's results
RPC_TIMEOUT = 900  # a stop waits for the program's drain; Supervisor kills it at stopwaitsecs
#: Seconds between checks of a restarted worker's /health. It answers about 0.1 s after its
#: start, and a rolling restart waits for each batch in turn: at 0.05 s a batch waited 25 ms
#: on average past the answer. A check before then is one refused connect, which is cheap.
POLL = 0.01
#: Seconds between asking supervisord about a program without a port: each is an XML-RPC
#: call that supervisord's one thread answers, and what it waits for (``startsecs``) is a
#: second, so polling it as often as a port would only load supervisord.
POLL_SUPERVISOR = 0.05
FATAL_EVERY = 1.0  # seconds between asking whether Supervisor gave up on it
#: A supervisord just started has 50 tries, 0.2 s apart, to answer.
READY_TRIES, READY_POLL = 50, 0.2
#: This folder exists where systemd runs the host (sd_booted): then it starts supervisord.
SYSTEMD = "/run/systemd/system"
LOG_LINES = 30  # of the program's log, shown when it does not come up


class UsageError(Exception):
    """Bad arguments or an unreadable config: exit status 2, one line."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__()
        self.socket_path = socket_path
        self.timeout = timeout

    def make_connection(self, host):  # type: ignore[override]
        _, self._extra_headers, _ = self.get_host_info(host)  # basic auth, if any
        return _UnixConnection(self.socket_path, self.timeout)


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def make_connection(self, host):  # type: ignore[override]
        connection = super().make_connection(host)
        connection.timeout = self.timeout
        return connection


def server_settings(conf: str) -> tuple[str, str, str]:
    """(serverurl, username, password) from the config's [supervisorctl] section, with
    supervisorctl's default; ``%(here)s`` is the config's folder, as Supervisor expands it."""
    # As Supervisor reads it: Debian's file has comments after values (`; use a unix:// URL`).
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    try:
        with open(conf, encoding="utf-8") as f:
            parser.read_file(f)
    except (OSError, configparser.Error) as error:
        raise UsageError(f"{conf}: {error}") from None
    here = os.path.dirname(os.path.abspath(conf))

    def get(key: str, default: str) -> str:
        value = parser.get("supervisorctl", key, fallback=default)
        return value.replace("%(here)s", here)

    return get("serverurl", "http://localhost:9001"), get("username", ""), get("password", "")


def connect(conf: str, timeout: float = RPC_TIMEOUT):
    """The ``supervisor`` namespace of supervisord's XML-RPC interface (at /RPC2, whatever
    path the server URL has, as supervisorctl posts it)."""
    url, username, password = server_settings(conf)
    auth = ""
    if username:
        auth = f"{urllib.parse.quote(username, safe='')}:{urllib.parse.quote(password, safe='')}@"
    if url.startswith("unix://"):
        transport = _UnixTransport(url[len("unix://") :], timeout)
        return xmlrpc.client.ServerProxy(f"http://{auth}localhost", transport=transport).supervisor
    if url.startswith("http://"):
        address = urllib.parse.urlsplit(url).netloc
        proxy = xmlrpc.client.ServerProxy(
            f"http://{auth}{address}/RPC2", transport=_TimeoutTransport(timeout)
        )
        return proxy.supervisor
    raise UsageError(f"{conf}: [supervisorctl] serverurl: expected unix:// or http://, got {url!r}")


class Failed(Exception):
    """What supervisord did not do, in one line (the deploy shows it and goes on or stops)."""


def _fault(name: str, error: xmlrpc.client.Fault) -> str:
    return f"{name}: ERROR ({error.faultString})"


def _is(error: xmlrpc.client.Fault, *names: str) -> bool:
    """The fault is one of ``names`` (NOT_RUNNING, ...): its string starts with the name."""
    return error.faultString.split(":")[0] in names


def _unless(fault: str, method, *args) -> None:
    """Call ``method``; the fault ``fault`` (NOT_RUNNING, ALREADY_STARTED) is no error."""
    try:
        method(*args)
    except xmlrpc.client.Fault as error:
        if not _is(error, fault):
            raise


def sync(supervisor, names: set[str], pattern: str) -> tuple[list[str], list[str]]:
    """Apply supervisord's pending config changes to ``names`` and to the groups whose name
    matches ``pattern``, as ``supervisorctl update NAME...`` does (a changed group is
    stopped, removed and added; a removed one stopped and removed unless a process would
    not stop), and no other: a bare update would touch every program on the host. One
    group's failure is shown and the others go on. Returns the groups (re)added and those
    that failed."""
    added, changed, removed = supervisor.reloadConfig()[0]

    def mine(name: str) -> bool:
        return name in names or bool(pattern and re.search(pattern, name))

    def stopped(name: str) -> bool:
        results = supervisor.stopProcessGroup(name)
        print(f"{name}: stopped")
        if any(r["status"] != SUCCESS for r in results):
            print(f"{name}: has problems; not removing", file=sys.stderr)
            return False
        return True

    applied, failed = [], []
    for group, action in ([(n, "remove") for n in filter(mine, removed)]
                          + [(n, "change") for n in filter(mine, changed)]
                          + [(n, "add") for n in filter(mine, added)]):  # fmt: skip
        try:
            if action != "add" and not stopped(group):
                failed.append(group)
                continue
            if action != "add":
                supervisor.removeProcessGroup(group)
            if action == "remove":
                print(f"{group}: removed process group")
                continue
            supervisor.addProcessGroup(group)
            print(f"{group}: {'updated' if action == 'change' else 'added'} process group")
            applied.append(group)
        except xmlrpc.client.Fault as error:
            print(_fault(group, error), file=sys.stderr)
            failed.append(group)
    return applied, failed


def _running(supervisor) -> bool:
    """supervisord answers; an error it answers with (its credentials...) is raised."""
    try:
        supervisor.getState()
    except OSError:
        return False
    return True


def ready(supervisor, conf: str, service: str) -> int:
    """Start supervisord when it does not run (by systemd's ``service`` where systemd runs
    the host), and wait, bounded, until it answers. Programs are left untouched, and the
    config is not reread here: each program's restart applies its own change."""
    if _running(supervisor):
        print("supervisord runs")
        return 0
    start = ["systemctl", "start", service] if os.path.isdir(SYSTEMD) else [
        "supervisord", "-c", conf]  # fmt: skip
    try:
        subprocess.call(start)  # what it says is shown; whether supervisord answers decides
    except OSError as error:
        print(f"supervise.py: {start[0]}: {error.strerror}", file=sys.stderr)
        return 1
    for _ in range(READY_TRIES):
        if _running(supervisor):
            print("supervisord started")
            return 0
        time.sleep(READY_POLL)
    print("supervisord did not start", file=sys.stderr)
    return 1


def answers(url: str, release: str) -> bool:
    """The worker at ``url`` (its /health) answers 200 with this release id."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=2)
    try:
        connection.request("GET", parts.path or "/")
        response = connection.getresponse()
        body = json.loads(response.read())
    except (OSError, ValueError, http.client.HTTPException):
        return False
    finally:
        connection.close()
    return response.status == 200 and isinstance(body, dict) and body.get("release") == release


def runs_with(supervisor, program: str, variable: str, release: str) -> bool:
    """Supervisor has ``program`` RUNNING (past its startsecs), with ``variable=release`` in
    its environment: a program without a port is checked by what it was started with."""
    return started_with(supervisor, program, variable, release, ("RUNNING",))


def started_with(
    supervisor, program: str, variable: str, release: str, states=("STARTING",),
    running_for: float = 0,
) -> bool:
    """Supervisor has ``program`` in one of ``states``, or RUNNING for less than
    ``running_for`` seconds, with ``variable=release`` in its environment (the run script
    exports the release it started in)."""
    try:
        info = supervisor.getProcessInfo(program)
    except xmlrpc.client.Fault:
        return False
    young = info["statename"] == "RUNNING" and info["now"] - info["start"] < running_for
    if not (info["statename"] in states or young) or info["pid"] <= 0:
        return False
    try:
        with open(f"/proc/{info['pid']}/environ", "rb") as f:
            environ = f.read().split(b"\0")
    except OSError:
        return False
    return f"{variable}={release}".encode() in environ


def state(supervisor, program: str) -> str:
    try:
        info = supervisor.getProcessInfo(program)
    except xmlrpc.client.Fault as error:
        return _fault(program, error)
    return f"{program} {info['statename']} {info['description']}".rstrip()


def _gave_up(supervisor, program: str) -> bool:
    """Supervisor has the program FATAL: it kept exiting at start-up, and is not retried."""
    try:
        return supervisor.getProcessInfo(program)["statename"] == "FATAL"
    except xmlrpc.client.Fault:
        return False


def _tail(path: str, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError as error:
        return f"{path}: {error.strerror}"
    return "\n".join(text.splitlines()[-lines:])


def restart(
    supervisor, program: str, check, ok: str, not_ok: str, log: str, wait: float, started=None,
    no_wait: bool = False, poll: float = POLL,
) -> bool:
    """Apply the program's own config change; unless ``check()`` passes already, or the
    program is starting on the release already (``started()``: supervisord itself started it
    after the switch, as on a first deploy), stop it (its drain waited for) and start it
    without waiting out startsecs; then poll ``check`` (``poll`` apart, for ``wait`` seconds),
    ending early when Supervisor gives up on it (FATAL), or, with ``no_wait``, return (a
    later call checks). A failure prints its status and the end of its log on stderr."""
    try:
        try:
            applied, failed = sync(supervisor, {program}, "")
        except xmlrpc.client.Fault as error:
            if not _is(error, "CANT_REREAD"):
                raise
            # Another file of supervisord's config is broken (not ours: it was checked). Its
            # config as loaded still runs this program: restart it with that, and say so.
            why = error.faultString.splitlines()[0]
            print(f"{program}: supervisord cannot reread its config, so a change to this "
                  f"program waits ({why})", file=sys.stderr)  # fmt: skip
            applied, failed = [], []
        if failed:
            raise Failed(f"{program}: its config change could not be applied")
        if applied:
            pass  # its group was added anew, which starts it (autostart)
        elif check():
            print(f"{program} already {ok}")
            return True
        elif started is not None and started():
            print(f"{program}: starting on the release already; waiting for it")
        else:
            _unless("NOT_RUNNING", supervisor.stopProcess, program, True)
            print(f"{program}: stopped")
            _unless("ALREADY_STARTED", supervisor.startProcess, program, False)
            print(f"{program}: start requested")
        if no_wait:
            print(f"{program}: not waited for here; checked later")
            return True
        now = time.monotonic()
        deadline, fatal_check = now + wait, now + FATAL_EVERY
        while True:
            if check():
                print(f"{program}: {ok}")
                return True
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= fatal_check:
                if _gave_up(supervisor, program):
                    break
                fatal_check = now + FATAL_EVERY
            time.sleep(poll)
        print(f"{program}: {not_ok}", file=sys.stderr)
    except xmlrpc.client.Fault as error:
        print(_fault(program, error), file=sys.stderr)
    except Failed as error:
        print(error, file=sys.stderr)
    print(state(supervisor, program), file=sys.stderr)
    print(_tail(log, LOG_LINES), file=sys.stderr)
    return False


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="supervise.py", description=__doc__.split("\n")[0])
    parser.add_argument("-c", dest="conf", required=True, help="supervisord's config")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ping", help="exit 0 when supervisord answers")
    readying = sub.add_parser("ready", help="start supervisord unless it runs; wait for it")
    readying.add_argument("--service", required=True, help="its unit, where systemd runs")
    syncing = sub.add_parser("sync", help="add and remove programs to match the config")
    syncing.add_argument("pattern", help="a regex of the deployment's program names")
    syncing.add_argument("names", nargs="*", help="the programs the config has")
    restarting = sub.add_parser("restart", help="restart a program and wait until it serves")
    restarting.add_argument("program")
    restarting.add_argument("--log", required=True, help="its log, shown on a failure")
    restarting.add_argument("--release", required=True, help="the release id it must run")
    restarting.add_argument("--env", metavar="VAR", required=True,
                            help="the variable of its environment that names its release")
    restarting.add_argument("--health", metavar="URL",
                            help="its /health, which names the release (else: --env)")  # fmt: skip
    waiting = restarting.add_mutually_exclusive_group()
    waiting.add_argument("--wait", type=float, default=30, help="seconds it may take")
    waiting.add_argument("--no-wait", action="store_true",
                         help="return once it is started (a later restart checks it)")  # fmt: skip
    return parser.parse_args(argv)


def _checks(supervisor, args: argparse.Namespace):
    """What says the restarted program serves the release: (check, ok, not_ok, poll)."""
    release = args.release
    if args.health:
        return (lambda: answers(args.health, release), f"/health answers release {release}",
                f"no /health answer with release {release} on {args.health}", POLL)  # fmt: skip
    return (lambda: runs_with(supervisor, args.program, args.env, release),
            f"runs release {release}", f"does not run release {release}",
            POLL_SUPERVISOR)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # each line as it happens, through SSH too
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        supervisor = connect(args.conf)
        if args.command == "ready":
            return ready(supervisor, args.conf, args.service)
        if args.command in ("ping", "sync") and not _running(supervisor):
            # Not running: ping says so (1); sync has no program to add or remove.
            return 1 if args.command == "ping" else 0
        if args.command == "ping":
            return 0
        if args.command == "sync":
            _, failed = sync(supervisor, set(args.names), args.pattern)
            return 1 if failed else 0
        check, ok, not_ok, poll = _checks(supervisor, args)

        def started() -> bool:
            # STARTING, or RUNNING for less than the wait: Supervisor calls a worker RUNNING
            # after startsecs, and on a first deploy, where supervisord starts every program
            # of a host at once (on shared cores, all importing), it may not listen yet.
            # One that ran longer on the release and fails its check is restarted.
            return started_with(supervisor, args.program, args.env, args.release,
                                running_for=args.wait)  # fmt: skip

        passed = restart(supervisor, args.program, check, ok, not_ok, args.log, args.wait,
                         started, args.no_wait, poll)  # fmt: skip
        return 0 if passed else 1
    except UsageError as error:
        print(f"supervise.py: {error}", file=sys.stderr)
        return 2
    except xmlrpc.client.Fault as error:
        print(_fault(getattr(args, "program", "supervisord"), error), file=sys.stderr)
        return 1
    except xmlrpc.client.ProtocolError as error:  # its URL holds the credentials: not shown
        where = server_settings(args.conf)[0]
        print(f"supervise.py: supervisord at {where} answered {error.errcode} {error.errmsg}; "
              f"see [supervisorctl] in {args.conf}", file=sys.stderr)  # fmt: skip
        return 2
    except (xmlrpc.client.ResponseError, http.client.HTTPException, ValueError) as error:
        where = server_settings(args.conf)[0]
        print(f"supervise.py: supervisord at {where}: not an XML-RPC answer ({error!r:.200})",
              file=sys.stderr)  # fmt: skip
        return 2
    except OSError as error:
        where = server_settings(args.conf)[0]
        print(f"supervise.py: supervisord at {where}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
