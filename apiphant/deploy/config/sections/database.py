"""``[database]``: where the deployment's PostgreSQL is, and the programs' pools of
connections to it (``pool_size`` and ``pool_timeout`` are the schema's ``db_pool_size`` and
``db_pool_timeout``, read by their kinds)."""

from dataclasses import fields

from apiphant.deploy.config.keys import KEY
from apiphant.deploy.config.model import DEFAULT_DB_PORT, Database
from apiphant.deploy.config.patterns import ENV_KEY
from apiphant.deploy.config.reader import Reader
from apiphant.settings import values
from apiphant.settings.schema import BY_NAME


def read_database(d: Reader) -> Database:
    """The port, a managed database's secrets line, the pools' settings, the backups."""
    port = d.integer("port", DEFAULT_DB_PORT, low=1024, high=65535)
    url_env = d.text("url_env", ENV_KEY, "a secrets file line's name like DATABASE_URL",
                     "") if d.has("url_env") else ""  # fmt: skip
    pools = {}
    for each in fields(Database):
        toml = each.metadata[KEY].toml or each.name
        setting = BY_NAME.get(each.name)
        if setting is not None and setting.deploy == f"database.{toml}":
            parse = setting.kind.toml
            assert parse is not None, each.name
            pools[each.name] = each.default if not d.has(toml) else d.parse(toml, parse, None)
    every = d.parse("backup_every", values.toml_every, Database.backup_every)
    keep = d.integer("keep_backups", Database.keep_backups, low=1, high=1000)
    return Database(port=port, url_env=url_env, backup_every=every, keep_backups=keep, **pools)
