"""Supervisor's XML-RPC for the deploy, run on a host by its system Python: standard library only.

Why not ``supervisorctl``: each call is a Python start that imports all of Supervisor
and pkg_resources, about 0.2 s of CPU. A rolling restart made four of them per
worker and the final sync three per host; on a fleet, or on hosts that share cores,
those starts were most of a batch's time. This script restarts a worker in one start
of about 0.04 s: it applies the program's config change, stops it (Supervisor waits
for its drain), starts it without waiting out ``startsecs``, and polls it until it
answers. The deploy uploads it to each host (``Layout.supervise``) and runs it with
Debian's ``/usr/bin/python3``; it finds supervisord as supervisorctl does, from the
``[supervisorctl]`` section of supervisord's config.

Usage (exit status 0: done, 1: failed, 2: bad arguments or config)::

    supervise.py -c CONF ping
    supervise.py -c CONF sync PATTERN [NAME ...]
    supervise.py -c CONF restart PROGRAM --log FILE (--health URL | --env VAR) --release ID
"""

from __future__ import annotations  # the host's Python may be older than the deployer's

import argparse
import configparser
import http.client
import json
import os
import re
import socket
import sys
import time
import urllib.parse
import xmlrpc.client

RPC_TIMEOUT = 900  # a stop waits for the program's drain; Supervisor kills it at stopwaitsecs
POLL = 0.05  # seconds between checks of a restarted program (a refused connect is cheap)
FATAL_EVERY = 1.0  # seconds between asking whether Supervisor gave up on it
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
    """The ``supervisor`` namespace of supervisord's XML-RPC interface."""
    url, username, password = server_settings(conf)
    auth = ""
    if username:
        auth = f"{urllib.parse.quote(username, safe='')}:{urllib.parse.quote(password, safe='')}@"
    if url.startswith("unix://"):
        transport = _UnixTransport(url[len("unix://") :], timeout)
        return xmlrpc.client.ServerProxy(f"http://{auth}localhost", transport=transport).supervisor
    if url.startswith("http://"):
        address = url[len("http://") :]
        proxy = xmlrpc.client.ServerProxy(
            f"http://{auth}{address}", transport=_TimeoutTransport(timeout)
        )
        return proxy.supervisor
    raise UsageError(f"{conf}: [supervisorctl] serverurl: expected unix:// or http://, got {url!r}")


def _fault(name: str, error: xmlrpc.client.Fault) -> str:
    return f"{name}: ERROR ({error.faultString})"


def _call(name: str, method, *args, ignore: tuple[str, ...] = ()) -> bool:
    """Call; a fault whose name is in ``ignore`` (NOT_RUNNING, ...) is no error."""
    try:
        method(*args)
    except xmlrpc.client.Fault as error:
        if error.faultString.split(":")[0] in ignore:
            return False
        raise
    return True


def sync(supervisor, names: set[str], pattern: str) -> list[str]:
    """Apply supervisord's pending config changes to ``names`` and to the groups whose name
    matches ``pattern``, as ``supervisorctl update NAME...`` does (a changed group is
    stopped, removed and added; a removed one stopped and removed), and no other: a bare
    update would touch every program on the host. Returns the groups (re)added."""
    added, changed, removed = supervisor.reloadConfig()[0]

    def mine(name: str) -> bool:
        return name in names or bool(pattern and re.search(pattern, name))

    applied = []
    for name in filter(mine, removed):
        _call(name, supervisor.stopProcessGroup, name, ignore=("NOT_RUNNING",))
        print(f"{name}: stopped")
        supervisor.removeProcessGroup(name)
        print(f"{name}: removed process group")
    for name in filter(mine, changed):
        _call(name, supervisor.stopProcessGroup, name, ignore=("NOT_RUNNING",))
        print(f"{name}: stopped")
        supervisor.removeProcessGroup(name)
        supervisor.addProcessGroup(name)
        print(f"{name}: updated process group")
        applied.append(name)
    for name in filter(mine, added):
        supervisor.addProcessGroup(name)
        print(f"{name}: added process group")
        applied.append(name)
    return applied


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
    try:
        info = supervisor.getProcessInfo(program)
    except xmlrpc.client.Fault:
        return False
    if info["statename"] != "RUNNING" or info["pid"] <= 0:
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


