"""Config into files: every file a host needs, from deploy/templates/*.j2. Pure.

Jinja2 runs with StrictUndefined: a name missing from the context is an
error at render time, never an empty string in a live config. The product
name is a template variable like any other: no search-and-replace.
"""

import shlex
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path

import jinja2

from apiphant.deploy import hostwide, kit, roles
from apiphant.deploy.config import Config, Host, Pool
from apiphant.deploy.host import backups
from apiphant.deploy.host.certbot import RENEW_EVERY, certbot_renew
from apiphant.deploy.host.configs import logrotate
from apiphant.deploy.layout import (
    ACME_CHALLENGE,
    HEALTH_PATH,
    NGINX_PIDFILE,
    NGINX_USER,
    POSTGRES_BIN,
    POSTGRES_USER,
    RELEASE_ENV,
    SECRETS,
    SUPERVISOR_PIDFILE,
)
from apiphant.errors import status_line
from apiphant.settings import options

#: Seconds Supervisor waits after SIGTERM beyond the program's own drain or stop time.
STOP_MARGIN = 5
#: A product overrides one of the kit's templates with a file of the same name here.
OVERRIDES = Path("deploy", "templates")


@dataclass(frozen=True)
class HostFiles:
    """The rendered files of one host: name -> text, with modes and system links."""

    host: Host
    files: dict[str, str]
    executable: frozenset[str] = frozenset()
    links: dict[str, str] = field(default_factory=dict)
    apt: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    unlinks: tuple[str, ...] = ()

    def mode(self, name: str) -> int:
        return 0o755 if name in self.executable else 0o644


