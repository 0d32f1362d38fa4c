"""PRODUCT/deploy.toml as frozen dataclasses: one per table (the front's, Nginx and Tls, are
in ``front``), and ``Config``, the whole deployment (what follows from it, workers and
programs, is in ``topology``)."""

from dataclasses import dataclass
from pathlib import Path

from apiphant.deploy.config.front import Nginx, Tls
from apiphant.deploy.config.keys import key, setting_key
from apiphant.deploy.config.topology import Topology
from apiphant.deploy.layout import PRODUCTION
from apiphant.settings.schema import default, env_name

DEFAULT_PORT = 8001
DEFAULT_PYTHON = "/usr/bin/python3"
DEFAULT_STOP_TIMEOUT: float = default("stop_timeout")
DEFAULT_WORKERS = 2
KEEP_RELEASES = 5
KNOWN_ROLES = ("nginx", "api", "background", "postgres")
#: PostgreSQL's own port: the one a cluster of the postgres role listens on unless told.
DEFAULT_DB_PORT = 5432
#: Where a non-root SSH user's sudo password comes from, if it needs one: never a file.
SUDO_PASSWORD_ENV = env_name("sudo_password")

#: How the hosts of one platform get a release's new virtualenv: "copy", one of them builds
#: it and the others unpack its copy (sent through the deploying machine); "build", each
#: builds its own from the wheels (fewer bytes from the deployer, more CPU on every host).
VENV_MODES = ("copy", "build")


@dataclass(frozen=True)
class Api:
    """What every API worker is started with (apiphant's serve options): each field is the
    setting of its name in apiphant.settings.schema (``deploy="api.NAME"``), in the order
    the "unknown key" message lists them."""

    max_body: int = setting_key("max_body")
    max_json_values: int = setting_key("max_json_values")
    keepalive_timeout: float = setting_key("keepalive_timeout")
    header_timeout: float = setting_key("header_timeout")
    request_timeout: float = setting_key("request_timeout")
    drain_timeout: float = setting_key("drain_timeout")
    max_connections: int | None = setting_key("max_connections")
    access_log: bool = setting_key("access_log")
    cors_origins: tuple[str, ...] = setting_key("cors_origins")
    cors_headers: tuple[str, ...] = setting_key("cors_headers")
    cors_credentials: bool = setting_key("cors_credentials")
    max_active: int = setting_key("max_active")
    queue_timeout: float = setting_key("queue_timeout")
    linger_timeout: float = setting_key("linger_timeout")
    linger_time: float = setting_key("linger_time")
    docs: bool = setting_key("docs")


@dataclass(frozen=True)
class Background:
    """What the background runner is started with (apiphant-background's options), as Api."""

    stop_timeout: float = setting_key("stop_timeout")


@dataclass(frozen=True)
class Database:
    """``[database]``: the deployment's PostgreSQL (a host with the postgres role, or one
    elsewhere whose URL is a line of the secrets file), and each program's pool of
    connections to it."""

    port: int = key(
        DEFAULT_DB_PORT,
        help="the postgres host's PostgreSQL port (its private address, when other hosts use it)",
    )
    url_env: str = key(
        "",
        help=(
            "a database elsewhere (a managed one) instead of a postgres host: the name of the "
            "secrets file's line that holds its URL, which the programs get as `DATABASE_URL`"
        ),
        default_doc="none",
    )
    db_pool_size: int = setting_key("db_pool_size", toml="pool_size")
    db_pool_timeout: float = setting_key("db_pool_timeout", toml="pool_timeout")
    backup_every: float = key(
        86400.0,
        help=(
            "how often the postgres host's `P-backup` dumps the database (`pg_dump -Fc`): "
            'seconds, or `"30m"`, `"6h"`, `"1d"`'
        ),
        default_doc='`"1d"`',
    )
    keep_backups: int = key(
        7, help="how many backups the postgres host, and the host that holds their copies, keep"
    )


