"""Run plans over Fabric connections, or print them (--dry-run); roll back on failure.

Everything is printed before it runs: ``[host] why`` then ``[host] $ command``
(or the upload), then the command's output, prefixed with the host. A
dry run prints the same lines and connects to nothing. A secret upload
shows its path, never its content.
"""

import io
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from shlex import quote as q
from typing import IO, Any

from apiphant.deploy import commands
from apiphant.deploy.config import SUDO_PASSWORD_ENV, Config, Host
from apiphant.deploy.plan import TUNNEL, Local, Phase, Plan, Step, StepKind, Upload, stages

Print = Callable[[str], None]


_printing = threading.Lock()


def _print(line: str) -> None:
    """One whole line at a time: hosts side by side print from their own threads, and
    ``print`` writes the line and its newline apart."""
    with _printing:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class DeployError(Exception):
    """A deploy, rollback or query that failed; the message says where and why, plainly."""


class StepFailed(DeployError):
    def __init__(self, step: Step, message: str, exited: int = 1) -> None:
        super().__init__(message)
        self.step = step
        self.exited = exited


class Unreachable(DeployError):
    """The host could not be reached over SSH."""


class Lost(Unreachable):
    """The host stopped answering while connected: which step it was in matters."""


#: A host that stops answering mid-deploy (its link or its power gone) sends no reset: the
#: SSH connection would wait out the step's whole timeout. SSH keepalives every KEEPALIVE
#: seconds keep data in flight, and the kernel drops the connection once data has gone
#: unacknowledged for LOST_AFTER seconds (TCP_USER_TIMEOUT), so the deploy stops then.
KEEPALIVE = 5
LOST_AFTER = 20


def _reason(error: BaseException) -> str:
    """The cause in words: paramiko wraps refused connections in NoValidConnectionsError;
    an error with no message (paramiko's EOFError when the host went away) is said in
    words too, never as a bare exception class."""
    causes = getattr(error, "errors", None)
    if isinstance(causes, dict) and causes:
        error = next(iter(causes.values()))
    reason = getattr(error, "strerror", None) or str(error)
    if reason:
        return reason
    if isinstance(error, EOFError):
        return "the connection closed"
    if isinstance(error, TimeoutError):
        return "timed out"
    return "no reason given"


def lost_line(host: str, error: BaseException | None = None) -> str:
    """THE words for a host that stopped answering mid-run: its name and "connection lost"
    (the cause after it, when there is one worth saying)."""
    reason = _reason(error) if error is not None else ""
    if reason in ("", "the connection closed", "no reason given"):
        return f"{host}: connection lost"
    return f"{host}: connection lost ({reason})"


class _Prefixed(io.TextIOBase):
    """A stream that writes whole lines, each prefixed with the host.

    Invoke flushes after every chunk it reads, mid-line as often as not: ``flush`` keeps a
    partial line, ``finish`` writes it once the command has ended.
    """

    def __init__(self, prefix: str, out: Print) -> None:
        self.prefix = prefix
        self.out = out
        self.buffer = ""

    def write(self, text: str) -> int:
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            self.out(f"{self.prefix}{line}")
        return len(text)

    def flush(self) -> None:
        """A partial line waits for the rest of it (see the class)."""

    def finish(self) -> None:
        if self.buffer:
            self.out(f"{self.prefix}{self.buffer}")
            self.buffer = ""


def describe_upload(upload: Upload) -> str:
    size = upload.size
    what = f"{upload.label} ({size} bytes)" if size and not upload.secret else upload.label
    if upload.secret:
        what += " (content not shown)"
    if upload.unpack:
        private = (f"; those not readable by all, by group {upload.group} only"
                   if upload.group != "root" else "")  # fmt: skip
        return (f"upload {what}, unpacked into {upload.remote}/ (root's, each file's mode "
                f"kept{private})")  # fmt: skip
    owner = f"{upload.owner}:{upload.group}"
    return f"upload {what} -> {upload.remote} (mode {upload.mode:04o}, owner {owner})"


