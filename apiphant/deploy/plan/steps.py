"""What a plan is made of: steps (a command, an upload, a download, or a command on the
deployer through a tunnel), their stages, the phases that hold them and how each runs, and
the plan. Pure data: ``orchestrate`` reads a phase's flags, never its name."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from shlex import quote as q

from apiphant.deploy.host.shell import join

#: An upload's content known only while the plan runs (a secret read from another host
#: under the deploy lock): called once, when the upload runs; a dry run never calls it.
Later = Callable[[], bytes]


@dataclass(frozen=True)
class Upload:
    """A file to put on a host: from memory or a local path, private when ``secret``."""

    remote: str
    mode: int
    label: str
    owner: str = "root"
    group: str = "root"
    content: bytes | Later | None = None
    local: Path | None = None
    secret: bool = False
    #: An archive unpacked into the folder ``remote`` (its files root's, with their modes).
    unpack: bool = False

    @property
    def size(self) -> int:
        """0 for content not known yet (``Later``)."""
        if callable(self.content):
            return 0
        if self.content is not None:
            return len(self.content)
        return self.local.stat().st_size if self.local and self.local.exists() else 0

    def data(self) -> bytes | None:
        """The content from memory, made now if it is ``Later``; None for a local file."""
        return self.content() if callable(self.content) else self.content


@dataclass(frozen=True)
class Download:
    """A file a host made, fetched to the deploying machine (``local``) for other hosts."""

    remote: str
    local: Path
    label: str


#: In a Local command's environment: the deployer's end of the SSH tunnel (127.0.0.1:PORT).
TUNNEL = "{tunnel}"


@dataclass(frozen=True)
class Local:
    """A command run on the deploying machine, about one host: while it runs, an SSH tunnel
    over that host's connection carries 127.0.0.1:PORT here (``{tunnel}`` in ``env``) to the
    host's own 127.0.0.1:``port``, its Nginx's loopback listener."""

    argv: tuple[str, ...]
    cwd: str
    port: int
    env: tuple[tuple[str, str], ...] = ()

    def shown(self, host: str) -> str:
        """The command as a shell line, and where the tunnel goes."""
        env = "".join(f"{k}={q(v)} " for k, v in self.env)
        line = " ".join(q(a) for a in self.argv)
        return (f"(on the deployer; {TUNNEL}: an SSH tunnel to {host}'s 127.0.0.1:{self.port}) "
                f"cd {q(self.cwd)} && {env}{line}")  # fmt: skip


class StepKind(StrEnum):
    """What a step's failure means. A string enum: ``kind="lock"`` is ``StepKind.LOCK``."""

    #: The plan stops (after a switch, the deploy rolls back).
    PLAIN = ""
    #: Another deploy holds the lock.
    LOCK = "lock"
    #: Reported, and the plan goes on.
    REPORT = "report"
    #: Output and exit status are the user's (``fab run``, ``fab status``).
    PASSTHROUGH = "passthrough"
    #: The failure ends with the last line the command wrote to stderr (its cause).
    REASON = "reason"


@dataclass(frozen=True)
class Step:
    """One command or upload on one host (or a command on the deployer about it), and why."""

    host: str
    why: str
    command: str = ""
    upload: Upload | None = None
    local: Local | None = None
    download: Download | None = None
    switch: bool = False  # after this step the host serves ``release``
    timeout: int = 900
    #: What a failure of this step means (``StepKind``); a plain string is taken as one.
    kind: StepKind = StepKind.PLAIN
    #: Within a phase, steps of one stage run host beside host (each host's in order), and
    #: a stage begins when the one before it has ended everywhere.
    stage: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", StepKind(self.kind))


def staged(stages: list[list[Step]]) -> list[Step]:
    """Stages in order, each step numbered with its stage; empty stages dropped."""
    numbered = [steps for steps in stages if steps]
    return [replace(step, stage=n) for n, steps in enumerate(numbered) for step in steps]


def stages(steps: tuple[Step, ...] | list[Step]) -> list[list[Step]]:
    """A phase's steps cut where the stage changes: what a run takes one after another."""
    cut: list[list[Step]] = []
    for step in steps:
        if not cut or cut[-1][-1].stage != step.stage:
            cut.append([])
        cut[-1].append(step)
    return cut


