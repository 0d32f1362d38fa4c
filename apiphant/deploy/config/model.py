"""PRODUCT/deploy.toml as frozen dataclasses: one per table, and ``Config``, the whole
deployment (what follows from it, workers and programs, is in ``topology``)."""

from dataclasses import dataclass
from pathlib import Path

from apiphant.address import format_address
from apiphant.app import DEFAULT_MAX_BODY
from apiphant.deploy.config.keys import key
from apiphant.deploy.config.topology import Topology
from apiphant.deploy.layout import PRODUCTION
from apiphant.request import DEFAULT_MAX_JSON_VALUES

DEFAULT_PORT = 8001
DEFAULT_PYTHON = "/usr/bin/python3"
DEFAULT_STOP_TIMEOUT = 10.0
DEFAULT_WORKERS = 2
KEEP_RELEASES = 5
KNOWN_ROLES = ("nginx", "api", "background")
#: Where a non-root SSH user's sudo password comes from, if it needs one: never a file.
SUDO_PASSWORD_ENV = "APIPHANT_SUDO_PASSWORD"

# HTTPS: where Nginx's certificate comes from (apiphant.deploy.tls)
TLS_MODES = ("off", "acme", "files")
#: How the hosts of one platform get a release's new virtualenv: "copy", one of them builds
#: it and the others unpack its copy (sent through the deploying machine); "build", each
#: builds its own from the wheels (fewer bytes from the deployer, more CPU on every host).
VENV_MODES = ("copy", "build")
LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
#: Untrusted certificates, generous rate limits: for trying a setup out.
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
DEFAULT_TLS_LISTEN = "443"
#: tls = "files": the lines of the secrets file that name the certificate chain and its key
#: on this machine. The deploy reads them; they are not passed to the programs.
TLS_CERT_KEY = "APIPHANT_TLS_CERT"
TLS_KEY_KEY = "APIPHANT_TLS_KEY"


@dataclass(frozen=True)
class Api:
    """What every API worker is started with (apiphant's serve options)."""

    max_body: int = key(DEFAULT_MAX_BODY)
    max_json_values: int = key(DEFAULT_MAX_JSON_VALUES)
    keepalive_timeout: float = key(75.0)
    header_timeout: float = key(10.0)
    request_timeout: float = key(30.0)
    drain_timeout: float = key(10.0)
    max_connections: int | None = key(None)
    access_log: bool = key(False)
    #: Browser origins allowed to call the API (CORS), and the request headers they may send.
    cors_origins: tuple[str, ...] = key(())
    cors_headers: tuple[str, ...] = key(())


@dataclass(frozen=True)
class Background:
    """What the background runner is started with (apiphant-background's options)."""

    stop_timeout: float = key(DEFAULT_STOP_TIMEOUT)


def listen_address(host: str, port: int) -> str:
    """Nginx's ``listen``: the port alone, or HOST:PORT (an IPv6 host in brackets)."""
    return format_address(host, port) if host else str(port)


def rlimit_nofile(worker_connections: int) -> int:
    """Open files per Nginx worker: every connection, plus room for logs and temp files."""
    return worker_connections + 1024


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
class Nginx:
    """The front: where it listens and how long it waits."""

    listen_host: str = key("", toml="listen")  # "" = every address
    listen_port: int = key(80, toml="listen")
    connect_timeout: float = key(2.0)
    read_timeout: float = key(60.0)
    send_timeout: float = key(60.0)
    client_timeout: float = key(15.0)
    keepalive_timeout: float = key(65.0)
    upstream_keepalive: int = key(32)
    #: Nginx closes an idle upstream connection after this; a draining worker waits
    #: longer (``drain_idle_grace``) before closing one, so Nginx never writes to a closed one.
    #: Short, because a worker the rolling restart stops waits that long for the idle ones
    #: that traffic leaves behind; a connection made again costs a round trip on a LAN.
    upstream_keepalive_timeout: float = key(1.0)
    #: Whole seconds, as Nginx counts them: a worker that refused a connection in second S
    #: (max_fails=1) gets no requests while now - S <= fail_timeout, so for the rest of that
    #: second with 0, up to two seconds with 1 (``back_within``). Under load the rolling
    #: restart waits that out after each batch. A host that died (no refusal, a connect
    #: timeout) costs one request ``connect_timeout`` of delay about once per back_within.
    fail_timeout: int = key(0)
    #: Connections per Nginx worker process, clients and upstreams together. Debian's 768
    #: let about 1,500 slow clients shut everyone out.
    worker_connections: int = key(16384)
    #: Requests in progress per client address (0: no limit); more get a JSON 429.
    limit_conn: int = key(100)
    #: Requests per second ("20r/s") or minute ("600r/m") per client address; "" for none.
    limit_req: str = key("")
    limit_req_burst: int = key(20)
    #: The front's way in for the host itself (the deploy's smoke test), on loopback only:
    #: the public server answers only its server_names.
    local_port: int = key(8000)

    @property
    def drain_idle_grace(self) -> float:
        return self.upstream_keepalive_timeout + 1

    @property
    def back_within(self) -> int:
        """Seconds after its last refusal by which Nginx sends a worker requests again."""
        return self.fail_timeout + 1

    @property
    def worker_rlimit_nofile(self) -> int:
        return rlimit_nofile(self.worker_connections)

    @property
    def listen(self) -> str:
        return listen_address(self.listen_host, self.listen_port)

    @property
    def local_url(self) -> str:
        """The URL of this front as seen from its own host: what the smoke test calls."""
        return f"http://127.0.0.1:{self.local_port}"

    #: The Host of the loopback server that tells the deploy which worker Nginx sends a
    #: pool's requests to (the rolling restart's rotation check); ``.invalid`` never resolves.
    rotation_host = "rotation.apiphant.invalid"
    #: The header it names the answering worker in (Nginx's $upstream_addr).
    rotation_header = "X-Apiphant-Upstream"

    def rotation_url(self, pool: str) -> str:
        return f"{self.local_url}/{pool}"