@dataclass(frozen=True)
class Batch:
    """How many of a pool's workers the rolling restart takes out at once: a count, or a
    percentage of the pool (Kamal's boot limit); never the whole pool, so it always serves."""

    count: int = 1
    percent: int = 0

    def size(self, workers: int) -> int:
        wanted = -(-workers * self.percent // 100) if self.percent else self.count
        return max(1, min(wanted, workers - 1))

    def __str__(self) -> str:
        return f"{self.percent}%" if self.percent else str(self.count)


@dataclass(frozen=True)
class Logs:
    """How every host rotates the deployment's logs: its rotation program runs logrotate
    every ``check_every`` seconds; a log is rotated daily, or sooner once past ``max_size``."""

    max_size: int = key(
        100 * 1024**2,
        help='a log is rotated daily, or sooner once past this size (like `"64K"`)',
        default_doc='`"100M"`',
    )
    #: A log may grow past ``max_size`` by what is written in this time, before it rotates.
    check_every: float = key(
        300.0, help="seconds between two runs of logrotate by every host's `P-logrotate`"
    )


@dataclass(frozen=True)
class Host:
    """One machine of the deployment: how to reach it and what it runs."""

    name: str
    ssh: str = key(
        help="`HOST`, `HOST:PORT`, `USER@HOST` or `USER@HOST:PORT`", default_doc="`NAME`"
    )
    roles: tuple[str, ...] = key(
        help="`nginx`, `api`, `background` (on one host only) and `postgres` (on one host only)"
    )
    workers: int = key(0, help="API workers on consecutive ports (api hosts only)", default_doc="2")
    first_port: int = key(DEFAULT_PORT, help="the first API worker's port")
    private_address: str | None = key(
        None,
        help="where other hosts' Nginx reach its workers, which bind it: a private address",
    )

    def has(self, role: str) -> bool:
        return role in self.roles

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(range(self.first_port, self.first_port + self.workers))


@dataclass(frozen=True)
class Pool:
    """API hosts that serve some targets; the pool without targets gets the rest."""

    name: str
    hosts: tuple[str, ...] = key(
        help="the api hosts of the pool (without pools: one, of every api host)"
    )
    targets: tuple[str, ...] = key(
        (), help='target prefixes it serves, like `"v0/reports"`; the pool without gets the rest'
    )

    @property
    def is_default(self) -> bool:
        return not self.targets


@dataclass(frozen=True, kw_only=True)
class Config(Topology):
    """A whole deployment of one product. The fields read from deploy.toml's top level come
    in the order of its keys (what the "unknown key" message lists); the others last."""

    product: str = key(
        help="the product folder's name; also the system user, `/opt/P`, `/var/log/P`"
    )
    tls: Tls = key(factory=Tls, inline=True)
    login: str = key(
        "root",
        toml="user",
        help="who the deploy logs in as where a host's `ssh` names no user; not root: sudo",
    )
    release_command: str = key(
        "",
        toml="release",
        help="run once per deploy in the new release before the switch (migrations)",
        default_doc="none",
    )
    after_deploy: str = key(
        "",
        help="run once per deploy after the smoke test; a failure is reported, not rolled back",
        default_doc="none",
    )
    server_names: tuple[str, ...] = key(
        help="Nginx `server_name`s: the only Hosts the public listener serves"
    )
    keep_releases: int = key(KEEP_RELEASES, help="good releases kept per host")
    batch: Batch = key(
        factory=Batch,
        help=(
            "workers of a pool the rolling restart takes out at once: a number or a share like "
            '`"25%"`'
        ),
        default_doc="1",
    )
    venv: str = key(
        VENV_MODES[0],
        help=(
            '`"copy"`: one host of a platform builds the virtualenv, the others unpack its copy; '
            '`"build"`: each builds'
        ),
    )
    python: str = key(DEFAULT_PYTHON, help="the host's Python that makes the virtualenv")
    secrets: Path | None = key(
        None, help="a `KEY=value` file on this machine, never printed", default_doc="none"
    )
    environment: tuple[tuple[str, str], ...] = key(
        (),
        table=dict,
        help='clear variables of every program, like `SENTRY_ENVIRONMENT = "production"`',
        default_doc="",
    )
    api: Api = key(factory=Api, table=Api)
    background: Background = key(factory=Background, table=Background)
    nginx: Nginx = key(factory=Nginx, table=Nginx)
    logs: Logs = key(factory=Logs, table=Logs)
    database: Database = key(factory=Database, table=Database)
    hosts: tuple[Host, ...] = key(table=Host, named=True)
    pools: tuple[Pool, ...] = key(table=Pool, named=True)
    product_dir: Path
    path: Path
    env: str = PRODUCTION