def upload_commands(upload: Upload, staged: str = "$STAGED") -> tuple[str, str]:
    """Stage the file as the SSH user (who may not be root), then install (or unpack) it as
    root."""
    u = upload
    if u.unpack:
        return commands.STAGE, commands.unpack_upload(staged, u.remote, u.group)
    return commands.STAGE, commands.upload_install(staged, u.remote, u.mode, u.owner, u.group)


class Executor:
    """Runs steps on hosts; this base class only prints them (the dry run)."""

    def __init__(self, config: Config, out: Print = _print) -> None:
        self.config = config
        self.out = out
        #: Hosts that stopped answering during this run, and how it was said: a rollback
        #: leaves them out, and the report of who serves what does not ask them again.
        self.lost: dict[str, str] = {}

    def announce(self, step: Step) -> None:
        self.out(f"[{step.host}] {step.why}")
        if step.upload:
            stage, install = upload_commands(step.upload)
            self.out(f"[{step.host}] $ STAGED=$({stage})")
            self.out(f"[{step.host}] {describe_upload(step.upload)} via $STAGED")
            self.out(f"[{step.host}] $ {install}")
        elif step.local:
            self.out(f"[{step.host}] $ {step.local.shown(step.host)}")
        elif step.download:
            d = step.download
            self.out(f"[{step.host}] download {d.label} {d.remote} -> {d.local} (on the deployer)")
        else:
            self.out(f"[{step.host}] $ {step.command}")

    def run(self, step: Step) -> str:
        self.announce(step)
        return ""

    def query(self, host: str, command: str, why: str) -> str:
        """A read-only command whose answer steers the run (like the current release)."""
        self.out(f"[{host}] {why}")
        self.out(f"[{host}] $ {command}")
        return ""

    def close(self) -> None:
        pass


#: Held while a connection's own copy of the shared Fabric configuration is made
#: (``Remote._own_config``).
_configuring = threading.Lock()


#: What sudo says when it refuses: the user may not, or a password is needed (or wrong).
SUDO_REFUSALS = ("a password is required", "is not in the sudoers", "may not run sudo",
                 "not allowed to execute", "incorrect password",
                 "no password was provided")  # fmt: skip


def sudo_reading_password(command: str) -> str:
    """``command`` as root through a sudo that reads its password from stdin, once.

    The runner writes the password and a newline to the channel's stdin and closes it; no
    one watches the output for a prompt to answer (Fabric's sudo did: it typed the
    password after every ``[sudo] password:`` that a command's output showed, a log line
    or a ``fab run`` command's, and the command could read it). ``-k``: sudo always asks,
    cached credentials or not, so it reads exactly that one line; ``-p ''``: no prompt in
    the output; the command's own stdin is /dev/null, so a password sudo did not ask for
    (passwordless sudo) is read by no one."""
    return f"sudo -k -S -p '' -- sh -c {q('exec </dev/null; ' + command)}"


class _Line(io.StringIO):
    """One line for a command's stdin, the sudo password: handed over in one read (Invoke
    reads a stream that is not a terminal a character at a time, with a pause after each),
    then the end of the stream, which closes the channel's stdin."""

    def __init__(self, text: str) -> None:
        super().__init__(text + "\n")

    def read(self, size: int | None = -1) -> str:
        return super().read()