@dataclass(frozen=True)
class Tls:
    """HTTPS at Nginx: off, a certificate from an ACME CA (certbot), or one from files."""

    mode: str = key("off", toml="tls")
    domains: tuple[str, ...] = key(())
    acme_email: str = key("")
    acme_server: str = key(LETSENCRYPT)
    #: A CA bundle on the hosts that certbot trusts for the ACME server's own HTTPS (a private
    #: ACME CA such as step-ca); "" for the system's.
    acme_ca_bundle: str = key("")
    hsts: bool = key(False)
    listen_host: str = key("", toml="tls_listen", section="nginx")
    listen_port: int = key(int(DEFAULT_TLS_LISTEN), toml="tls_listen", section="nginx")

    @property
    def on(self) -> bool:
        return self.mode != "off"

    @property
    def acme(self) -> bool:
        return self.mode == "acme"

    @property
    def listen(self) -> str:
        return listen_address(self.listen_host, self.listen_port)

    @property
    def port_suffix(self) -> str:
        """What an https:// URL needs after the host: nothing on 443."""
        return "" if self.listen_port == 443 else f":{self.listen_port}"

    @property
    def local_address(self) -> str:
        """Where the host itself reaches its HTTPS listener (the smoke test)."""
        return self.listen_host if self.listen_host not in ("", "0.0.0.0", "::") else "127.0.0.1"


@dataclass(frozen=True)
class Logs:
    """How every host rotates the deployment's logs: its rotation program runs logrotate
    every ``check_every`` seconds; a log is rotated daily, or sooner once past ``max_size``."""

    max_size: int = key(100 * 1024**2)
    #: A log may grow past ``max_size`` by what is written in this time, before it rotates.
    check_every: float = key(300.0)


@dataclass(frozen=True)
class Host:
    """One machine of the deployment: how to reach it and what it runs."""

    name: str
    ssh: str = key()
    roles: tuple[str, ...] = key()
    workers: int = key(0)
    first_port: int = key(DEFAULT_PORT)
    private_address: str | None = key(None)

    def has(self, role: str) -> bool:
        return role in self.roles

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(range(self.first_port, self.first_port + self.workers))


@dataclass(frozen=True)
class Pool:
    """API hosts that serve some targets; the pool without targets gets the rest."""

    name: str
    hosts: tuple[str, ...] = key()
    targets: tuple[str, ...] = key(())

    @property
    def is_default(self) -> bool:
        return not self.targets


@dataclass(frozen=True, kw_only=True)
class Config(Topology):
    """A whole deployment of one product. The fields read from deploy.toml's top level come
    in the order of its keys (what the "unknown key" message lists); the others last."""

    product: str = key()
    tls: Tls = key(factory=Tls, inline=True)
    #: Who the deploy logs in as where a host's ``ssh`` names no user; not root: sudo.
    login: str = key("root", toml="user")
    #: Run once per deploy in the new release before any worker switches (migrations).
    release_command: str = key("", toml="release")
    #: Run once after the smoke test passed; a failure is reported, not rolled back.
    after_deploy: str = key("")
    server_names: tuple[str, ...] = key()
    keep_releases: int = key(KEEP_RELEASES)
    batch: Batch = key(factory=Batch)
    venv: str = key(VENV_MODES[0])
    python: str = key(DEFAULT_PYTHON)
    secrets: Path | None = key(None)
    environment: tuple[tuple[str, str], ...] = key(())
    api: Api = key(factory=Api)
    background: Background = key(factory=Background)
    nginx: Nginx = key(factory=Nginx)
    logs: Logs = key(factory=Logs)
    hosts: tuple[Host, ...] = key()
    pools: tuple[Pool, ...] = key()
    product_dir: Path
    path: Path
    env: str = PRODUCTION
