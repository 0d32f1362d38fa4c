"""What follows from a deploy.toml: its hosts' workers and programs, who listens where, who
trusts whom. ``Config`` inherits these methods; its fields are in ``model``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from apiphant import settings
from apiphant.deploy.config.errors import ConfigError
from apiphant.deploy.config.patterns import SSH
from apiphant.deploy.layout import Layout
from apiphant.settings.values import format_address

if TYPE_CHECKING:
    from pathlib import Path

    from apiphant.deploy.config.front import Nginx, Tls
    from apiphant.deploy.config.model import Api, Background, Database, Host, Pool

#: apiphant's extra (setup.py) with PostgreSQL's driver and pool (apiphant.db).
DATABASE_EXTRA = "postgres"
#: apiphant's extra with the docs page's files (Swagger UI), for ``[api] docs = true``.
DOCS_EXTRA = "docs"


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


class Topology:
    """The methods of ``Config`` that derive the deployment's shape from its fields."""

    if TYPE_CHECKING:
        product: str
        env: str
        server_names: tuple[str, ...]
        hosts: tuple[Host, ...]
        path: Path
        login: str
        environment: tuple[tuple[str, str], ...]
        api: Api
        background: Background
        nginx: Nginx
        tls: Tls
        database: Database

    @property
    def background_stop_timeout(self) -> float:
        """``[background] stop_timeout``, by its name from before ``Background``."""
        return self.background.stop_timeout

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

    def pool_workers(self, pool: Pool) -> list[Worker]:
        return [w for name in pool.hosts for w in self.workers(self.host(name))]

    def background_host(self) -> Host | None:
        return next((h for h in self.hosts if h.has("background")), None)

    def database_host(self) -> Host | None:
        """The host with the postgres role, if the deployment has its own database."""
        return next((h for h in self.hosts if h.has("postgres")), None)

    def has_database(self) -> bool:
        """Whether the programs get a DATABASE_URL: the postgres host's, or the secrets
        file's line ``[database] url_env`` names."""
        return self.database_host() is not None or bool(self.database.url_env)

    def apiphant_extras(self) -> tuple[str, ...]:
        """apiphant's extras the release's virtualenv installs with it: ``postgres`` (the
        driver and pool at apiphant's pinned ranges) when the programs get a database, so a
        product need not list psycopg itself; ``docs`` (the docs page's files) when the
        workers serve it."""
        return ((DATABASE_EXTRA,) if self.has_database() else ()) + (
            (DOCS_EXTRA,) if self.api.docs else ())

    def database_remote_clients(self) -> list[Host]:
        """The hosts whose programs reach the postgres host over the network: pg_hba admits
        each by its private address, and nothing else from the network."""
        server = self.database_host()
        if server is None:
            return []
        return [h for h in self.hosts if self.runs_python(h) and h.name != server.name]

    def database_listen(self) -> str:
        """PostgreSQL's listen_addresses: its private address when other hosts use it, else
        none (the Unix socket alone)."""
        server = self.database_host()
        if server is None or not self.database_remote_clients():
            return ""
        return server.private_address or ""

    def backup_copy_host(self) -> Host | None:
        """The host that keeps a copy of each backup: the first of deploy.toml but the
        postgres host, one that runs programs (and so reaches the data already) before a
        front, when both have private addresses (the copy travels on the private network,
        and the receiving key admits the postgres host's address alone)."""
        server = self.database_host()
        if server is None or not server.private_address:
            return None
        others = [h for h in self.hosts if h.name != server.name and h.private_address]
        return next((h for h in others if self.runs_python(h)), others[0] if others else None)

    def ssh_port(self, host: Host) -> int:
        """The port of ``host``'s sshd (its ``ssh`` value's, else 22)."""
        return int(SSH.fullmatch(host.ssh)["port"] or 22)  # type: ignore[index]

    def database_url(self, host: Host, password: str) -> str:
        """The DATABASE_URL of ``host``'s programs (libpq's URI form): through the socket on
        the postgres host itself, else its private address. Holds the password: only the
        releases' secrets files get it."""
        server = self.database_host()
        assert server is not None
        layout = self.layout
        who = f"{quote(layout.db_name, safe='')}:{quote(password, safe='')}"
        name = quote(layout.db_name, safe="")
        port = self.database.port
        if host.name == server.name:
            return f"postgresql://{who}@/{name}?host={quote(layout.db_socket)}&port={port}"
        return f"postgresql://{who}@{format_address(server.private_address or '', port)}/{name}"

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
        if self.api.cors_credentials:
            derived.append((settings.CORS_CREDENTIALS, "true"))
        return (*self.environment, *derived)
