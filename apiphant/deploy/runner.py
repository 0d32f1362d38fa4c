"""Run plans over Fabric connections, or print them (--dry-run); roll back on failure.

Everything is printed before it runs: ``[host] why`` then ``[host] $ command``
(or the upload), then the command's output, prefixed with the host. A
dry run prints the same lines and connects to nothing. A secret upload
shows its path, never its content.
"""

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from apiphant.deploy import commands
from apiphant.deploy.config import Config, Host
from apiphant.deploy.plan import Plan, Step, Upload

Print = Callable[[str], None]


def _print(line: str) -> None:
    print(line, flush=True)


class DeployError(Exception):
    """A deploy, rollback or query that failed; the message says where and why, plainly."""


class StepFailed(DeployError):
    def __init__(self, step: Step, message: str) -> None:
        super().__init__(message)
        self.step = step


class Unreachable(DeployError):
    """The host could not be reached over SSH."""


def _reason(error: BaseException) -> str:
    """The cause in words: paramiko wraps refused connections in NoValidConnectionsError."""
    causes = getattr(error, "errors", None)
    if isinstance(causes, dict) and causes:
        error = next(iter(causes.values()))
    reason = getattr(error, "strerror", None) or str(error)
    return reason if reason else type(error).__name__


class _Prefixed(io.TextIOBase):
    """A stream that writes whole lines, each prefixed with the host."""

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
        if self.buffer:
            self.out(f"{self.prefix}{self.buffer}")
            self.buffer = ""


def describe_upload(upload: Upload) -> str:
    size = upload.size
    what = f"{upload.label} ({size} bytes)" if size and not upload.secret else upload.label
    if upload.secret:
        what += " (content not shown)"
    owner = f"{upload.owner}:{upload.group}"
    return f"upload {what} -> {upload.remote} (mode {upload.mode:04o}, owner {owner})"


def upload_commands(upload: Upload) -> tuple[str, str, str]:
    """Prepare an empty file with the final mode, write it, rename it over the target."""
    directory, _, base = upload.remote.rpartition("/")
    temp = f"{directory}/.{base}.upload"
    return (
        temp,
        commands.upload_prepare(temp, upload.mode, upload.owner, upload.group),
        commands.upload_finish(temp, upload.remote),
    )


class Executor:
    """Runs steps on hosts; this base class only prints them (the dry run)."""

    dry_run = True

    def __init__(self, config: Config, out: Print = _print) -> None:
        self.config = config
        self.out = out

    def announce(self, step: Step) -> None:
        self.out(f"[{step.host}] {step.why}")
        if step.upload:
            temp, prepare, finish = upload_commands(step.upload)
            self.out(f"[{step.host}] $ {prepare}")
            self.out(f"[{step.host}] {describe_upload(step.upload)}")
            self.out(f"[{step.host}] $ {finish}")
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


class Remote(Executor):
    """Runs steps over Fabric connections, one per host, opened on first use."""

    dry_run = False

    def __init__(self, config: Config, fabric_config: Any = None, out: Print = _print) -> None:
        super().__init__(config, out)
        self.fabric_config = fabric_config
        self.connections: dict[str, Any] = {}

    def connection(self, name: str) -> Any:
        if name not in self.connections:
            from fabric import Connection

            host = self.config.host(name)
            kwargs: dict[str, Any] = {"connect_timeout": 15}
            if self.fabric_config is not None:
                kwargs["config"] = self.fabric_config
            conn = Connection(host.ssh, **kwargs)
            try:
                conn.open()
            except Exception as error:  # OSError, paramiko's SSHException and their kin
                raise Unreachable(
                    f"{name} ({host.ssh}): cannot connect: {_reason(error)}"
                ) from None
            self.connections[name] = conn
        return self.connections[name]

    def _shell(self, host: str, command: str, timeout: int, quiet: bool = False) -> Any:
        from invoke.exceptions import CommandTimedOut

        conn = self.connection(host)
        stream = _Prefixed(f"[{host}]   ", self.out)
        try:
            result = conn.run(
                command,
                warn=True,
                hide=True,
                in_stream=False,
                out_stream=None if quiet else stream,
                err_stream=None if quiet else stream,
                timeout=timeout,
            )
        except CommandTimedOut:
            stream.flush()
            raise DeployError(f"{host}: timed out after {timeout}s: {command[:200]}") from None
        except (OSError, EOFError) as error:
            raise Unreachable(f"{host}: connection lost: {error}") from None
        stream.flush()
        return result

    def run(self, step: Step) -> str:
        self.announce(step)
        if step.upload:
            self._upload(step)
            return ""
        result = self._shell(step.host, step.command, step.timeout)
        if result.exited != 0:
            raise StepFailed(step, self._failure(step, result))
        return result.stdout

    def _failure(self, step: Step, result: Any) -> str:
        if step.kind == "lock" and result.exited == commands.LOCKED:
            holder = result.stdout.strip().removeprefix("held by ")
            return (
                f"{step.host}: the deploy lock is held by {holder}; wait for that deploy, or if "
                f"it died: fab unlock --product={self.config.product} {step.host}"
            )
        return f"{step.host}: {step.why} failed (exit {result.exited})"

    def _upload(self, step: Step) -> None:
        upload = step.upload
        assert upload is not None
        temp, prepare, finish = upload_commands(upload)
        for command in (prepare, None, finish):
            if command is None:
                source: IO[bytes] | str
                source = (
                    io.BytesIO(upload.content) if upload.content is not None else str(upload.local)
                )
                try:
                    self.connection(step.host).put(source, temp, preserve_mode=False)
                except (OSError, EOFError) as error:
                    raise StepFailed(
                        step, f"{step.host}: upload to {temp} failed: {error}"
                    ) from None
                continue
            result = self._shell(step.host, command, 60)
            if result.exited != 0:
                raise StepFailed(step, f"{step.host}: {step.why} failed (exit {result.exited})")

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


