"""Nginx's main config is one per host: what every deployment on the host needs of it.

Each deployment (``shop``, ``shop-staging``...) renders its own nginx-main.conf, and
/etc/nginx/nginx.conf links to the one that deployed last. Some of what it says is the
host's, not one deployment's: the process sizing (worker_connections), the header
timeout Nginx reads every request's head with, and the catch-all server of each listen
socket (a JSON 404 for an unknown Host, a refused handshake over TLS). So the rendered
file carries one record line per deployment on the host (``Needs.line``), and a deploy
reads the live file's first (``question``), before anything on the host changes, and
renders what every deployment there needs (``merge``):

- worker_connections: the largest. It is a capacity: more never hurts another
  deployment, and each was checked against the host's fs.nr_open when it deployed.
- catch-all servers: one for each socket any deployment listens on, plain or TLS.
- client_header_timeout: one value. Nginx takes it from a socket's default server, and
  from the http block for the sockets of the sites' loopback listeners: a host cannot
  honour two. Deployments that differ are refused in one line naming both, as are a
  socket one deployment listens on plainly and another with TLS, and a loopback port
  (the smoke test's and the rolling restart's way in) that two deployments share.

A record whose site is gone from sites-enabled is a deployment no longer on the host: it
is dropped. Pure, but for the question's shell text.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from shlex import quote as q

from apiphant.deploy.config import Config, ConfigError, rlimit_nofile
from apiphant.deploy.layout import NGINX_CONF, NGINX_SITES, site_of

#: How a record line of the main config begins.
RECORD = "# apiphant-deployment"
_LISTEN = r"(?:[0-9]{1,5}|[0-9.]{7,15}:[0-9]{1,5}|\[[0-9A-Fa-f:.]{2,45}\]:[0-9]{1,5})"
LINE = re.compile(
    re.escape(RECORD) + r" (?P<name>[a-z_][a-z0-9_]{0,30}(?:-[a-z][a-z0-9]{0,15})?)"
    r" worker_connections=(?P<connections>[0-9]{1,7})"
    r" client_timeout_ms=(?P<client_timeout_ms>[0-9]{1,8})"
    rf" listen=(?P<listen>{_LISTEN}) tls_listen=(?P<tls_listen>{_LISTEN}|-)"
    r" local_port=(?P<local_port>[0-9]{1,5})"
)


@dataclass(frozen=True)
class Needs:
    """What one deployment needs of its hosts' main Nginx config."""

    name: str
    worker_connections: int
    client_timeout: float
    listen: str
    tls_listen: str  # "" with TLS off
    local_port: int

    @classmethod
    def of(cls, config: Config) -> "Needs":
        nginx = config.nginx
        return cls(config.layout.name, nginx.worker_connections, nginx.client_timeout,
                   nginx.listen, config.tls.listen if config.tls.on else "",
                   nginx.local_port)  # fmt: skip

    def line(self) -> str:
        """Its record line in the main config: ``LINE`` reads it back."""
        return (f"{RECORD} {self.name} worker_connections={self.worker_connections} "
                f"client_timeout_ms={_millis(self.client_timeout)} listen={self.listen} "
                f"tls_listen={self.tls_listen or '-'} local_port={self.local_port}")  # fmt: skip

    def sockets(self) -> list[tuple[str, str]]:
        """The sockets its Nginx servers listen on, by the key that sets each."""
        found = [("listen", _socket(self.listen))]
        if self.tls_listen:
            found.append(("tls_listen", _socket(self.tls_listen)))
        return [*found, ("local_port", f"127.0.0.1:{self.local_port}")]


def _socket(listen: str) -> str:
    """``listen`` as one socket is named: every IPv4 address is the port alone."""
    return listen.removeprefix("0.0.0.0:")


def _millis(seconds: float) -> int:
    """As Nginx counts it (``render.nginx_time``)."""
    return round(seconds * 1000)