def by_host(steps: tuple[Step, ...] | list[Step]) -> dict[str, list[Step]]:
    """A phase's steps per host, each host's in their order."""
    grouped: dict[str, list[Step]] = {}
    for step in steps:
        grouped.setdefault(step.host, []).append(step)
    return grouped


@dataclass(frozen=True)
class Phase:
    """A part of a plan, and how it runs. ``staged``: its stages one after another, each
    stage's hosts side by side; else its steps one after another (a command that runs once).
    ``rolls_back``: a failure in it rolls every switched host back to what it served before
    the first such phase began. ``lasting``: what it changes stays even when the deploy
    fails (the release command's migrations); the failure says so."""

    name: str
    steps: tuple[Step, ...] = ()
    staged: bool = True
    rolls_back: bool = False
    lasting: bool = False

    def of(self, steps: Iterable[Step]) -> "Phase":
        """This phase with these steps."""
        return replace(self, steps=tuple(steps))


PREPARE = Phase("prepare")
RELEASE = Phase("release", staged=False, lasting=True)
ACTIVATE = Phase("activate", rolls_back=True)
VERIFY = Phase("verify", rolls_back=True)
FINISH = Phase("finish")
#: A deploy's phases in the order they run: the plan's builders give them their steps.
DEPLOY = (PREPARE, RELEASE, ACTIVATE, VERIFY, FINISH)
#: How Plan's keyword arguments name them: ``release`` is a plan's release id.
_ARGUMENT = {"release": "release_phase"}


@dataclass(frozen=True, init=False)
class Plan:
    """The phases of a deploy (or a rollback), in order, between the deploy lock's steps
    and its release's. The lock and unlock steps are no phase: the lock is taken before any
    phase and released after them all, whatever happened (``orchestrate.locked``)."""

    release: str
    hosts: tuple[str, ...]
    lock: tuple[Step, ...]
    phases: tuple[Phase, ...]
    unlock: tuple[Step, ...]

    def __init__(
        self,
        release: str,
        hosts: tuple[str, ...],
        *,
        lock: tuple[Step, ...] = (),
        phases: tuple[Phase, ...] = (),
        unlock: tuple[Step, ...] = (),
        **named: tuple[Step, ...],
    ) -> None:
        """``phases``; or a deploy's phases by name, with their steps (``activate=steps``,
        ``release_phase=`` for the release command's): those named, in a deploy's order."""
        names = {_ARGUMENT.get(p.name, p.name): p for p in DEPLOY}
        unknown = set(named) - set(names)
        if unknown:
            raise TypeError(f"Plan: no phase named {', '.join(sorted(unknown))}")
        given = tuple(p.of(named[n]) for n, p in names.items() if n in named)
        object.__setattr__(self, "release", release)
        object.__setattr__(self, "hosts", tuple(hosts))
        object.__setattr__(self, "lock", tuple(lock))
        object.__setattr__(self, "phases", tuple(phases) + given)
        object.__setattr__(self, "unlock", tuple(unlock))

    def phase(self, name: str) -> tuple[Step, ...]:
        """The steps of the phase of that name; none when the plan has no such phase."""
        return next((p.steps for p in self.phases if p.name == name), ())

    @property
    def prepare(self) -> tuple[Step, ...]:
        return self.phase(PREPARE.name)

    @property
    def release_phase(self) -> tuple[Step, ...]:
        return self.phase(RELEASE.name)

    @property
    def activate(self) -> tuple[Step, ...]:
        return self.phase(ACTIVATE.name)

    @property
    def verify(self) -> tuple[Step, ...]:
        return self.phase(VERIFY.name)

    @property
    def finish(self) -> tuple[Step, ...]:
        return self.phase(FINISH.name)

    def steps(self) -> list[Step]:
        """Every step, in the order a run would take them."""
        return [*self.lock, *(s for p in self.phases for s in p.steps), *self.unlock]


def merged(host: str, parts: list[tuple[str, str]], timeout: int = 900) -> Step:
    """Small commands with no decision between them as one step: one round trip instead of
    one each. Its why names every part, in order; the first that fails stops the rest."""
    return Step(
        host, "; ".join(why for why, _ in parts), join(*(c for _, c in parts)),
        timeout=timeout,
    )  # fmt: skip
