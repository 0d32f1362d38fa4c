"""``parse``: a loaded deploy.toml checked, table by table in the order of today's errors,
into a ``Config``."""

from pathlib import Path

from apiphant.deploy.config.checks import check_deployment
from apiphant.deploy.config.front import Nginx
from apiphant.deploy.config.keys import keys_of
from apiphant.deploy.config.model import Api, Background, Config, Database, Logs
from apiphant.deploy.config.reader import Reader
from apiphant.deploy.config.sections.api import check_credentials, read_api, read_background
from apiphant.deploy.config.sections.database import read_database
from apiphant.deploy.config.sections.hosts import read_hosts, read_pools
from apiphant.deploy.config.sections.logs import read_logs
from apiphant.deploy.config.sections.nginx import check_drain, read_nginx
from apiphant.deploy.config.sections.tls import read_tls
from apiphant.deploy.config.sections.top import read_top
from apiphant.deploy.layout import PRODUCTION


def parse(
    data: dict, path: Path, product_dir: Path, env: str = PRODUCTION, shown: str = ""
) -> Config:
    """Check a loaded deploy.toml against the product folder it deploys."""
    shown = shown or path.name
    top = Reader(shown, "", data, keys_of(Config))
    values = read_top(top, data, path, product_dir, env)

    a = Reader(shown, "api", data.get("api", {}), keys_of(Api))
    api = read_api(a)
    check_credentials(shown, api, values["environment"])
    b = Reader(shown, "background", data.get("background", {}), keys_of(Background))
    background = read_background(b)

    # [nginx] is Nginx's, and tls_listen (Tls's) too
    nginx_keys = keys_of(Nginx) + keys_of(Config, "nginx")
    n = Reader(shown, "nginx", data.get("nginx", {}), nginx_keys)
    nginx = read_nginx(n)
    check_drain(shown, api, nginx)

    lg = Reader(shown, "logs", data.get("logs", {}), keys_of(Logs))
    logs = read_logs(lg)

    d = Reader(shown, "database", data.get("database", {}), keys_of(Database))
    database = read_database(d)

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
        background=background,
        env=env,
        tls=tls,
        logs=logs,
        database=database,
    )
    check_deployment(config, shown)
    return config
