"""What a plan is made of: steps (a command, an upload, a download, or a command on the
deployer through a tunnel), their stages, and the plan that holds them. Pure data."""

from dataclasses import dataclass, replace
from pathlib import Path
from shlex import quote as q

from apiphant.deploy import commands


@dataclass(frozen=True)
class Upload:
    """A file to put on a host: from memory or a local path, private when ``secret``."""

    remote: str
    mode: int
    label: str
    owner: str = "root"
    group: str = "root"
    content: bytes | None = None
    local: Path | None = None
    secret: bool = False
    #: An archive unpacked into the folder ``remote`` (its files root's, with their modes).
    unpack: bool = False

    @property
    def size(self) -> int:
        if self.content is not None:
            return len(self.content)
        return self.local.stat().st_size if self.local and self.local.exists() else 0


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
    #: "lock": a failure means another deploy holds the lock; "report": a failure is
    #: reported and the plan goes on; "passthrough": output and exit status are the user's.
    #: "reason": a failure ends with the last line the command wrote to stderr (its cause).
    kind: str = ""
    #: Within a phase, steps of one stage run host beside host (each host's in order), and
    #: a stage begins when the one before it has ended everywhere.
    stage: int = 0


def staged(stages: list[list[Step]]) -> list[Step]:
    """Stages in order, each step numbered with its stage; empty stages dropped."""
    numbered = [steps for steps in stages if steps]
    return [replace(step, stage=n) for n, steps in enumerate(numbered) for step in steps]


def stages(steps: tuple[Step, ...] | list[Step]) -> list[list[Step]]:
    """A phase's steps cut where the stage changes: what the runner runs one after another."""
    cut: list[list[Step]] = []
    for step in steps:
        if not cut or cut[-1][-1].stage != step.stage:
            cut.append([])
        cut[-1].append(step)
    return cut


@dataclass(frozen=True)
class Plan:
    """The phases of a deploy (or a rollback), in order."""

    release: str
    hosts: tuple[str, ...]
    lock: tuple[Step, ...] = ()
    prepare: tuple[Step, ...] = ()
    release_phase: tuple[Step, ...] = ()
    activate: tuple[Step, ...] = ()
    verify: tuple[Step, ...] = ()
    finish: tuple[Step, ...] = ()
    unlock: tuple[Step, ...] = ()

    def phases(self) -> list[tuple[str, tuple[Step, ...]]]:
        return [
            ("lock", self.lock),
            ("prepare", self.prepare),
            ("release", self.release_phase),
            ("activate", self.activate),
            ("verify", self.verify),
            ("finish", self.finish),
            ("unlock", self.unlock),
        ]

    def steps(self) -> list[Step]:
        return [step for _, steps in self.phases() for step in steps]


def merged(host: str, parts: list[tuple[str, str]], timeout: int = 900) -> Step:
    """Small commands with no decision between them as one step: one round trip instead of
    one each. Its why names every part, in order; the first that fails stops the rest."""
    return Step(
        host, "; ".join(why for why, _ in parts), commands.join(*(c for _, c in parts)),
        timeout=timeout,
    )  # fmt: skip