def _tail(path: str, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError as error:
        return f"{path}: {error.strerror}"
    return "\n".join(text.splitlines()[-lines:])


def restart(supervisor, program: str, check, ok: str, not_ok: str, log: str, wait: float) -> bool:
    """Apply the program's own config change; unless ``check()`` passes already, stop it
    (its drain waited for) and start it without waiting out startsecs; then poll ``check``
    (POLL apart, for ``wait`` seconds), ending early when Supervisor gives up on it (FATAL).
    A failure prints its status and the end of its log on stderr."""
    try:
        if sync(supervisor, {program}, ""):
            pass  # its group was added anew, which starts it (autostart)
        elif check():
            print(f"{program} already {ok}")
            return True
        else:
            _call(program, supervisor.stopProcess, program, True, ignore=("NOT_RUNNING",))
            print(f"{program}: stopped")
            _call(program, supervisor.startProcess, program, False, ignore=("ALREADY_STARTED",))
            print(f"{program}: start requested")
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
                if "FATAL" in state(supervisor, program).split()[1:2]:
                    break
                fatal_check = now + FATAL_EVERY
            time.sleep(POLL)
        print(f"{program}: {not_ok}", file=sys.stderr)
    except xmlrpc.client.Fault as error:
        print(_fault(program, error), file=sys.stderr)
    print(state(supervisor, program), file=sys.stderr)
    print(_tail(log, LOG_LINES), file=sys.stderr)
    return False


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="supervise.py", description=__doc__.split("\n")[0])
    parser.add_argument("-c", dest="conf", required=True, help="supervisord's config")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ping", help="exit 0 when supervisord answers")
    syncing = sub.add_parser("sync", help="add and remove programs to match the config")
    syncing.add_argument("pattern", help="a regex of the deployment's program names")
    syncing.add_argument("names", nargs="*", help="the programs the config has")
    restarting = sub.add_parser("restart", help="restart a program and wait until it serves")
    restarting.add_argument("program")
    restarting.add_argument("--log", required=True, help="its log, shown on a failure")
    restarting.add_argument("--release", required=True, help="the release id it must run")
    how = restarting.add_mutually_exclusive_group(required=True)
    how.add_argument("--health", metavar="URL", help="its /health, which names the release")
    how.add_argument("--env", metavar="VAR", help="the variable in its environment")
    restarting.add_argument("--wait", type=float, default=30, help="seconds it may take")
    return parser.parse_args(argv)


def _checks(supervisor, args: argparse.Namespace):
    """What says the restarted program serves the release: (check, ok, not_ok)."""
    release = args.release
    if args.health:
        return (lambda: answers(args.health, release), f"/health answers release {release}",
                f"no /health answer with release {release} on {args.health}")  # fmt: skip
    return (lambda: runs_with(supervisor, args.program, args.env, release),
            f"runs release {release}", f"does not run release {release}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # each line as it happens, through SSH too
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        supervisor = connect(args.conf)
        if args.command == "ping":
            try:
                supervisor.getState()
            except OSError:
                return 1
            return 0
        if args.command == "sync":
            try:
                supervisor.getState()
            except OSError:
                return 0  # supervisord does not run here: no program to add or remove
            sync(supervisor, set(args.names), args.pattern)
            return 0
        check, ok, not_ok = _checks(supervisor, args)
        passed = restart(supervisor, args.program, check, ok, not_ok, args.log, args.wait)
        return 0 if passed else 1
    except UsageError as error:
        print(f"supervise.py: {error}", file=sys.stderr)
        return 2
    except xmlrpc.client.Fault as error:
        print(_fault(getattr(args, "program", "supervisord"), error), file=sys.stderr)
        return 1
    except OSError as error:
        where = server_settings(args.conf)[0]
        print(f"supervise.py: supervisord at {where}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
