"""A private PostgreSQL cluster in a folder, for development and tests: no Docker, no root.

``apiphant db start PRODUCT`` runs one in PRODUCT/.postgres/ from the system's PostgreSQL
binaries (``initdb`` and ``pg_ctl``), reached through a Unix socket in that folder only (no
TCP port, so two products' clusters never collide and nothing outside the machine reaches
them), trusting the local user; ``apiphant.testing.postgres`` runs one in a temporary folder.

initdb and pg_ctl refuse to run as root. A root user (CI runs as root) therefore runs them as
the ``postgres`` user Debian's package creates, through ``runuser``, with the folder owned by
that user; anyone else runs them directly, as themselves.
"""

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from apiphant.db.url import socket_url

#: The cluster's folder in a product (the template's .gitignore leaves it out of git).
FOLDER = ".postgres"
#: Where Debian's packages put each major version's binaries, after ``pg_config --bindir``.
SEARCH = ("/usr/lib/postgresql",)
#: The Debian package that has them.
PACKAGE = "postgresql"
#: Who runs the binaries when we are root.
OWNER = "postgres"
#: libpq's name for the socket in its folder (port 5432: one cluster per folder).
SOCKET = ".s.PGSQL.5432"
#: The longest path of a Unix socket (sun_path holds 108 bytes with its final NUL).
MAX_SOCKET_PATH = 107
#: Seconds pg_ctl may wait for the server to start or stop.
WAIT = 60


class ClusterError(Exception):
    """A cluster that cannot start or stop: one line. ``status`` is the exit status: 2 when
    the user's machine or input must change (PostgreSQL missing, a folder out of reach)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _version(bindir: Path) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin`` -> ``(15,)``: the newest major version first."""
    name = bindir.parent.name
    return tuple(int(part) for part in name.split(".") if part.isdigit()) or (0,)


def candidates(pg_config_bindir: str | None, search: tuple[str, ...] = SEARCH) -> list[Path]:
    """Where to look for initdb and pg_ctl, in order: pg_config's answer, then each major
    version under ``search``, newest first. Pure."""
    found = [Path(pg_config_bindir)] if pg_config_bindir else []
    for root in search:
        found += sorted(Path(root).glob("*/bin"), key=_version, reverse=True)
    return found


def find_bindir(search: tuple[str, ...] | None = None) -> Path:
    """The folder of the system's initdb and pg_ctl; ClusterError (status 2) naming the
    package to install when there is none."""
    pg_config = shutil.which("pg_config")
    answer = None
    if pg_config:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        answer = done.stdout.strip() if done.returncode == 0 else None
    for bindir in candidates(answer, SEARCH if search is None else search):
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise ClusterError(
        f"PostgreSQL is not installed (no initdb or pg_ctl found): "
        f"apt-get install {PACKAGE}", status=2,
    )  # fmt: skip


def as_owner(argv: list[str]) -> list[str]:
    """``argv`` as the cluster's owner runs it: through runuser as ``postgres`` when we are
    root (initdb and postgres refuse root), as it is otherwise."""
    return ["runuser", "-u", OWNER, "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str], what: str, log: Path | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        reason = said[-1] if said else f"exit status {done.returncode}"
        where = f" (see {log})" if log is not None and log.exists() else ""
        raise ClusterError(f"{what} failed: {reason}{where}")


def _zombie(pid: int) -> bool:
    """A postmaster killed but not reaped (its parent, often the init of a container, does
    not wait for it) still answers kill 0: dead all the same."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


@dataclass(frozen=True)
class Cluster:
    """A cluster in ``folder``: its data in ``folder/data``, its socket and log in ``folder``;
    ``user`` is its superuser and ``dbname`` the database created with it."""

    folder: Path
    user: str
    dbname: str

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    @property
    def url(self) -> str:
        return socket_url(str(self.folder), self.user, self.dbname)

    def exists(self) -> bool:
        return (self.data / "PG_VERSION").is_file()

    def pid(self) -> int | None:
        """The postmaster's process id while it runs, from its postmaster.pid."""
        try:
            first = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # alive, another user's
            pass
        return None if _zombie(pid) else pid

    def running(self) -> bool:
        return self.pid() is not None and (self.folder / SOCKET).exists()

    def start(self, bindir: Path | None = None) -> bool:
        """Create the cluster if it is new, and start it; False when it already ran."""
        if self.running():
            return False
        bindir = bindir or find_bindir()
        self._prepare()
        fresh = not self.exists()
        if fresh:
            _run(as_owner([str(bindir / "initdb"), "-D", str(self.data), "-A", "trust",
                           "-U", self.user, "-E", "UTF8", "--no-instructions"]),
                 f"initdb in {self.folder}")  # fmt: skip
        # pg_ctl hands -o to a shell: the folder is quoted for it.
        server = f"-k {shlex.quote(str(self.folder))} -c listen_addresses=''"
        _run(as_owner([str(bindir / "pg_ctl"), "-D", str(self.data), "-o", server,
                       "-l", str(self.log), "-w", "-t", str(WAIT), "start"]),
             f"PostgreSQL in {self.folder}", self.log)  # fmt: skip
        if fresh and self.dbname != "postgres":
            _run([str(bindir / "createdb"), "-h", str(self.folder), "-U", self.user, self.dbname],
                 f"createdb {self.dbname}", self.log)  # fmt: skip
        return True

    def stop(self, bindir: Path | None = None) -> bool:
        """Stop the cluster (fast: open sessions are ended); False when it did not run."""
        if self.pid() is None:
            return False
        bindir = bindir or find_bindir()
        _run(as_owner([str(bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                       "-t", str(WAIT), "stop"]), f"stopping PostgreSQL in {self.folder}",
             self.log)  # fmt: skip
        return True

    def remove(self) -> None:
        """Stop it and delete its folder: every row, gone."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _prepare(self) -> None:
        """The folder, owned by whoever runs the binaries; refused when that user could not
        reach it or its socket path would be too long."""
        socket = self.folder / SOCKET
        if len(str(socket).encode()) > MAX_SOCKET_PATH:
            raise ClusterError(f"the socket path {socket} is too long for a Unix socket "
                               f"({MAX_SOCKET_PATH} bytes at most): use a shorter folder",
                               status=2)  # fmt: skip
        self.folder.mkdir(exist_ok=True)
        if os.geteuid() != 0:
            return
        shutil.chown(self.folder, OWNER, OWNER)
        done = subprocess.run(as_owner(["test", "-w", str(self.folder)]))
        if done.returncode != 0:
            raise ClusterError(
                f"{OWNER} cannot reach {self.folder}: as root, PostgreSQL runs as the {OWNER} "
                f"user (initdb refuses root); put the product in a folder {OWNER} can reach",
                status=2,
            )


def of_product(path: Path, name: str) -> Cluster:
    """A product's development cluster: its database and superuser are named as it is."""
    return Cluster(path / FOLDER, name, name)


def running_url(product: Path) -> str | None:
    """The URL of the product's development cluster if it runs; nothing is started."""
    from apiphant.product import ProductError, locate

    if not (product / FOLDER).is_dir():
        return None
    try:
        found = locate(product)
    except ProductError:
        return None
    cluster = of_product(found.path, found.name)
    return cluster.url if cluster.running() else None