class Remote(Executor):
    """Runs steps over Fabric connections, one per host, opened on first use. Every command
    runs as root: directly when the SSH user is root, else through sudo (passwordless, or
    with the password from $APIPHANT_SUDO_PASSWORD, never written anywhere: sudo alone
    reads it, see ``sudo_reading_password``)."""

    def __init__(self, config: Config, fabric_config: Any = None, out: Print = _print) -> None:
        super().__init__(config, out)
        self.fabric_config = fabric_config
        self.connections: dict[str, Any] = {}
        self.sudo_password = os.environ.get(SUDO_PASSWORD_ENV) or None

    def connection(self, name: str) -> Any:
        if name not in self.connections:
            from fabric import Connection

            host = self.config.host(name)
            target = self.config.ssh_target(host)
            kwargs: dict[str, Any] = {"connect_timeout": 15}
            if self.fabric_config is not None:
                kwargs["config"] = self._own_config()
            conn = Connection(target, **kwargs)
            try:
                conn.open()
            except Exception as error:  # OSError, paramiko's SSHException and their kin
                again = "connection lost; cannot connect again" if name in self.lost else ""
                self.lost[name] = f"{again or 'cannot connect'}: {_reason(error)}"
                raise Unreachable(
                    f"{name} ({target}): cannot connect: {_reason(error)}"
                ) from None
            _tune(conn)
            self.connections[name] = conn
            self.lost.pop(name, None)
            login = self.config.login_of(host)
            if login != "root":
                self.out(f"[{name}] logged in as {login}: commands run as root through sudo")
        return self.connections[name]

    def _own_config(self) -> Any:
        """A copy of the Fabric configuration for one connection, made under a lock.

        Hosts connect from threads of their own, and Fabric writes to the configuration it
        is given (``Connection`` stores the key files it found back into ``connect_kwargs``,
        which re-merges every level, leaving it empty for a moment; ``clone`` re-reads the
        SSH config files into the original): a shared one made another host's connection
        fail now and then with ``No attribute or config key found for 'port'``. Each
        connection gets its own copy, and only one thread at a time reads the shared one."""
        from fabric import Config as FabricConfig

        with _configuring:
            shared = self.fabric_config
            if isinstance(shared, FabricConfig):
                return shared.clone()
            return shared.clone(into=FabricConfig)

    def _shell(
        self, host: str, command: str, timeout: int, quiet: bool = False, as_root: bool = True
    ) -> Any:
        from invoke.exceptions import CommandTimedOut
        from paramiko import SSHException

        conn = self.connection(host)
        stream = _Prefixed(f"[{host}]   ", self.out)
        sudo = as_root and self.config.login_of(self.config.host(host)) != "root"
        options: dict[str, Any] = {
            "warn": True,
            "hide": True,
            "in_stream": False,
            "out_stream": None if quiet else stream,
            "err_stream": None if quiet else stream,
            "timeout": timeout,
        }
        try:
            if sudo and self.sudo_password:
                options.update(in_stream=_Line(self.sudo_password), echo_stdin=False)
                result = conn.run(sudo_reading_password(command), **options)
            elif sudo:
                result = conn.run(f"sudo -n -- sh -c {q(command)}", **options)
            else:
                result = conn.run(command, **options)
        except CommandTimedOut:
            stream.finish()
            raise DeployError(f"{host}: timed out after {timeout}s: {command[:200]}") from None
        except (OSError, EOFError, SSHException) as error:
            raise self._lose(host, lost_line(host, error)) from None
        stream.finish()
        if result.exited == -1 and not conn.transport.is_active():
            # The channel closed with no exit status: the connection died under the command.
            raise self._lose(host, f"{host}: connection lost (no answer for {LOST_AFTER}s)")
        if sudo and result.exited == 1 and any(r in result.stderr for r in SUDO_REFUSALS):
            login = self.config.login_of(self.config.host(host))
            raise DeployError(
                f"{host}: user {login} may not run this as root with sudo "
                f"({result.stderr.strip().splitlines()[-1][:120]}): {command[:120]}; "
                f"allow it passwordless sudo, or set {SUDO_PASSWORD_ENV}"
            )
        return result

    def _lose(self, host: str, line: str) -> "Lost":
        """A host's connection died: forget it (a later step connects anew, and fails
        quickly if the host is still gone), remember the host as lost, say so."""
        conn = self.connections.pop(host, None)
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a dead connection is best effort
                pass
        self.lost[host] = "connection lost"
        return Lost(line)

    def run(self, step: Step) -> str:
        self.announce(step)
        if step.upload:
            self._upload(step)
            return ""
        if step.local:
            return self._local(step)
        if step.download:
            self._download(step)
            return ""
        try:
            result = self._shell(step.host, step.command, step.timeout)
        except Lost as error:
            raise StepFailed(step, f"{error}, during the step {step.why!r}") from None
        if result.exited != 0:
            raise StepFailed(step, self._failure(step, result), result.exited)
        return result.stdout

    def _failure(self, step: Step, result: Any) -> str:
        if step.kind is StepKind.LOCK and result.exited == commands.LOCKED:
            holder = result.stdout.strip().removeprefix("held by ")
            return (
                f"{step.host}: the deploy lock is held by {holder}; wait for that deploy, or if "
                f"it died: fab unlock --product={self.config.product} {step.host}"
            )
        failed = f"{step.host}: {step.why} failed (exit {result.exited})"
        if step.kind is StepKind.REASON:  # the command's own last word says why, in one line
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            return f"{failed}: {lines[-1].strip()}" if lines else failed
        return failed

    def _upload(self, step: Step) -> None:
        from paramiko import SSHException

        upload = step.upload
        assert upload is not None
        failed = f"{step.host}: {step.why} failed"
        stage, _ = upload_commands(upload)
        try:
            staged = self._shell(step.host, stage, 60, quiet=True, as_root=False)
        except Lost as error:
            raise StepFailed(step, f"{error}, during the step {step.why!r}") from None
        if staged.exited != 0 or not staged.stdout.strip():
            raise StepFailed(step, f"{failed}: cannot make a file in /tmp")
        path = staged.stdout.strip()
        source: IO[bytes] | str
        source = io.BytesIO(upload.content) if upload.content is not None else str(upload.local)
        conn = self.connection(step.host)
        try:
            conn.put(source, path, preserve_mode=False)
        except (OSError, EOFError, SSHException) as error:
            if conn.transport is None or not conn.transport.is_active():
                lost = self._lose(step.host, lost_line(step.host, error))
                raise StepFailed(step, f"{lost}, during the step {step.why!r}") from None
            raise StepFailed(step, f"{failed}: upload to {path}: {_reason(error)}") from None
        _, install = upload_commands(upload, path)
        try:
            result = self._shell(step.host, install, 60)
        except Lost as error:
            raise StepFailed(step, f"{error}, during the step {step.why!r}") from None
        if result.exited != 0:
            raise StepFailed(step, f"{failed} (exit {result.exited})")

    def _download(self, step: Step) -> None:
        """Fetched as the login user (who may not be root): the command that made the file
        made it readable."""
        from paramiko import SSHException

        download = step.download
        assert download is not None
        try:
            self.connection(step.host).get(download.remote, str(download.local))
        except (OSError, EOFError, SSHException) as error:
            raise StepFailed(step, f"{step.host}: {step.why} failed: {download.remote}: "
                             f"{_reason(error)}") from None  # fmt: skip

    def _local(self, step: Step) -> str:
        """A command on this machine, through an SSH tunnel to the step's host (Step.local);
        its output shown as a host's is."""
        local = step.local
        assert local is not None
        failed = f"{step.host}: {step.why} failed"
        conn = self.connection(step.host)
        try:
            with tunnel(conn.transport, local.port) as end:
                done = subprocess.run(
                    list(local.argv), cwd=local.cwd, env=local_environment(local, end),
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    text=True, timeout=step.timeout,
                )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise StepFailed(step, f"{failed}: timed out after {step.timeout}s") from None
        except OSError as error:
            raise StepFailed(step, f"{failed}: {_reason(error)}") from None
        lines = done.stdout.splitlines()
        for line in lines:
            self.out(f"[{step.host}]   {line}")
        if done.returncode != 0:
            last = next((x.strip() for x in reversed(lines) if x.strip()), "")
            raise StepFailed(step, f"{failed} (exit {done.returncode})"
                             + (f": {last}" if last else ""), done.returncode)  # fmt: skip
        return done.stdout

    def query(self, host: str, command: str, why: str) -> str:
        super().query(host, command, why)
        result = self._shell(host, command, 60, quiet=True)
        if result.exited != 0:
            raise DeployError(f"{host}: {why} failed: {result.stderr.strip()[-300:]}")
        return result.stdout

    def close(self) -> None:
        for conn in self.connections.values():
            try:
                conn.close()
            except Exception:  # closing is best effort
                pass
        self.connections.clear()