@dataclass
class Outcome:
    """What a run did, for the final line and the exit status."""

    ok: bool
    message: str


def run_steps(executor: Executor, steps: tuple[Step, ...] | list[Step], switched: set[str]) -> None:
    for step in steps:
        if step.switch:
            switched.add(step.host)
        executor.run(step)


def current_releases(executor: Executor, config: Config, hosts: list[Host]) -> dict[str, str]:
    from apiphant.deploy.render import Paths

    paths = Paths(config.root, "")
    found = {}
    for host in hosts:
        answer = executor.query(
            host.name, commands.current_release(paths), "which release is current"
        ).strip()
        found[host.name] = answer if answer and answer != "current" else ""
    return found


def good_releases(executor: Executor, config: Config, host: Host) -> list[tuple[str, bool, bool]]:
    """(release, good, current) on one host, newest first."""
    from apiphant.deploy.render import Paths

    text = executor.query(host.name, commands.releases(Paths(config.root, "")), "list releases")
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if parts:
            rows.append((parts[0], parts[1:2] == ["good"], "current" in parts[2:]))
    return rows


def say(out: Print, text: str) -> None:
    out("")
    out(f"==> {text}")


def print_plan(plan: Plan, executor: Executor, rollback: Plan | None = None) -> None:
    """The dry run: every phase's steps, and what a failure after the switch would run."""
    for phase, steps in plan.phases():
        if steps:
            say(executor.out, f"{phase} ({len(steps)} steps)")
            for step in steps:
                executor.run(step)
    if rollback is not None:
        say(
            executor.out,
            "on a failure after the switch: rollback to the release current before it",
        )
        for step in rollback.steps():
            executor.run(step)


def execute(
    plan: Plan,
    executor: Executor,
    rollback: Callable[[dict[str, str]], Plan],
    hosts: list[Host],
    config: Config,
) -> Outcome:
    """Run a deploy plan; on a failure after a switch, roll the switched hosts back.

    ``rollback`` builds the rollback plan from {host: previous release}, read
    from each host just before its switch.
    """
    out = executor.out
    locked: list[Step] = []
    switched: set[str] = set()
    previous: dict[str, str] = {}
    try:
        say(out, f"lock: {', '.join(plan.hosts)}")
        for step in plan.lock:
            executor.run(step)
            locked.append(step)
        say(out, f"prepare release {plan.release}")
        run_steps(executor, plan.prepare, switched)
        previous = current_releases(executor, config, hosts)
        try:
            say(out, f"activate release {plan.release}")
            run_steps(executor, plan.activate, switched)
            say(out, "verify")
            run_steps(executor, plan.verify, switched)
        except DeployError as error:
            return _roll_back(error, executor, rollback, hosts, previous, switched, plan)
        say(out, "finish")
        run_steps(executor, plan.finish, switched)
        return Outcome(True, f"release {plan.release} is live on {', '.join(plan.hosts)}")
    except DeployError as error:
        where = "nothing live was touched" if not switched else "after the switch"
        return Outcome(False, f"deploy of {plan.release} failed, {where}: {error}")
    finally:
        _unlock(executor, plan, locked)


def _unlock(executor: Executor, plan: Plan, locked: list[Step]) -> None:
    held = {step.host for step in locked}
    for step in plan.unlock:
        if step.host in held:
            try:
                executor.run(step)
            except DeployError as error:
                executor.out(f"[{step.host}] could not release the deploy lock: {error}")


def _roll_back(
    error: DeployError,
    executor: Executor,
    rollback: Callable[[dict[str, str]], Plan],
    hosts: list[Host],
    previous: dict[str, str],
    switched: set[str],
    plan: Plan,
) -> Outcome:
    out = executor.out
    failed = f"deploy of {plan.release} failed: {error}"
    if not switched:
        return Outcome(False, f"{failed}; nothing was switched, nothing live was touched")
    targets = {h: previous.get(h, "") for h in switched}
    missing = sorted(h for h, r in targets.items() if not r)
    if missing:
        return Outcome(
            False,
            f"{failed}; no previous release on {', '.join(missing)} to roll back to: "
            f"release {plan.release} stays there",
        )
    say(out, f"{failed}")
    say(out, "rolling back: " + ", ".join(f"{h} to {r}" for h, r in sorted(targets.items())))
    back = [h for h in hosts if h.name in targets]
    try:
        rollback_plan = rollback(targets)
        run_steps(executor, rollback_plan.activate, set())
        run_steps(executor, rollback_plan.verify, set())
    except DeployError as again:
        return Outcome(
            False,
            f"{failed}; the rollback failed too: {again}. Hosts: "
            + ", ".join(f"{h.name} -> {targets[h.name]}" for h in back),
        )
    return Outcome(
        False,
        f"{failed}; ROLLED BACK: "
        + ", ".join(f"{h} serves {r} again" for h, r in sorted(targets.items()))
        + " (its workers answer /health with it, and its smoke test passes)",
    )


def run_plan(plan: Plan, executor: Executor) -> Outcome:
    """A plan without rollback (fab rollback, status...): lock, steps, unlock."""
    locked: list[Step] = []
    try:
        for phase, steps in plan.phases():
            if phase == "unlock" or not steps:
                continue
            say(executor.out, phase)
            for step in steps:
                executor.run(step)
                if phase == "lock":
                    locked.append(step)
        return Outcome(True, "done")
    except DeployError as error:
        return Outcome(False, str(error))
    finally:
        _unlock(executor, plan, locked)