def _seconds(value: float) -> str:
    return f"{value:g}s"


@dataclass(frozen=True)
class Main:
    """What a host's main Nginx config serves: this deployment and the others on the host."""

    own: Needs
    others: tuple[Needs, ...] = ()

    @property
    def deployments(self) -> tuple[Needs, ...]:
        return (self.own, *self.others)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.deployments]

    @property
    def records(self) -> list[str]:
        return [d.line() for d in self.deployments]

    @property
    def worker_connections(self) -> int:
        return max(d.worker_connections for d in self.deployments)

    @property
    def worker_rlimit_nofile(self) -> int:
        return rlimit_nofile(self.worker_connections)

    @property
    def client_timeout(self) -> float:
        """The same for every deployment on the host (``merge`` refuses others)."""
        return self.own.client_timeout

    @property
    def listens(self) -> list[str]:
        """Every plain socket of a deployment on the host, once: a catch-all server each."""
        return list(dict.fromkeys(_socket(d.listen) for d in self.deployments))

    @property
    def tls_listens(self) -> list[str]:
        return list(dict.fromkeys(_socket(d.tls_listen) for d in self.deployments
                                  if d.tls_listen))  # fmt: skip


def merge(host: str, own: Needs, others: Iterable[Needs] = ()) -> Main:
    """This deployment's needs with the others' on ``host``; a conflict is a ConfigError of
    one line naming the setting, both deployments and both values."""
    others = tuple(d for d in others if d.name != own.name)
    for other in others:
        if _millis(other.client_timeout) != _millis(own.client_timeout):
            raise ConfigError(
                f"{host}: nginx.client_timeout: {own.name} has {_seconds(own.client_timeout)}, "
                f"{other.name} on the same host has {_seconds(other.client_timeout)}: the "
                "host's Nginx reads every request's head with one value; give both the same"
            )
        theirs = {socket: key for key, socket in other.sockets()}
        for key, socket in own.sockets():
            if socket in theirs and (key != theirs[socket] or key == "local_port"):
                raise ConfigError(
                    f"{host}: nginx.{key}: {own.name} has {socket}, which {other.name} on "
                    f"the same host has as its nginx.{theirs[socket]}: "
                    + ("each deployment on a host needs its own local_port"
                       if key == theirs[socket] else
                       "one socket cannot serve both plain HTTP and TLS")  # fmt: skip
                )
    return Main(own, others)


def question() -> str:
    """Asks a host for the record lines of its live main config and the sites it has:
    read-only, answered before anything on the host changes."""
    return (
        f"grep -h {q('^' + RECORD + ' ')} {q(NGINX_CONF)} 2>/dev/null; "
        f'for f in {NGINX_SITES}/*; do [ -e "$f" ] && echo "site $f"; done; true'
    )


def others_on(host: str, answer: str, own: str) -> tuple[Needs, ...]:
    """The other deployments on ``host`` by its answer to ``question``: those recorded in
    its live main config whose site it still has. A record line the kit cannot read is
    refused in one line: the file is not as the kit wrote it."""
    sites = {line[5:] for line in answer.splitlines() if line.startswith("site ")}
    found = []
    for line in answer.splitlines():
        if not line.startswith(RECORD + " "):
            continue
        match = LINE.fullmatch(line.strip())
        if match is None:
            raise ConfigError(
                f"{host}: {NGINX_CONF}: a line the deploy kit cannot read: {line[:200]!r} "
                f"(it writes '{RECORD} NAME worker_connections=... local_port=...')"
            )
        name = match["name"]
        if name == own or site_of(name) not in sites:
            continue
        found.append(Needs(name, int(match["connections"]),
                           int(match["client_timeout_ms"]) / 1000,
                           match["listen"], "" if match["tls_listen"] == "-"
                           else match["tls_listen"], int(match["local_port"])))  # fmt: skip
    return tuple(found)