def local_environment(local: Local, end: str) -> dict[str, str]:
    """This machine's environment without its own APIPHANT_ settings (they would point the
    smoke test elsewhere), and the step's, with the tunnel's end filled in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APIPHANT_")}
    env.update({k: v.replace(TUNNEL, end) for k, v in local.env})
    return env


@contextmanager
def tunnel(transport: Any, port: int) -> Iterator[str]:
    """127.0.0.1:PORT here (the yielded ``host:port``), carried over an open SSH connection
    to the host's own 127.0.0.1:``port``, as ``ssh -L``: each connection made to it is a
    direct-tcpip channel, pumped by Fabric's Tunnel. The listener is bound before this
    yields, on a port the system picks; everything is closed on the way out."""
    from fabric.tunnels import Tunnel

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    pumps: list[Any] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                sock, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                channel = transport.open_channel(
                    "direct-tcpip", ("127.0.0.1", port), peer, timeout=TUNNEL_CONNECT
                )
            except Exception:  # refused on the host, or the connection gone: the client sees
                sock.close()  # its connection closed, and says so
                continue
            pump = Tunnel(channel=channel, sock=sock, finished=threading.Event())
            pump.daemon = True
            pump.start()
            pumps.append(pump)

    acceptor = threading.Thread(target=accept, name="apiphant-tunnel", daemon=True)
    acceptor.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        acceptor.join(5)
        listener.close()
        for pump in pumps:
            pump.finished.set()
            pump.join(5)


#: Seconds a tunnelled connection may take to open on the host's side.
TUNNEL_CONNECT = 15


def _tune(conn: Any) -> None:
    """An open connection's socket: keepalives and TCP_USER_TIMEOUT (see LOST_AFTER), and
    TCP_NODELAY. Without it each command waited about 40 ms: paramiko sends a channel's
    open and its exec as two small packets, and Nagle's algorithm holds the second until
    the host's delayed ACK of the first (OpenSSH's own client sets it, too). A deploy runs
    hundreds of commands and uploads; measured on a test host, a command on an open
    connection went from 45 ms to 4 ms."""
    transport = conn.transport
    transport.set_keepalive(KEEPALIVE)
    sock = transport.sock
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, LOST_AFTER * 1000)


@dataclass
class Outcome:
    """What a run did, for the final line and the exit status."""

    ok: bool
    message: str


def each_at_once(calls: list[tuple[str, Callable[[], Any]]]) -> dict[str, Any]:
    """One small call per host (a lock, a query), all hosts side by side: what each returned,
    or the DeployError it raised, by host in the given order. On ten hosts a command each,
    one after another, is ten round trips; side by side it is one."""

    def one(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except DeployError as error:
            return error

    if len(calls) <= 1:
        return {host: one(call) for host, call in calls}
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="apiphant-host") as pool:
        answers = list(pool.map(one, [call for _, call in calls]))
    return dict(zip([host for host, _ in calls], answers, strict=True))


def run_steps(executor: Executor, steps: tuple[Step, ...] | list[Step], switched: set[str]) -> None:
    """Each step in turn; a StepKind.REPORT step's failure is said and the steps go on."""
    for step in steps:
        if step.switch:
            switched.add(step.host)
        try:
            executor.run(step)
        except DeployError as error:
            if step.kind is not StepKind.REPORT:
                raise
            executor.out(f"[{step.host}] FAILED, reported and not rolled back: {error}")


