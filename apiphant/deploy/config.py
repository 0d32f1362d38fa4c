"""PRODUCT/deploy.toml, parsed and checked into frozen dataclasses.

Every name that later reaches a shell command, a file path or a config
file (product, hosts, pools, targets, server names, environment keys) is
checked against a strict pattern here, so the layers above can rely on it.
A mistake is one line naming the key and what was expected::

    deploy.toml: hosts.web1.workers: expected a positive integer, got 'x'
"""

import ipaddress
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apiphant import settings
from apiphant.address import format_address
from apiphant.app import DEFAULT_MAX_BODY, RELEASE_ENV
from apiphant.cors import CorsError, policy
from apiphant.deploy.layout import MAX_USER, PRODUCTION, Layout
from apiphant.product import name_problem
from apiphant.request import DEFAULT_MAX_JSON_VALUES

DEFAULT_PORT = 8001
DEFAULT_PYTHON = "/usr/bin/python3"
DEFAULT_STOP_TIMEOUT = 10.0
DEFAULT_WORKERS = 2
KEEP_RELEASES = 5
KNOWN_ROLES = ("nginx", "api", "background")

HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
SSH = re.compile(
    r"(?:(?P<user>[a-z_][a-z0-9_-]{0,31})@)?"
    r"(?P<host>[A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
SERVER_NAME = re.compile(r"(\*\.)?[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*")
POOL = re.compile(r"[a-z][a-z0-9_]{0,30}")
TARGET = re.compile(r"v[0-9]+(/[A-Za-z_][A-Za-z0-9_]*)*")
ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ABS_PATH = re.compile(r"/[A-Za-z0-9_./+-]*")
RATE = re.compile(r"[1-9][0-9]{0,5}r/[sm]")
#: Set by the deploy: the release id; the CORS policy from [api]; the fronts as trusted proxies.
RESERVED_ENV = {
    RELEASE_ENV: "the release id",
    settings.CORS_ORIGINS: "[api] cors_origins",
    settings.CORS_HEADERS: "[api] cors_headers",
    settings.TRUSTED_PROXIES: "the hosts with the nginx role",
}
ANY_TEXT = re.compile(r"[^,\s]{1,200}")  # each checked by apiphant.cors.policy
ENV_NAME = re.compile(r"[a-z][a-z0-9]{0,15}")
LOGIN = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
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
#: A name a certificate can be issued for: letters, digits and hyphens in labels, at least two
#: labels, a top-level label that is not a number (no IP address, no wildcard: HTTP-01).
DOMAIN = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?"
)
EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")
ACME_URL = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/-]*)?")
#: tls = "files": the lines of the secrets file that name the certificate chain and its key
#: on this machine. The deploy reads them; they are not passed to the programs.
TLS_CERT_KEY = "APIPHANT_TLS_CERT"
TLS_KEY_KEY = "APIPHANT_TLS_KEY"


