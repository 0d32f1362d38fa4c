"""What a run shows: every step printed before it runs (``[host] why``, then ``[host] $
command`` or the upload), each command's output prefixed with its host, and the phases'
headings. ``DryRun`` prints those lines and runs nothing; a secret upload shows its path,
never its content. The only code that reads a phase's name."""

import io
import sys
import threading
from collections.abc import Callable
from typing import Protocol

from apiphant.deploy.config import Config
from apiphant.deploy.host.uploads import upload_commands
from apiphant.deploy.plan import Phase, Plan, Step, Upload, by_host, stages

Print = Callable[[str], None]


_printing = threading.Lock()


def _print(line: str) -> None:
    """One whole line at a time: hosts side by side print from their own threads, and
    ``print`` writes the line and its newline apart."""
    with _printing:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


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


class Hosts(Protocol):
    """What a plan runs on: the hosts themselves (``ssh.Remote``), or the dry run
    (``DryRun``). The orchestration (``orchestrate``) knows no other."""

    config: Config
    out: Print
    #: Hosts that stopped answering during this run, and how it was said.
    lost: dict[str, str]

    def run(self, step: Step) -> str:
        """Print the step, run it, and return what it wrote; a failure raises DeployError."""
        ...

    def query(self, host: str, command: str, why: str) -> str:
        """A read-only command whose answer steers the run (like the current release)."""
        ...

    def close(self) -> None: ...


class DryRun:
    """The dry run: every step and query printed as a real run prints it, nothing run.
    ``ssh.Remote`` prints each step through one of these before it runs it, so the two
    print the same lines."""

    def __init__(self, config: Config, out: Print = _print) -> None:
        self.config = config
        self.out = out
        #: ``Hosts.lost``: a dry run connects to nothing, so loses nothing.
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


def say(out: Print, text: str) -> None:
    out("")
    out(f"==> {text}")


def print_plan(
    plan: Plan, executor: Hosts, rollback: Plan | None = None, parallel: int = 0
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