def by_host(steps: tuple[Step, ...] | list[Step]) -> dict[str, list[Step]]:
    """A phase's steps per host, each host's in their order."""
    grouped: dict[str, list[Step]] = {}
    for step in steps:
        grouped.setdefault(step.host, []).append(step)
    return grouped


def run_side_by_side(
    executor: Executor,
    steps: tuple[Step, ...] | list[Step],
    parallel: int = 0,
    switched: set[str] | None = None,
) -> None:
    """Each host's steps in order, hosts side by side (at most ``parallel`` at once, 0: all):
    preparing ten hosts takes as long as preparing the slowest. A failure stops the other
    hosts at their next step; once all have stopped, the first failure (in config order)
    is raised, naming the others that failed too."""
    switched = set() if switched is None else switched
    hosts = by_host(steps)
    width = min(parallel or len(hosts), len(hosts))
    if width <= 1:
        run_steps(executor, steps, switched)
        return
    stop = threading.Event()
    failures: dict[str, DeployError] = {}

    def one_host(host: str) -> None:
        for step in hosts[host]:
            if stop.is_set():
                return
            try:
                run_steps(executor, [step], switched)
            except DeployError as error:
                failures[host] = error
                stop.set()
                return

    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="apiphant-host") as pool:
        list(pool.map(one_host, hosts))
    if failures:
        first = next(h for h in hosts if h in failures)
        others = [h for h in hosts if h in failures and h != first]
        if not others:
            raise failures[first]
        raise DeployError(f"{failures[first]}; failed too: " + ", ".join(
            str(failures[h]) for h in others))  # fmt: skip