class ConfigError(Exception):
    """A deploy.toml that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class Api:
    """What every API worker is started with (apiphant's serve options)."""

    max_body: int = DEFAULT_MAX_BODY
    max_json_values: int = DEFAULT_MAX_JSON_VALUES
    keepalive_timeout: float = 75.0
    header_timeout: float = 10.0
    request_timeout: float = 30.0
    drain_timeout: float = 10.0
    max_connections: int | None = None
    access_log: bool = False
    #: Browser origins allowed to call the API (CORS), and the request headers they may send.
    cors_origins: tuple[str, ...] = ()
    cors_headers: tuple[str, ...] = ()


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

    listen_host: str = ""  # "" = every address
    listen_port: int = 80
    connect_timeout: float = 2.0
    read_timeout: float = 60.0
    send_timeout: float = 60.0
    client_timeout: float = 15.0
    keepalive_timeout: float = 65.0
    upstream_keepalive: int = 32
    #: Nginx closes an idle upstream connection after this; a draining worker waits
    #: longer (``drain_idle_grace``) before closing one, so Nginx never writes to a closed one.
    #: Short, because a worker the rolling restart stops waits that long for the idle ones
    #: that traffic leaves behind; a connection made again costs a round trip on a LAN.
    upstream_keepalive_timeout: float = 1.0
    #: Whole seconds, as Nginx counts them: a worker that refused a connection in second S
    #: (max_fails=1) gets no requests while now - S <= fail_timeout, so for the rest of that
    #: second with 0, up to two seconds with 1 (``back_within``). Under load the rolling
    #: restart waits that out after each batch. A host that died (no refusal, a connect
    #: timeout) costs one request ``connect_timeout`` of delay about once per back_within.
    fail_timeout: int = 0
    #: Connections per Nginx worker process, clients and upstreams together. Debian's 768
    #: let about 1,500 slow clients shut everyone out.
    worker_connections: int = 16384
    #: Requests in progress per client address (0: no limit); more get a JSON 429.
    limit_conn: int = 100
    #: Requests per second ("20r/s") or minute ("600r/m") per client address; "" for none.
    limit_req: str = ""
    limit_req_burst: int = 20
    #: The front's way in for the host itself (the deploy's smoke test), on loopback only:
    #: the public server answers only its server_names.
    local_port: int = 8000

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

    mode: str = "off"
    domains: tuple[str, ...] = ()
    acme_email: str = ""
    acme_server: str = LETSENCRYPT
    #: A CA bundle on the hosts that certbot trusts for the ACME server's own HTTPS (a private
    #: ACME CA such as step-ca); "" for the system's.
    acme_ca_bundle: str = ""
    hsts: bool = False
    listen_host: str = ""
    listen_port: int = int(DEFAULT_TLS_LISTEN)

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

    max_size: int = 100 * 1024**2
    #: A log may grow past ``max_size`` by what is written in this time, before it rotates.
    check_every: float = 300.0


@dataclass(frozen=True)
class Host:
    """One machine of the deployment: how to reach it and what it runs."""

    name: str
    ssh: str
    roles: tuple[str, ...]
    workers: int = 0
    first_port: int = DEFAULT_PORT
    private_address: str | None = None

    def has(self, role: str) -> bool:
        return role in self.roles

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(range(self.first_port, self.first_port + self.workers))


@dataclass(frozen=True)
class Pool:
    """API hosts that serve some targets; the pool without targets gets the rest."""

    name: str
    hosts: tuple[str, ...]
    targets: tuple[str, ...] = ()

    @property
    def is_default(self) -> bool:
        return not self.targets


@dataclass(frozen=True)
class Worker:
    """One API process: a Supervisor program listening on bind:port."""

    host: str
    program: str
    bind: str
    port: int

    @property
    def address(self) -> str:
        return format_address(self.bind, self.port)


@dataclass(frozen=True)
class Config:
    """A whole deployment of one product."""

    product: str
    product_dir: Path
    path: Path
    server_names: tuple[str, ...]
    hosts: tuple[Host, ...]
    pools: tuple[Pool, ...]
    keep_releases: int = KEEP_RELEASES
    environment: tuple[tuple[str, str], ...] = ()
    secrets: Path | None = None
    python: str = DEFAULT_PYTHON
    api: Api = field(default_factory=Api)
    nginx: Nginx = field(default_factory=Nginx)
    background_stop_timeout: float = DEFAULT_STOP_TIMEOUT
    env: str = PRODUCTION
    #: Who the deploy logs in as where a host's ``ssh`` names no user; not root: sudo.
    login: str = "root"
    #: Run once per deploy in the new release before any worker switches (migrations).
    release_command: str = ""
    #: Run once after the smoke test passed; a failure is reported, not rolled back.
    after_deploy: str = ""
    tls: Tls = field(default_factory=Tls)
    batch: Batch = field(default_factory=Batch)
    venv: str = VENV_MODES[0]
    logs: Logs = field(default_factory=Logs)

    @property
    def layout(self) -> Layout:
        """Every path and name on the hosts (apiphant.deploy.layout)."""
        return Layout(self.product, self.env)

    @property
    def site_names(self) -> tuple[str, ...]:
        """Nginx's server_name: server_names, and the certificate's domains not among them."""
        return tuple(dict.fromkeys((*self.server_names, *self.tls.domains)))

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise ConfigError(f"{self.path.name}: no host {name!r} (hosts: {self.host_list()})")

    def host_list(self) -> str:
        return ", ".join(h.name for h in self.hosts)

    def select(self, wanted: Iterable[str]) -> list[Host]:
        """Hosts by name or by ssh target, in config order; none wanted means all."""
        wanted = list(wanted)
        if not wanted:
            return list(self.hosts)
        chosen = []
        for want in wanted:
            match = [h for h in self.hosts if want in (h.name, h.ssh)]
            if not match:
                shown = ", ".join(f"{h.name} ({h.ssh})" for h in self.hosts)
                raise ConfigError(f"unknown host {want!r}: {self.path.name} has {shown}")
            chosen.extend(h for h in match if h not in chosen)
        return [h for h in self.hosts if h in chosen]

    def fronts(self) -> list[Host]:
        return [h for h in self.hosts if h.has("nginx")]

    def bind_address(self, host: Host) -> str:
        """Loopback when only this host's own Nginx calls its workers, else its private address."""
        if all(front.name == host.name for front in self.fronts()):
            return "127.0.0.1"
        assert host.private_address  # checked by parse()
        return host.private_address

    def workers(self, host: Host) -> list[Worker]:
        if not host.has("api"):
            return []
        bind = self.bind_address(host)
        return [Worker(host.name, self.layout.worker(port), bind, port) for port in host.ports]

    def all_workers(self) -> list[Worker]:
        return [w for h in self.hosts for w in self.workers(h)]

    def pool_workers(self, pool: Pool) -> list[Worker]:
        return [w for name in pool.hosts for w in self.workers(self.host(name))]

    def background_host(self) -> Host | None:
        return next((h for h in self.hosts if h.has("background")), None)

    def programs(self, host: Host) -> list[str]:
        """The deployment's Supervisor programs on ``host``: every host rotates its logs."""
        names = [w.program for w in self.workers(host)]
        if host.has("background"):
            names.append(self.layout.background)
        if self.renews(host):
            names.append(self.layout.renewer)
        names.append(self.layout.rotator)
        return names

    def runs_python(self, host: Host) -> bool:
        """Whether ``host`` runs the product's programs (api, background), so gets Python, the
        release's code and its virtualenv; an Nginx-only host gets none of them."""
        return host.has("api") or host.has("background")

    def renews(self, host: Host) -> bool:
        """Whether ``host`` gets and renews its own certificate: every Nginx host with ACME."""
        return self.tls.acme and host.has("nginx")

    def role_names(self, host: Host) -> tuple[str, ...]:
        """The kit roles a host runs: its own, ``acme`` (certbot and its renewal) on an Nginx
        host when tls = "acme", and ``python`` (the release's virtualenv) where programs run."""
        kit = (("acme",) if self.renews(host) else ()) + (
            ("python",) if self.runs_python(host) else ()
        )
        return (*host.roles, *kit)

    def acme_peers(self, host: Host) -> list[str]:
        """The other fronts' private addresses: a challenge answer this front lacks is asked
        of them, as the CA may call any front for a token another one asked for."""
        return [f.private_address for f in self.fronts()  # type: ignore[misc]
                if f.name != host.name and f.private_address]  # fmt: skip

    def acme_peer_servers(self, host: Host) -> list[str]:
        """The same as Nginx's upstream servers, ADDRESS:PORT on their port 80 listener (an
        IPv6 address in brackets: Nginx reads ``fd00::2:80`` as a host with a bad port)."""
        return [format_address(peer, self.nginx.listen_port) for peer in self.acme_peers(host)]

    def login_of(self, host: Host) -> str:
        """The SSH user for ``host``: its ``ssh`` value's, else deploy.toml's ``user``."""
        return SSH.fullmatch(host.ssh)["user"] or self.login  # type: ignore[index]

    def ssh_target(self, host: Host) -> str:
        return host.ssh if "@" in host.ssh else f"{self.login}@{host.ssh}"

    def trusted_proxies(self) -> tuple[str, ...]:
        """Where the workers' Nginx connects from: loopback, and the fronts' private addresses."""
        fronts = [h.private_address for h in self.fronts() if h.private_address]
        return tuple(dict.fromkeys(["127.0.0.1", *fronts]))

    def program_environment(self) -> tuple[tuple[str, str], ...]:
        """Every program's environment: deploy.toml's, then what the deploy derives for the
        workers (the CORS policy, Nginx as the trusted proxy that names the client)."""
        derived = [(settings.TRUSTED_PROXIES, ",".join(self.trusted_proxies()))]
        if self.api.cors_origins:
            derived.append((settings.CORS_ORIGINS, ",".join(self.api.cors_origins)))
        if self.api.cors_headers:
            derived.append((settings.CORS_HEADERS, ",".join(self.api.cors_headers)))
        return (*self.environment, *derived)


# Parsing


def _read(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path.name}: not valid TOML: {error}") from None


def merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``: tables merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def layers(path: Path, env: str = PRODUCTION) -> tuple[dict, dict, str]:
    """deploy.toml, and the same with environment ``env`` merged over it (its ``[env.NAME]``
    table, then ``deploy.NAME.toml`` beside it), and the name to show in errors."""
    base = _read(path)
    tables = base.pop("env", {})
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise ConfigError(f"{path.name}: env: expected [env.NAME] tables, like [env.staging]")
    if env == PRODUCTION:
        return base, base, path.name
    if not ENV_NAME.fullmatch(env):
        raise ConfigError(f"--env: expected an environment name like staging, got {env!r}")
    beside = path.with_name(f"{path.stem}.{env}.toml")
    found = [tables[env]] if env in tables else []
    if beside.is_file():
        found.append(_read(beside))
    if not found:
        raise ConfigError(
            f"--env {env}: no environment {env!r}: no {beside.name} beside {path.name} "
            f"and no [env.{env}] table in it"
        )
    merged = base
    for layer in found:
        merged = merge(merged, layer)
    shown = f"{path.name} + {beside.name}" if beside.is_file() else f"{path.name} [env.{env}]"
    return base, merged, shown


def differences(base: Any, merged: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values an environment changes: what ``fab render -e`` shows."""
    if isinstance(base, dict) and isinstance(merged, dict):
        keys = sorted(set(base) | set(merged))
        found = []
        for key in keys:
            name = f"{prefix}.{key}" if prefix else str(key)
            found += differences(base.get(key), merged.get(key), name)
        return found
    return [] if base == merged else [prefix]


def load(path: Path, product_dir: Path | None = None, env: str = PRODUCTION) -> Config:
    """Read and check a deploy.toml (with environment ``env`` over it); ``product_dir``
    defaults to the file's folder."""
    _, data, shown = layers(path, env)
    return parse(data, path, product_dir or path.parent, env, shown)


class _Reader:
    """Typed access to one table, with errors that name the full key."""

    def __init__(self, shown: str, prefix: str, table: Any, allowed: Iterable[str]) -> None:
        self.shown = shown
        self.prefix = prefix
        if not isinstance(table, dict):
            raise ConfigError(f"{shown}: {prefix}: expected a table, got {table!r}")
        self.table = table
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise ConfigError(
                f"{shown}: {self.key(unknown[0])}: unknown key "
                f"(expected one of: {', '.join(allowed)})"
            )

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, expected: str, got: Any) -> ConfigError:
        return ConfigError(f"{self.shown}: {self.key(name)}: expected {expected}, got {got!r}")

    def has(self, name: str) -> bool:
        return name in self.table

    def text(self, name: str, pattern: re.Pattern[str] | None, expected: str, default: Any = None):
        value = self.table.get(name, default)
        if value is None:
            raise ConfigError(f"{self.shown}: {self.key(name)}: missing, expected {expected}")
        if not isinstance(value, str) or (pattern and not pattern.fullmatch(value)):
            raise self.fail(name, expected, value)
        return value

    def integer(self, name: str, default: int | None, low: int = 1, high: int = 2**31) -> int:
        value = self.table.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            what = f"an integer from {low} to {high}"
            if low == 1:
                what = "a positive integer" + (f" up to {high}" if high < 2**31 else "")
            raise self.fail(name, what, value)
        return value

    def seconds(self, name: str, default: float) -> float:
        value = self.table.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 86400:
            raise self.fail(name, "a positive number of seconds", value)
        return float(value)

    def nginx_seconds(self, name: str, default: float) -> float:
        """Seconds for an Nginx time, which counts whole milliseconds: 0.5 is rendered as
        500ms (``render.nginx_time``); less than one millisecond is none at all."""
        value = self.seconds(name, default)
        if round(value * 1000) < 1:
            raise self.fail(name, "at least 0.001 seconds (Nginx counts milliseconds)", value)
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.table.get(name, default)
        if not isinstance(value, bool):
            raise self.fail(name, "true or false", value)
        return value

    def names(self, name: str, pattern: re.Pattern[str], expected: str, default: Any = None):
        value = self.table.get(name, default)
        if value is None:
            raise ConfigError(
                f"{self.shown}: {self.key(name)}: missing, expected a list of {expected}"
            )
        if not isinstance(value, list):
            raise self.fail(name, f"a list of {expected}", value)
        for item in value:
            if not isinstance(item, str) or not pattern.fullmatch(item):
                raise self.fail(name, f"a list of {expected}", item)
        if len(set(value)) != len(value):
            raise self.fail(name, f"a list of distinct {expected}", value)
        return tuple(value)


def _size(reader: _Reader, name: str, default: int) -> int:
    value = reader.table.get(name, default)
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    if isinstance(value, str):
        factor = units.get(value[-1:].upper(), 1)
        number = value[:-1] if factor > 1 else value
        if number.isdigit() and int(number) > 0:
            return int(number) * factor
    elif isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise reader.fail(name, "a size like 1048576, '512K' or '1M'", value)


def _batch(reader: _Reader) -> Batch:
    """``batch``: a number of workers like 2, or a share of each pool like "25%"."""
    value = reader.table.get("batch", 1)
    expected = "a number of workers like 2, or a share of each pool like '25%'"
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 10000:
        return Batch(count=value)
    if isinstance(value, str) and re.fullmatch(r"[1-9][0-9]?%|100%", value):
        return Batch(percent=int(value[:-1]))
    raise reader.fail("batch", expected, value)


def _private_address(reader: _Reader, name: str) -> str | None:
    """An address workers may bind: loopback or private, never public, wildcard or multicast."""
    value = reader.table.get(name)
    if value is None:
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise reader.fail(name, "an IP address like 10.0.0.5", value) from None
    if (
        address.is_global
        or address.is_unspecified
        or address.is_multicast
        or address == ipaddress.IPv4Address("255.255.255.255")
    ):
        raise reader.fail(
            name, "a private address like 10.0.0.5 (workers bind it: never a public one)", value
        )
    return str(address)


def _listen(reader: _Reader, name: str = "listen", default: str = "80") -> tuple[str, int]:
    value = reader.table.get(name, default)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    expected = f"a port like '{default}' or an address like '127.0.0.1:8080' or '[::]:{default}'"
    if not isinstance(value, str):
        raise reader.fail(name, expected, value)
    host, _, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        if host:
            host = str(ipaddress.ip_address(host))
    except ValueError:
        raise reader.fail(name, expected, value) from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise reader.fail(name, expected, value)
    return host, int(port)


def _command(reader: _Reader, name: str) -> str:
    """A shell command for the product's virtualenv, or "" for none: one line."""
    value = reader.table.get(name, "")
    if not isinstance(value, str) or any(c in value for c in "\n\r\0"):
        raise reader.fail(name, "a one-line command string like 'python -m shop.migrate'", value)
    return value.strip()


def _rate(reader: _Reader, name: str) -> str:
    """A rate for Nginx's limit_req, or "" for none."""
    if reader.table.get(name, "") == "":
        return ""
    return reader.text(name, RATE, "a rate like '20r/s' or '600r/m', or \"\" for none")


def _environment(shown: str, table: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(table, dict):
        raise ConfigError(f"{shown}: environment: expected a table of NAME = value")
    items = []
    for key, value in table.items():
        if not ENV_KEY.fullmatch(key):
            raise ConfigError(
                f"{shown}: environment.{key}: expected a variable name like SENTRY_ENVIRONMENT"
            )
        if key in RESERVED_ENV:
            raise ConfigError(f"{shown}: environment.{key}: set by the deploy from "
                              f"{RESERVED_ENV[key]}, leave it out")  # fmt: skip
        if isinstance(value, bool):
            value = "true" if value else "false"
        if isinstance(value, int | float):
            value = str(value)
        if not isinstance(value, str) or "\n" in value or "\r" in value or "\0" in value:
            raise ConfigError(
                f"{shown}: environment.{key}: expected a one-line string or number, got {value!r}"
            )
        items.append((key, value))
    return tuple(items)


TOP_KEYS = (
    "product",
    "tls",
    "domains",
    "acme_email",
    "acme_server",
    "acme_ca_bundle",
    "hsts",
    "user",
    "release",
    "after_deploy",
    "server_names",
    "keep_releases",
    "batch",
    "venv",
    "python",
    "secrets",
    "environment",
    "api",
    "background",
    "nginx",
    "logs",
    "hosts",
    "pools",
)
HOST_KEYS = ("ssh", "roles", "workers", "first_port", "private_address")


def parse(
    data: dict, path: Path, product_dir: Path, env: str = PRODUCTION, shown: str = ""
) -> Config:
    """Check a loaded deploy.toml against the product folder it deploys."""
    shown = shown or path.name
    top = _Reader(shown, "", data, TOP_KEYS)
    product = top.text("product", None, "the product folder's name, like myproduct")
    problem = name_problem(product, deployable=True)
    if problem:
        raise ConfigError(f"{shown}: product: {problem}, got {product!r}")
    if product != product_dir.name:
        raise ConfigError(
            f"{shown}: product: expected the product folder's name {product_dir.name!r}, "
            f"got {product!r}"
        )
    user = Layout(product, env).user
    if len(user) > MAX_USER:
        raise ConfigError(
            f"{shown}: product: environment {env} runs as the system user {user!r}, "
            f"{len(user)} characters where Linux allows {MAX_USER}: a shorter environment name"
        )
    server_names = top.names("server_names", SERVER_NAME, "domain names like 'api.example.com'")
    if not server_names:
        raise top.fail("server_names", "at least one domain name", [])
    keep = top.integer("keep_releases", KEEP_RELEASES, low=1, high=100)
    batch = _batch(top)
    python = top.text(
        "python", ABS_PATH, f"an absolute path like {DEFAULT_PYTHON}", DEFAULT_PYTHON
    )
    venv = top.text("venv", None, f"one of {', '.join(VENV_MODES)}", VENV_MODES[0])
    if venv not in VENV_MODES:
        raise top.fail("venv", f"one of {', '.join(VENV_MODES)}", venv)
    secrets = None
    if top.has("secrets"):
        raw = top.text("secrets", None, "a path to a KEY=value file on this machine")
        secrets = Path(raw).expanduser()
        if not secrets.is_absolute():
            secrets = path.parent / secrets
    environment = _environment(shown, data.get("environment", {}))
    login = top.text("user", LOGIN, "a user name to log in as, like deploy", "root")
    release_command = _command(top, "release")
    after_deploy = _command(top, "after_deploy")

    a = _Reader(shown, "api", data.get("api", {}), (
        "max_body", "max_json_values", "keepalive_timeout", "header_timeout", "request_timeout",
        "drain_timeout", "max_connections", "access_log", "cors_origins", "cors_headers",
    ))  # fmt: skip
    d = Api()
    api = Api(
        max_body=_size(a, "max_body", d.max_body),
        max_json_values=a.integer("max_json_values", d.max_json_values),
        keepalive_timeout=a.seconds("keepalive_timeout", d.keepalive_timeout),
        header_timeout=a.seconds("header_timeout", d.header_timeout),
        request_timeout=a.seconds("request_timeout", d.request_timeout),
        drain_timeout=a.seconds("drain_timeout", d.drain_timeout),
        max_connections=a.integer("max_connections", 1) if a.has("max_connections") else None,
        access_log=a.flag("access_log", d.access_log),
        cors_origins=a.names("cors_origins", ANY_TEXT, "origins like 'https://a.example'", []),
        cors_headers=a.names("cors_headers", ANY_TEXT, "header names like 'Authorization'", []),
    )
    for key, origins, headers in (("cors_origins", api.cors_origins, ()),
                                  ("cors_headers", (), api.cors_headers)):  # fmt: skip
        try:
            policy(origins, headers)
        except CorsError as error:
            raise ConfigError(f"{shown}: api.{key}: {error}") from None
    b = _Reader(shown, "background", data.get("background", {}), ("stop_timeout",))
    stop_timeout = b.seconds("stop_timeout", DEFAULT_STOP_TIMEOUT)

    n = _Reader(shown, "nginx", data.get("nginx", {}), (
        "listen", "connect_timeout", "read_timeout", "send_timeout", "client_timeout",
        "keepalive_timeout", "upstream_keepalive", "upstream_keepalive_timeout", "fail_timeout",
        "worker_connections", "limit_conn", "limit_req", "limit_req_burst", "local_port",
        "tls_listen",
    ))  # fmt: skip
    dn = Nginx()
    listen_host, listen_port = _listen(n)
    nginx = Nginx(
        listen_host=listen_host,
        listen_port=listen_port,
        connect_timeout=n.nginx_seconds("connect_timeout", dn.connect_timeout),
        read_timeout=n.nginx_seconds("read_timeout", dn.read_timeout),
        send_timeout=n.nginx_seconds("send_timeout", dn.send_timeout),
        client_timeout=n.nginx_seconds("client_timeout", dn.client_timeout),
        keepalive_timeout=n.nginx_seconds("keepalive_timeout", dn.keepalive_timeout),
        upstream_keepalive=n.integer(
            "upstream_keepalive", dn.upstream_keepalive, low=1, high=10000
        ),
        upstream_keepalive_timeout=n.nginx_seconds(
            "upstream_keepalive_timeout", dn.upstream_keepalive_timeout
        ),
        fail_timeout=n.integer("fail_timeout", dn.fail_timeout, low=0, high=86400),
        worker_connections=n.integer(
            "worker_connections", dn.worker_connections, low=1024, high=1048576 - 1024
        ),
        limit_conn=n.integer("limit_conn", dn.limit_conn, low=0, high=1000000),
        limit_req=_rate(n, "limit_req"),
        limit_req_burst=n.integer("limit_req_burst", dn.limit_req_burst, low=0, high=1000000),
        local_port=n.integer("local_port", dn.local_port, low=1, high=65535),
    )
    if nginx.local_port == listen_port:
        raise n.fail(
            "local_port", f"a port other than nginx.listen's ({listen_port})", nginx.local_port
        )
    if api.drain_timeout <= nginx.drain_idle_grace:
        raise ConfigError(
            f"{shown}: api.drain_timeout: expected more than {nginx.drain_idle_grace:g}s "
            f"(nginx.upstream_keepalive_timeout + 1: a draining worker waits that long before "
            f"closing an idle connection), got {api.drain_timeout:g}"
        )

    lg = _Reader(shown, "logs", data.get("logs", {}), ("max_size", "check_every"))
    logs = Logs(_size(lg, "max_size", Logs.max_size), lg.seconds("check_every", Logs.check_every))

    tls = _tls(top, n, nginx, secrets)
    hosts = _hosts(shown, data.get("hosts"), nginx)
    pools = _pools(shown, data.get("pools"), hosts)
    config = Config(
        product=product,
        product_dir=product_dir,
        path=path,
        server_names=server_names,
        hosts=hosts,
        pools=pools,
        keep_releases=keep,
        environment=environment,
        secrets=secrets,
        python=python,
        api=api,
        nginx=nginx,
        background_stop_timeout=stop_timeout,
        env=env,
        login=login,
        release_command=release_command,
        after_deploy=after_deploy,
        tls=tls,
        batch=batch,
        venv=venv,
        logs=logs,
    )
    _check_deployment(config, shown)
    return config


def _tls(top: _Reader, n: _Reader, nginx: Nginx, secrets: Path | None) -> Tls:
    """tls, domains, acme_*, hsts and [nginx] tls_listen: each checked, and each needed one
    present for the mode."""
    mode = top.text("tls", None, f"one of {', '.join(TLS_MODES)}", "off")
    if mode not in TLS_MODES:
        raise top.fail("tls", f"one of {', '.join(TLS_MODES)}", mode)
    keys = ("domains", "acme_email", "acme_server", "acme_ca_bundle", "hsts")
    if mode == "off":
        for key in keys:
            if top.has(key):
                raise ConfigError(f"{top.shown}: {key}: only with tls = \"acme\" or \"files\"")
        if n.has("tls_listen"):
            raise ConfigError(
                f"{top.shown}: nginx.tls_listen: only with tls = \"acme\" or \"files\""
            )
        return Tls()
    if not top.has("domains"):
        raise ConfigError(
            f"{top.shown}: domains: missing, tls = \"{mode}\" needs the names the "
            "certificate is for, like [\"api.example.com\"]"
        )
    raw = top.table["domains"]
    if isinstance(raw, list):
        raw = [d.lower() if isinstance(d, str) else d for d in raw]
    domains = _Reader(top.shown, "", {"domains": raw}, ("domains",)).names(
        "domains", DOMAIN, "host names like 'api.example.com' (no IP, no wildcard)"
    )
    if not domains:
        raise top.fail("domains", "at least one host name like 'api.example.com'", [])
    if mode == "acme":
        email = top.text("acme_email", EMAIL, "an email address for the CA's expiry notices")
        server = top.text("acme_server", ACME_URL, "an ACME directory URL like "
                          f"{LETSENCRYPT_STAGING}", Tls.acme_server)  # fmt: skip
        bundle = Tls.acme_ca_bundle
        if top.has("acme_ca_bundle"):
            bundle = top.text("acme_ca_bundle", ABS_PATH, "an absolute path on the hosts")
    else:
        for key in ("acme_email", "acme_server", "acme_ca_bundle"):
            if top.has(key):
                raise ConfigError(f"{top.shown}: {key}: only with tls = \"acme\"")
        email, server, bundle = Tls.acme_email, Tls.acme_server, Tls.acme_ca_bundle
        if secrets is None:
            raise ConfigError(
                f"{top.shown}: secrets: missing, tls = \"files\" reads {TLS_CERT_KEY}= and "
                f"{TLS_KEY_KEY}= (the certificate chain and key on this machine) from it"
            )
    host, port = _listen(n, "tls_listen", DEFAULT_TLS_LISTEN)
    for key, taken in (("listen", nginx.listen_port), ("local_port", nginx.local_port)):
        if port == taken:
            raise n.fail("tls_listen", f"a port other than nginx.{key}'s ({taken})", port)
    return Tls(mode, domains, email, server, bundle, top.flag("hsts", Tls.hsts), host, port)


def _hosts(shown: str, table: Any, nginx: Nginx) -> tuple[Host, ...]:
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{shown}: hosts: missing, expected at least one [hosts.NAME] table")
    hosts = []
    for name, body in table.items():
        if not HOST_NAME.fullmatch(name):
            raise ConfigError(f"{shown}: hosts.{name}: expected a host name like web1")
        r = _Reader(shown, f"hosts.{name}", body, HOST_KEYS)
        ssh = r.text("ssh", SSH, "user@host or user@host:port, like root@203.0.113.10", name)
        port = SSH.fullmatch(ssh)["port"]  # type: ignore[index]
        if port is not None and not 0 < int(port) < 65536:
            raise r.fail("ssh", "a port from 1 to 65535", ssh)
        roles = r.names(
            "roles", re.compile("|".join(KNOWN_ROLES)), f"roles ({', '.join(KNOWN_ROLES)})"
        )
        if not roles:
            raise r.fail("roles", f"at least one of {', '.join(KNOWN_ROLES)}", [])
        workers = 0
        first_port = DEFAULT_PORT
        if "api" in roles:
            workers = r.integer("workers", DEFAULT_WORKERS, low=1, high=256)
            first_port = r.integer("first_port", DEFAULT_PORT, low=1024, high=65535)
            if first_port + workers - 1 > 65535:
                raise r.fail(
                    "first_port", f"a port that leaves room for {workers} workers", first_port
                )
            ports = range(first_port, first_port + workers)
            for key, taken in (("listen", nginx.listen_port), ("local_port", nginx.local_port)):
                if "nginx" in roles and taken in ports:
                    raise r.fail(
                        "first_port", f"worker ports apart from nginx.{key} ({taken})", first_port
                    )
        else:
            for key in ("workers", "first_port"):
                if r.has(key):
                    raise ConfigError(
                        f"{shown}: hosts.{name}.{key}: only for hosts with the api role"
                    )
        private = _private_address(r, "private_address")
        hosts.append(Host(name, ssh, roles, workers, first_port, private))
    ssh_targets = [h.ssh for h in hosts]
    for host in hosts:
        if ssh_targets.count(host.ssh) > 1:
            raise ConfigError(f"{shown}: hosts.{host.name}.ssh: {host.ssh!r} is used by two hosts")
    addresses: dict[str, str] = {}
    for host in hosts:
        if host.private_address and host.private_address in addresses:
            raise ConfigError(
                f"{shown}: hosts.{host.name}.private_address: {host.private_address} is "
                f"already hosts.{addresses[host.private_address]}'s"
            )
        addresses.setdefault(host.private_address, host.name)
    return tuple(hosts)


def _pools(shown: str, table: Any, hosts: tuple[Host, ...]) -> tuple[Pool, ...]:
    api_hosts = [h.name for h in hosts if h.has("api")]
    if table is None:
        return (Pool("default", tuple(api_hosts)),) if api_hosts else ()
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{shown}: pools: expected [pools.NAME] tables with hosts and targets")
    pools = []
    routed: dict[str, str] = {}
    for name, body in table.items():
        if not POOL.fullmatch(name):
            raise ConfigError(f"{shown}: pools.{name}: expected a pool name like reports")
        r = _Reader(shown, f"pools.{name}", body, ("hosts", "targets"))
        members = r.names("hosts", HOST_NAME, "host names")
        if not members:
            raise r.fail("hosts", "at least one host with the api role", [])
        for member in members:
            if member not in api_hosts:
                raise r.fail("hosts", f"hosts with the api role ({', '.join(api_hosts)})", member)
        targets = r.names("targets", TARGET, "target prefixes like 'v0/reports'", [])
        for target in targets:
            if target in routed:
                raise r.fail(
                    "targets", f"prefixes not already routed by pools.{routed[target]}", target
                )
            routed[target] = name
        pools.append(Pool(name, members, targets))
    defaults = [p.name for p in pools if p.is_default]
    if len(defaults) != 1:
        raise ConfigError(
            f"{shown}: pools: expected exactly one pool without targets (the default pool), "
            f"got {len(defaults)}{': ' + ', '.join(defaults) if defaults else ''}"
        )
    pooled = {h for p in pools for h in p.hosts}
    for name in api_hosts:
        if name not in pooled:
            raise ConfigError(f"{shown}: hosts.{name}: has the api role but is in no pool")
    return tuple(pools)


def _check_deployment(config: Config, shown: str) -> None:
    """Rules across hosts: one background runner, private addresses where Nginx is remote."""
    runners = [h.name for h in config.hosts if h.has("background")]
    if len(runners) > 1:
        raise ConfigError(
            f"{shown}: hosts.{runners[1]}.roles: background runs on exactly one host, "
            f"already on {runners[0]}"
        )
    if runners and not _has_background_module(config.product_dir):
        raise ConfigError(
            f"{shown}: hosts.{runners[0]}.roles: background needs "
            f"{config.product}/api/background.py with @seconds(N) tasks (or take the role out)"
        )
    api_hosts = [h for h in config.hosts if h.has("api")]
    if api_hosts and not config.fronts():
        raise ConfigError(f"{shown}: hosts: no host has the nginx role, so no one serves the API")
    for host in api_hosts:
        remote_fronts = [f.name for f in config.fronts() if f.name != host.name]
        if remote_fronts and not host.private_address:
            raise ConfigError(
                f"{shown}: hosts.{host.name}.private_address: missing, expected the address "
                f"nginx on {remote_fronts[0]} reaches this host at, like 10.0.0.5"
            )
    tls = config.tls
    for host in config.fronts() if tls.on else []:
        if tls.listen_port in host.ports:
            raise ConfigError(
                f"{shown}: hosts.{host.name}.first_port: worker ports apart from "
                f"nginx.tls_listen ({tls.listen_port}), got {host.first_port}"
            )
        if tls.acme and len(config.fronts()) > 1 and not host.private_address:
            raise ConfigError(
                f"{shown}: hosts.{host.name}.private_address: missing, with tls = \"acme\" "
                "each Nginx host gets its own certificate and asks the others for a challenge "
                "answer the CA fetched from them: give each one, like 10.0.0.5"
            )


def _has_background_module(product_dir: Path) -> bool:
    api = product_dir / "api"
    return (api / "background.py").is_file() or (api / "background" / "__init__.py").is_file()


def parse_secrets(text: str | bytes, where: str) -> tuple[tuple[str, str], ...]:
    """THE parser of a secrets file: its NAME=value pairs, in order; ``where`` names the file
    in a one-line ConfigError. Blank and whitespace-only lines and comments (``#`` first on
    the line, after any blanks) are skipped; every other line is NAME=value, the value taken
    literally (no quotes, no expansion). The hosts never see the file itself, only
    ``secrets_lines`` of what this returns, so the launcher that loads it on a host and this
    checker cannot disagree about a line. Values are never part of a message.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError as error:
            number = text[: error.start].count(b"\n") + 1
            raise ConfigError(f"{where}: line {number}: not UTF-8 text") from None
    pairs = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not ENV_KEY.fullmatch(key):
            raise ConfigError(f"{where}: line {number}: expected NAME=value")
        if key in RESERVED_ENV:
            raise ConfigError(f"{where}: line {number}: {key} is set by the deploy, leave it out")
        if "\r" in value or "\0" in value:
            raise ConfigError(f"{where}: line {number}: {key}: control characters in the value")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            raise ConfigError(
                f"{where}: line {number}: {key}: the value is quoted; write {key}=value, "
                "it is taken literally"
            )
        pairs.append((key, value))
    return tuple(pairs)


def secrets_lines(pairs: Iterable[tuple[str, str]]) -> bytes:
    """The secrets as the hosts get them: one NAME=value line each, nothing else; what
    config/run's loader reads. Without the two lines that name the certificate and key of
    tls = "files" on this machine: those are the deploy's, not the programs'."""
    kept = [(k, v) for k, v in pairs if k not in (TLS_CERT_KEY, TLS_KEY_KEY)]
    return "".join(f"{key}={value}\n" for key, value in kept).encode()


def read_secrets(config: Config) -> tuple[tuple[str, str], ...] | None:
    """The secrets file's pairs (``parse_secrets``), or None when deploy.toml names none;
    checked before a deploy touches any host."""
    if config.secrets is None:
        return None
    shown = config.path.name
    try:
        data = config.secrets.read_bytes()
    except OSError as error:
        raise ConfigError(
            f"{shown}: secrets: expected a KEY=value file on this machine, cannot read "
            f"{str(config.secrets)!r}: {error.strerror or error} "
            "(create it with mode 0600, or remove the key)"
        ) from None
    return parse_secrets(data, f"secrets file {config.secrets}")


def check_secrets(config: Config) -> bytes | None:
    """The secrets file, checked, as the hosts get it (``secrets_lines``); None for none."""
    pairs = read_secrets(config)
    return None if pairs is None else secrets_lines(pairs)
