"""The rules across a whole deployment, checked once every table has parsed."""

from pathlib import Path

from apiphant.deploy.config.errors import ConfigError
from apiphant.deploy.config.model import Config
from apiphant.settings.schema import env_name


def check_deployment(config: Config, shown: str) -> None:
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
    _check_database(config, shown)
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


def _check_database(config: Config, shown: str) -> None:
    """One postgres host at most, or a database elsewhere, not both; the hosts that reach
    it over the network have private addresses (it listens on its own, and admits theirs)."""
    databases = [h.name for h in config.hosts if h.has("postgres")]
    if len(databases) > 1:
        raise ConfigError(f"{shown}: hosts.{databases[1]}.roles: postgres runs on exactly one "
                          f"host, already on {databases[0]}")  # fmt: skip
    if databases and config.database.url_env:
        raise ConfigError(f"{shown}: database.url_env: hosts.{databases[0]} has the postgres "
                          "role: a database elsewhere or its own, not both")  # fmt: skip
    url = env_name("database_url")
    if url in dict(config.environment):
        raise ConfigError(f"{shown}: environment.{url}: it holds a password: put it in the "
                          f'secrets file, and [database] url_env = "{url}"')  # fmt: skip
    server = config.database_host()
    remote = config.database_remote_clients()
    if server is None or not remote:
        return
    if not server.private_address:
        raise ConfigError(
            f"{shown}: hosts.{server.name}.private_address: missing, expected the address "
            f"{remote[0].name}'s programs reach PostgreSQL at, like 10.0.0.7"
        )
    for host in remote:
        if not host.private_address:
            raise ConfigError(
                f"{shown}: hosts.{host.name}.private_address: missing, expected the address "
                f"PostgreSQL on {server.name} admits this host's programs from, like 10.0.0.5"
            )