def run_staged(
    executor: Executor,
    steps: tuple[Step, ...] | list[Step],
    switched: set[str],
    parallel: int = 0,
) -> None:
    """A phase's stages one after another, each stage's hosts side by side."""
    for stage in stages(steps):
        run_side_by_side(executor, stage, parallel, switched)


def current_releases(executor: Executor, config: Config, hosts: list[Host]) -> dict[str, str]:
    """The release each host serves (asked of all at once), "" where none is."""
    command = commands.current_release(config.layout)
    answers = each_at_once([
        (h.name, lambda name=h.name: executor.query(name, command, "which release is current"))
        for h in hosts
    ])  # fmt: skip
    found = {}
    for host, answer in answers.items():
        if isinstance(answer, DeployError):
            raise answer
        answer = answer.strip()
        found[host] = answer if answer and answer != "current" else ""
    return found


#: A host's releases, newest first: (release, good, current).
Releases = list[tuple[str, bool, bool]]


def parse_releases(text: str) -> Releases:
    """``commands.releases``' answer: ``ID good|failed [current]`` lines."""
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if parts:
            rows.append((parts[0], parts[1:2] == ["good"], "current" in parts[2:]))
    return rows


def good_releases(executor: Executor, config: Config, host: Host) -> Releases:
    """(release, good, current) on one host, newest first."""
    return parse_releases(
        executor.query(host.name, commands.releases(config.layout), "list releases")
    )


def all_releases(
    executor: Executor, config: Config, hosts: list[Host], why: str = "list releases"
) -> dict[str, Releases | DeployError]:
    """Every host's releases, asked of all at once; a host that cannot answer, its error.
    A host lost earlier in this run is not asked again (that would wait out a connect
    timeout to learn what is known): its error says it was lost."""
    command = commands.releases(config.layout)
    asked = [h.name for h in hosts if h.name not in executor.lost]
    answers = each_at_once([
        (name, lambda name=name: parse_releases(executor.query(name, command, why)))
        for name in asked
    ])  # fmt: skip
    return {
        h.name: answers[h.name] if h.name in answers
        else DeployError(f"{h.name}: {executor.lost[h.name]}")
        for h in hosts
    }  # fmt: skip


def serving_lines(found: dict[str, Releases | DeployError]) -> tuple[bool, list[str]]:
    """Which host serves which release, one line each, and whether they all serve one
    (a host that could not say counts as differing). Pure: ``fab status`` and a deploy or
    rollback that failed part way print it."""
    width = max((len(host) for host in found), default=0)
    served: set[str] = set()
    lines = []
    for host, rows in found.items():
        if isinstance(rows, DeployError):
            served.add("?")
            reason = str(rows).removeprefix(f"{host}: ")
            lines.append(f"  {host:<{width}}  unknown: {reason}")
            continue
        current = next(((r, good) for r, good, is_current in rows if is_current), None)
        if current is None:
            served.add("")
            lines.append(f"  {host:<{width}}  none")
            continue
        served.add(current[0])
        note = "" if current[1] else " (failed: it never passed a deploy)"
        lines.append(f"  {host:<{width}}  {current[0]}{note}")
    return len(served) == 1 and "?" not in served, lines


#: What to do about hosts on different releases; said wherever it is found.
CONVERGE = "the next fab deploy, or fab rollback, brings every host to one release"


def report_serving(executor: Executor, config: Config, hosts: list[Host]) -> bool:
    """Print which host serves which release, loudly when they differ; True when one."""
    one, lines = serving_lines(all_releases(executor, config, hosts, "which release it serves"))
    if one:
        say(executor.out, "every host serves one release:")
    else:
        say(executor.out, f"HOSTS SERVE DIFFERENT RELEASES ({CONVERGE}):")
    for line in lines:
        executor.out(line)
    return one


