"""``parse``: a loaded deploy.toml checked, table by table in the order of today's errors,
into a ``Config``."""

from pathlib import Path

from apiphant.deploy.config.checks import check_deployment
from apiphant.deploy.config.model import Config
from apiphant.deploy.config.reader import Reader
from apiphant.deploy.config.sections.api import read_api, read_background
from apiphant.deploy.config.sections.hosts import read_hosts, read_pools
from apiphant.deploy.config.sections.logs import read_logs
from apiphant.deploy.config.sections.nginx import check_drain, read_nginx
from apiphant.deploy.config.sections.tls import read_tls
from apiphant.deploy.config.sections.top import read_top
from apiphant.deploy.layout import PRODUCTION

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


def parse(
    data: dict, path: Path, product_dir: Path, env: str = PRODUCTION, shown: str = ""
) -> Config:
    """Check a loaded deploy.toml against the product folder it deploys."""
    shown = shown or path.name
    top = Reader(shown, "", data, TOP_KEYS)
    values = read_top(top, data, path, product_dir, env)

    a = Reader(shown, "api", data.get("api", {}), (
        "max_body", "max_json_values", "keepalive_timeout", "header_timeout", "request_timeout",
        "drain_timeout", "max_connections", "access_log", "cors_origins", "cors_headers",
    ))  # fmt: skip
    api = read_api(a)
    b = Reader(shown, "background", data.get("background", {}), ("stop_timeout",))
    stop_timeout = read_background(b)

    n = Reader(shown, "nginx", data.get("nginx", {}), (
        "listen", "connect_timeout", "read_timeout", "send_timeout", "client_timeout",
        "keepalive_timeout", "upstream_keepalive", "upstream_keepalive_timeout", "fail_timeout",
        "worker_connections", "limit_conn", "limit_req", "limit_req_burst", "local_port",
        "tls_listen",
    ))  # fmt: skip
    nginx = read_nginx(n)
    check_drain(shown, api, nginx)

    lg = Reader(shown, "logs", data.get("logs", {}), ("max_size", "check_every"))
    logs = read_logs(lg)

    tls = read_tls(top, n, nginx, values["secrets"])
    hosts = read_hosts(shown, data.get("hosts"), nginx)
    pools = read_pools(shown, data.get("pools"), hosts)
    config = Config(
        **values,
        product_dir=product_dir,
        path=path,
        hosts=hosts,
        pools=pools,
        api=api,
        nginx=nginx,
        background_stop_timeout=stop_timeout,
        env=env,
        tls=tls,
        logs=logs,
    )
    check_deployment(config, shown)
    return config
