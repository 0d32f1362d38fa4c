"""The transport: a plan's steps run on the hosts over Fabric (SSH) connections, every
command as root, each step printed first and its output prefixed with its host
(``console``); a host that stops answering is found out within seconds; and the SSH
tunnel through which a command on the deployer reaches a host's loopback."""

import io
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from shlex import quote as q
from typing import IO, Any

from apiphant.deploy.config import SUDO_PASSWORD_ENV, Config
from apiphant.deploy.console import DryRun, Print, _Prefixed, _print
from apiphant.deploy.errors import DeployError, Lost, StepFailed, Unreachable
from apiphant.deploy.host import lock
from apiphant.deploy.host.uploads import upload_commands
from apiphant.deploy.plan import TUNNEL, Local, Step, StepKind

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


#: Held while a connection's own copy of the shared Fabric configuration is made
#: (``Remote._own_config``).
_configuring = threading.Lock()


#: What sudo says when it refuses: the user may not, or a password is needed (or wrong).
SUDO_REFUSALS = ("a password is required", "is not in the sudoers", "may not run sudo",
                 "not allowed to execute", "incorrect password",
                 "no password was provided")  # fmt: skip


def sudo_reading_password(command: str) -> str:
    """``command`` as root through a sudo that reads its password from stdin, once.

    ``Remote`` writes the password and a newline to the channel's stdin and closes it; no
    one watches the output for a prompt to answer (Fabric's sudo did: it typed the
    password after every ``[sudo] password:`` that a command's output showed, a log line
    or a ``fab run`` command's, and the command could read it). ``-k``: sudo always asks,
    cached credentials or not, so it reads exactly that one line; ``-p ''``: no prompt in
    the output; the command's own stdin is /dev/null, so a password sudo did not ask for
    (passwordless sudo) is read by no one. A shell reads the line first and hands it to
    sudo through a pipe (``printf`` is a builtin: no command line holds it): the command
    cannot end before the line arrived, so the write never meets a closed channel, as it
    could when a passwordless sudo finished first."""
    as_root = f"sudo -k -S -p '' -- sh -c {q('exec </dev/null; ' + command)}"
    return "sh -c " + q(f"IFS= read -r p && printf '%s\\n' \"$p\" | {as_root}")


class _Line(io.StringIO):
    """One line for a command's stdin, the sudo password: handed over in one read (Invoke
    reads a stream that is not a terminal a character at a time, with a pause after each),
    then the end of the stream, which closes the channel's stdin."""

    def __init__(self, text: str) -> None:
        super().__init__(text + "\n")

    def read(self, size: int | None = -1) -> str:
        return super().read()


class Remote:
    """Runs steps over Fabric connections, one per host, opened on first use. Every command
    runs as root: directly when the SSH user is root, else through sudo (passwordless, or
    with the password from $APIPHANT_SUDO_PASSWORD, never written anywhere: sudo alone
    reads it, see ``sudo_reading_password``). Each step is printed first, as the dry run
    prints it (``shown``)."""

    def __init__(self, config: Config, fabric_config: Any = None, out: Print = _print) -> None:
        self.config = config
        self.out = out
        #: Hosts that stopped answering during this run, and how it was said: a rollback
        #: leaves them out, and the report of who serves what does not ask them again.
        self.lost: dict[str, str] = {}
        self.shown = DryRun(config, out)
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
        self.shown.announce(step)
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
        if step.kind is StepKind.LOCK and result.exited == lock.LOCKED:
            return lock.held_message(step.host, lock.parse_held(result.stdout), self.config.product)
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
        content = upload.data()  # before anything is staged: a Later may fail
        stage, _ = upload_commands(upload)
        try:
            staged = self._shell(step.host, stage, 60, quiet=True, as_root=False)
        except Lost as error:
            raise StepFailed(step, f"{error}, during the step {step.why!r}") from None
        if staged.exited != 0 or not staged.stdout.strip():
            raise StepFailed(step, f"{failed}: cannot make a file in /tmp")
        path = staged.stdout.strip()
        source: IO[bytes] | str
        source = io.BytesIO(content) if content is not None else str(upload.local)
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

    def interactive(self, host: str, command: str, why: str) -> int:
        """A command with a pty, this terminal's keys in and its screen out (``fab db
        psql``); as root (by sudo, which may ask on the pty, for another login). Its status."""
        self.shown.query(host, command, why)
        conn = self.connection(host)
        if self.config.login_of(self.config.host(host)) != "root":
            command = f"sudo -- sh -c {q(command)}"
        return conn.run(command, pty=True, warn=True).exited

    def query(self, host: str, command: str, why: str) -> str:
        self.shown.query(host, command, why)
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