def say(out: Print, text: str) -> None:
    out("")
    out(f"==> {text}")


def print_plan(
    plan: Plan, executor: Executor, rollback: Plan | None = None, parallel: int = 0
) -> None:
    """The dry run: the lock, every phase's steps, the unlock, and what a failure after the
    switch would run."""
    for phase in (Phase("lock", plan.lock), *plan.phases, Phase("unlock", plan.unlock)):
        steps = phase.steps
        if steps:
            hosts = len(by_host(steps))
            cut = stages(steps)
            if phase.name == "prepare" and hosts > 1 and parallel != 1:
                width = min(parallel or hosts, hosts)
                parts = f" in {len(cut)} stages, one after another" if len(cut) > 1 else ""
                say(executor.out, f"{phase.name} ({len(steps)} steps{parts}; {hosts} hosts "
                    f"side by side, {width} at a time, each host's steps in order)")  # fmt: skip
            elif len(cut) > 1:
                say(executor.out, f"{phase.name} ({len(steps)} steps in {len(cut)} stages, one "
                    "after another; in a stage, hosts side by side)")  # fmt: skip
            else:
                say(executor.out, f"{phase.name} ({len(steps)} steps)")
            for n, stage in enumerate(cut, 1):
                if len(cut) > 1:
                    executor.out(f"-- stage {n}: " + ", ".join(by_host(stage)))
                for step in stage:
                    executor.run(step)
    if rollback is not None:
        say(
            executor.out,
            "on a failure after the switch: rollback to the release current before it",
        )
        for step in rollback.steps():
            executor.run(step)


#: What a run says as a phase begins, by the phase's name (``{release}``: the plan's);
#: a phase not named here is announced by its name.
HEADINGS = {"prepare": "prepare release {release}", "release": "release command",
            "activate": "activate release {release}"}  # fmt: skip


def heading(phase: Phase, plan: Plan) -> str:
    return HEADINGS.get(phase.name, phase.name).format(release=plan.release)


def run_every_host(
    executor: Executor, steps: tuple[Step, ...] | list[Step], failures: dict[str, DeployError]
) -> None:
    """A rollback's phase: its stages in order, each stage's hosts side by side, and every
    host as far as it gets. A host that failed (in this phase or an earlier one: its error
    is in ``failures``) runs none of its later steps; the others go on. One host that
    stopped answering must not leave the others on the release being rolled back."""
    for stage in stages(steps):
        hosts = {h: mine for h, mine in by_host(stage).items() if h not in failures}
        calls = [(h, partial(run_steps, executor, mine, set())) for h, mine in hosts.items()]
        for host, got in each_at_once(calls).items():
            if isinstance(got, DeployError):
                failures[host] = got


def _run_each(executor: Executor, steps: tuple[Step, ...] | list[Step]) -> dict[str, Any]:
    """One step per host, all at once (``each_at_once``): what each returned or raised."""
    return each_at_once([(step.host, lambda step=step: executor.run(step)) for step in steps])


@contextmanager
def locked(executor: Executor, lock: tuple[Step, ...], unlock: tuple[Step, ...]) -> Iterator[None]:
    """THE lock policy: take each host's lock, all hosts at once (a held one stops
    everything, once every other host has answered), act, and release every lock taken,
    also on failure, all at once; a failed release is reported, never hides the result."""
    held: set[str] = set()
    try:
        if lock:
            say(executor.out, "lock: " + ", ".join(step.host for step in lock))
        taken = _run_each(executor, lock)
        held.update(host for host, got in taken.items() if not isinstance(got, DeployError))
        failed = [got for got in taken.values() if isinstance(got, DeployError)]
        if failed:
            raise failed[0]
        yield
    finally:
        released = _run_each(executor, [step for step in unlock if step.host in held])
        for host, got in released.items():
            if isinstance(got, DeployError):
                executor.out(f"[{host}] could not release the deploy lock: {got}")


def run_phase(
    executor: Executor, phase: Phase, switched: set[str], parallel: int = 0
) -> None:
    """A phase's steps as the phase says: staged (hosts side by side, ``parallel`` at most)
    or one after another."""
    if phase.staged:
        run_staged(executor, phase.steps, switched, parallel)
    else:
        run_steps(executor, phase.steps, switched)