def nginx_time(seconds: float) -> str:
    """An Nginx time: whole seconds as ``15s``, anything else in milliseconds (``500ms``).
    Nginx takes no fraction: ``0.5s`` fails ``nginx -t``."""
    millis = round(seconds * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def _kit_template(templates: Traversable, name: str) -> str | None:
    source = templates / name
    return source.read_text() if source.is_file() else None


def environment(config: Config | None = None) -> jinja2.Environment:
    """The kit's templates (package data), each overridable by the product's own."""
    templates = kit.templates()
    loaders: list[jinja2.BaseLoader] = []
    if config is not None:
        loaders.append(jinja2.FileSystemLoader(str(config.product_dir / OVERRIDES)))
    loaders.append(jinja2.FunctionLoader(lambda name: _kit_template(templates, name)))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["num"] = lambda value: f"{value:g}"
    env.filters["nginx_time"] = nginx_time
    return env


def overridden(config: Config) -> list[str]:
    """The templates the product overrides: ``fab render`` names them."""
    folder = config.product_dir / OVERRIDES
    kit_names = {t.name for t in kit.templates().iterdir()}
    return sorted(p.name for p in folder.glob("*.j2") if p.name in kit_names)


def product_requirements(config: Config) -> tuple[str, ...]:
    """The product's own pip requirements: PRODUCT/requirements.txt without comments."""
    path = config.product_dir / "requirements.txt"
    if not path.is_file():
        return ()
    lines = (line.split(" #", 1)[0].strip() for line in path.read_text().splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


#: Mozilla's "intermediate" ciphers for TLS 1.2 (TLS 1.3's are OpenSSL's and all fine); the
#: DHE ones are used only with ssl_dhparam, which the kit does not set.
TLS_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
#: Strict-Transport-Security's max-age with hsts = true: two years, as Mozilla advises.
HSTS_MAX_AGE = 63072000


def certificate(config: Config, release: str) -> dict[str, str]:
    """Where Nginx reads the certificate: certbot's live files (renewed in place), or the
    release's own copy (tls = "files"). ``issuer``: the CA that issued it."""
    layout = config.layout
    if config.tls.acme:
        return {"fullchain": layout.acme_fullchain, "key": layout.acme_key,
                "issuer": layout.acme_chain}  # fmt: skip
    paths = layout.release(release)
    return {"fullchain": paths.tls_fullchain, "key": paths.tls_key, "issuer": paths.tls_issuer}


#: Nginx's own answers that its site gives in JSON, as the workers give theirs.
NGINX_ERRORS = (400, 413, 414, 429, 500, 502, 503, 504)


def api_args(config: Config) -> str:
    """The options every API worker's Supervisor line passes to ``apiphant serve``: the
    schema's command line (``settings.options``) of ``[api]``, the pool of ``[database]``
    and the grace the front's Nginx needs."""
    values = {**asdict(config.api), **asdict(config.database),
              "drain_idle_grace": config.nginx.drain_idle_grace}  # fmt: skip
    return shlex.join(options.command_line(values, "serve"))


def background_args(config: Config) -> str:
    """The background runner's options on its Supervisor line, from ``[background]`` and
    the pool of ``[database]``."""
    values = {**asdict(config.background), **asdict(config.database)}
    return shlex.join(options.command_line(values, "background"))


#: Connections PostgreSQL keeps beyond the programs' pools: the release phase's migrations,
#: ``fab run``, the deploy's own, a person's psql.
DB_SPARE_CONNECTIONS = 20


def database(config: Config) -> dict:
    """What the postgres role's files say: the cluster's paths, who it listens for and whom
    it admits (each API and background host elsewhere, by its private address alone)."""
    layout = config.layout
    programs = sum(len(config.workers(h)) + h.has("background") for h in config.hosts)
    clients = [h.private_address for h in config.database_remote_clients()
               if h.private_address]  # fmt: skip
    return {
        "name": layout.db_name,
        "os_user": POSTGRES_USER,
        "bin": POSTGRES_BIN,
        "program": layout.database_program,
        "root": layout.db_root,
        "data": layout.db_data,
        "socket": layout.db_socket,
        "conf": layout.db_conf,
        "hba": layout.db_hba,
        "program_conf": layout.db_program_conf,
        "include": layout.db_supervisor_include,
        "port": config.database.port,
        "listen": config.database_listen(),
        "clients": [f"{a}/{128 if ':' in a else 32}" for a in clients],
        "max_connections": max(100, programs * config.database.db_pool_size
                               + DB_SPARE_CONNECTIONS),
        **backups_context(config),
    }


def backups_context(config: Config) -> dict:
    """What the backup script and its program say: where, how often, how many, and the
    host that gets the copies (none with no other host, or no private addresses)."""
    layout, copy = config.layout, config.backup_copy_host()
    return {
        "backups": layout.db_backups,
        "backup_script": layout.db_backup_script,
        "backup_program": layout.backup_program,
        "backup_program_conf": layout.db_backup_program_conf,
        "backup_include": layout.backup_include,
        "backup_every": max(1, round(config.database.backup_every)),
        "keep_backups": config.database.keep_backups,
        "backup_name": backups.name_pattern(layout),
        "backup_key": layout.db_backup_key,
        "known_hosts": layout.db_known_hosts,
        "copy_host": copy.name if copy else "",
        "copy_to": f"{layout.backup_program}@{copy.private_address}" if copy else "",
        "copy_port": config.ssh_port(copy) if copy else 22,
    }


#: The settings of the rendered postgresql.conf that take effect only when PostgreSQL restarts
#: (context postmaster): a deploy that changes one restarts it (``postgres.run_cluster``).
RESTART_ONLY = ("listen_addresses", "port", "max_connections")


def restart_only(config: Config) -> dict[str, str]:
    """The rendered values of ``RESTART_ONLY``, as PostgreSQL's SHOW writes them."""
    values = database(config)
    shown = {"listen_addresses": values["listen"], "port": values["port"],
             "max_connections": values["max_connections"]}  # fmt: skip
    return {name: str(shown[name]) for name in RESTART_ONLY}


def _pool_about(config: Config, pool: Pool) -> str:
    if pool.is_default:
        return "every target no other pool routes"
    return "targets " + ", ".join(pool.targets)


def context(
    config: Config,
    host: Host,
    release: str,
    wheel: str,
    host_roles: list[roles.Role],
    neighbours: tuple[hostwide.Needs, ...] = (),
) -> dict:
    """Everything a template may use; templates fail on anything else. ``neighbours``: the
    other deployments on the host, whose needs its main Nginx config serves too."""
    layout = config.layout
    paths = layout.release(release)
    pools = [
        {
            "name": p.name,
            "is_default": p.is_default,
            "targets": p.targets,
            "workers": config.pool_workers(p),
            "about": _pool_about(config, p),
        }
        for p in config.pools
    ]
    default = next((p for p in pools if p["is_default"]), None)
    return {
        "product": config.product,
        "deployment": layout.name,
        "ident": layout.ident,
        "user": layout.user,
        "release": release,
        "release_env": RELEASE_ENV,
        "secrets_file": SECRETS,
        "wheel": wheel,
        "wheel_extras": "".join(f"[{e}]" for e in config.apiphant_extras()),
        "host": host,
        "paths": {
            "root": layout.root,
            "release": paths.dir,
            "wheels": paths.wheels,
            "venv": paths.venv,
            "current": layout.current,
            "current_config": layout.current_config,
            "shared": layout.shared,
            "maintenance": layout.maintenance,
            "acme_webroot": layout.acme_webroot,
            "logs": layout.logs,
            "site": layout.site,
            "supervisor_include": layout.supervisor_include,
            "logrotate_state": layout.logrotate_state,
        },
        "first_port": host.first_port,
        "api": config.api,
        "api_stopwait": int(config.api.drain_timeout) + STOP_MARGIN,
        "api_args": api_args(config),
        "nginx": config.nginx,
        "main": hostwide.merge(host.name, hostwide.Needs.of(config), neighbours),
        "server_names": config.site_names,
        "tls": config.tls,
        "https": config.tls.on,
        "acme_challenge": ACME_CHALLENGE,
        "acme_peers": config.acme_peer_servers(host) if config.renews(host) else [],
        "certificate": certificate(config, release),
        "tls_ciphers": TLS_CIPHERS,
        "hsts_max_age": HSTS_MAX_AGE,
        "renewer_program": layout.renewer if config.renews(host) else "",
        "renew_every": RENEW_EVERY,
        "rotator_program": layout.rotator,
        "logrotate_run": logrotate(layout),
        "logs": config.logs,
        "certbot_renew": certbot_renew(layout, config.tls) if config.tls.acme else "",
        "nginx_errors": [(code, status_line(code)) for code in NGINX_ERRORS],
        "not_found": status_line(404),
        "pools": pools,
        "default_pool": default,
        "workers": config.workers(host),
        "background_program": layout.background,
        "background_stop_timeout": config.background_stop_timeout,
        "background_stopwait": int(config.background_stop_timeout) + STOP_MARGIN,
        "background_args": background_args(config),
        "health_path": HEALTH_PATH,
        "environment": config.program_environment(),
        "apt": roles.apt_packages(host_roles),
        "pip": roles.pip_packages(host_roles),
        "product_requirements": product_requirements(config),
        "services": roles.services(host_roles),
        "supervisor_pidfile": SUPERVISOR_PIDFILE,
        "nginx_pidfile": NGINX_PIDFILE,
        "nginx_user": NGINX_USER,
        "database": database(config),
    }


def render_host(
    config: Config,
    host: Host,
    release: str,
    wheel: str,
    all_roles: dict[str, roles.Role] | None = None,
    env: jinja2.Environment | None = None,
    neighbours: tuple[hostwide.Needs, ...] = (),
) -> HostFiles:
    """Every file one host needs, by the templates its roles name; ``neighbours``: the
    other deployments on it (``hostwide``), as the deploy asked the host."""
    all_roles = all_roles if all_roles is not None else roles.load_roles()
    host_roles = roles.for_host(config.role_names(host), all_roles)
    env = env or environment(config)
    ctx = context(config, host, release, wheel, host_roles, neighbours)
    files = {
        name: env.get_template(f"{name}.j2").render(ctx) for name in roles.templates(host_roles)
    }
    return HostFiles(
        host=host,
        files=files,
        executable=frozenset(roles.executables(host_roles)),
        links=roles.links(host_roles, config.layout),
        apt=roles.apt_packages(host_roles),
        services=roles.services(host_roles),
        unlinks=roles.unlinks(host_roles, config.layout),
    )


def render_all(
    config: Config, hosts: Iterable[Host], release: str, wheel: str
) -> dict[str, HostFiles]:
    all_roles = roles.load_roles()
    env = environment(config)
    return {h.name: render_host(config, h, release, wheel, all_roles, env) for h in hosts}