def execute(
    plan: Plan,
    executor: Executor,
    rollback: Callable[[dict[str, str]], Plan],
    hosts: list[Host],
    config: Config,
    parallel: int = 0,
) -> Outcome:
    """Run a deploy plan's phases in order under the lock, hosts side by side (``parallel``
    at most, 0: all). Before the first phase that rolls back, ask each host what it serves;
    on a failure in such a phase, roll the switched hosts back to that (``_roll_back``), and
    say which host serves which release."""
    out = executor.out
    switched: set[str] = set()
    lasting = ""  # a phase whose changes a failure leaves (the release command) started
    outcome: Outcome | None = None
    try:
        with locked(executor, plan.lock, plan.unlock):
            previous: dict[str, str] | None = None
            for phase in plan.phases:
                if phase.rolls_back and previous is None:
                    previous = current_releases(executor, config, hosts)
                say(out, heading(phase, plan))
                if phase.lasting:
                    lasting = heading(phase, plan)
                try:
                    run_phase(executor, phase, switched, parallel)
                except DeployError as error:
                    if not phase.rolls_back:
                        raise
                    outcome = _roll_back(error, executor, rollback, previous or {}, switched,
                                         plan, untouched(lasting))  # fmt: skip
                    break
            else:
                outcome = Outcome(True, f"release {plan.release} is live on "
                                  + ", ".join(plan.hosts))  # fmt: skip
    except DeployError as error:
        where = untouched(lasting) if not switched else "after the switch"
        outcome = Outcome(False, f"deploy of {plan.release} failed, {where}: {error}")
    assert outcome is not None  # every way out of the lock above set it
    if not outcome.ok and switched:
        report_serving(executor, config, hosts)
    return outcome


def untouched(lasting: str = "") -> str:
    """What a deploy that failed before any switch left live. Its prepare writes only into
    the new release's folder (its secrets too), so nothing a live program reads changed;
    a phase whose changes last (``lasting``: the release command) that started may have
    changed data, and that is not undone."""
    if lasting:
        return f"nothing was switched (what the {lasting} changed before it failed stays)"
    return "nothing was switched, nothing live was touched"


def _roll_back(
    error: DeployError,
    executor: Executor,
    rollback: Callable[[dict[str, str]], Plan],
    previous: dict[str, str],
    switched: set[str],
    plan: Plan,
    unswitched: str = "",
) -> Outcome:
    """Every switched host back to what it served before, each as far as it gets; a host
    lost in this run is left out (activating a host that comes and goes would leave it
    half on each release), and said."""
    out = executor.out
    failed = f"deploy of {plan.release} failed: {error}"
    if not switched:
        return Outcome(False, f"{failed}; {unswitched or untouched()}")
    lost = sorted(h for h in switched if h in executor.lost)
    targets = {h: previous.get(h, "") for h in sorted(switched) if h not in executor.lost}
    missing = sorted(h for h, r in targets.items() if not r)
    if missing:
        return Outcome(
            False,
            f"{failed}; no previous release on {', '.join(missing)} to roll back to: "
            f"release {plan.release} stays there",
        )
    say(out, f"{failed}")
    left = f"; not {', '.join(lost)}: connection lost" if lost else ""
    say(out, "rolling back: " + ", ".join(f"{h} to {r}" for h, r in targets.items()) + left)
    failures: dict[str, DeployError] = {}
    if targets:
        for phase in rollback(targets).phases:
            run_every_host(executor, phase.steps, failures)
    done = [h for h in targets if h not in failures]
    parts = []
    if done:
        again = ", ".join(f"{h} serves {targets[h]} again" for h in done)
        parts.append(f"ROLLED BACK: {again} (its workers answer /health with it, and its "
                     "smoke test passes)")  # fmt: skip
    parts += [f"the rollback failed on {failures[h]}" for h in targets if h in failures]
    parts += [f"NOT ROLLED BACK: {h}: {executor.lost[h]}" for h in lost]
    return Outcome(False, f"{failed}; " + "; ".join(parts))
