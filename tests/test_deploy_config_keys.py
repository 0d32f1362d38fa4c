"""deploy.toml's keys, declared once on the dataclass fields they fill: each table's allowed
keys, in the order its "unknown key" message lists them (users read that list to find a
typo, so it stays as it is); every one of them read; and the reference table of them all."""

import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from apiphant.deploy.config import (
    Api,
    Background,
    Config,
    ConfigError,
    Database,
    Host,
    Logs,
    Nginx,
    Pool,
    parse,
    reference,
)
from apiphant.deploy.config.keys import key, keys_of
from tests.test_deploy_config import MYPRODUCT, ONE_HOST, THREE_HOSTS, error_of

#: Every table of deploy.toml, and its keys as the message lists them.
TABLES = {
    "": "product, tls, domains, acme_email, acme_server, acme_ca_bundle, hsts, user, release, "
        "after_deploy, server_names, keep_releases, batch, venv, python, secrets, environment, "
        "api, background, nginx, logs, database, hosts, pools",
    "api": "max_body, max_json_values, keepalive_timeout, header_timeout, request_timeout, "
           "drain_timeout, max_connections, access_log, cors_origins, cors_headers, "
           "cors_credentials, max_active, queue_timeout, linger_timeout, linger_time, docs",
    "background": "stop_timeout",
    "nginx": "listen, connect_timeout, read_timeout, send_timeout, client_timeout, "
             "keepalive_timeout, upstream_keepalive, upstream_keepalive_timeout, fail_timeout, "
             "worker_connections, limit_conn, limit_req, limit_req_burst, local_port, tls_listen",
    "logs": "max_size, check_every",
    "database": "port, url_env, pool_size, pool_timeout, backup_every, keep_backups",
    "hosts.web1": "ssh, roles, workers, first_port, private_address",
    "pools.reports": "hosts, targets",
}  # fmt: skip


def with_unknown_key(table: str) -> str:
    """A deploy.toml with one key too many in ``table``."""
    if table == "":
        return "colour = 1\n" + ONE_HOST
    if table == "hosts.web1":
        return ONE_HOST + "colour = 1\n"
    if table == "pools.reports":
        return THREE_HOSTS + "colour = 1\n"
    return ONE_HOST + f"[{table}]\ncolour = 1\n"


@pytest.mark.parametrize("table", TABLES)
def test_an_unknown_key_lists_the_tables_keys_in_order(table: str) -> None:
    key = f"{table}.colour" if table else "colour"
    assert error_of(with_unknown_key(table)) == (
        f"deploy.toml: {key}: unknown key (expected one of: {TABLES[table]})"
    )


def declared(table: str) -> tuple[str, ...]:
    """The keys the dataclasses declare for ``table`` (what ``parse`` allows)."""
    by_table = {
        "": keys_of(Config),
        "api": keys_of(Api),
        "background": keys_of(Background),
        "nginx": keys_of(Nginx) + keys_of(Config, "nginx"),
        "logs": keys_of(Logs),
        "database": keys_of(Database),
        "hosts.web1": keys_of(Host),
        "pools.reports": keys_of(Pool),
    }
    return by_table[table]


@pytest.mark.parametrize("table", TABLES)
def test_a_tables_keys_are_declared_on_its_dataclass_fields(table: str) -> None:
    assert ", ".join(declared(table)) == TABLES[table]


def test_keys_of_reads_the_field_metadata_in_field_order() -> None:
    @dataclass(frozen=True)
    class Inner:
        mode: str = key("off", toml="switch")
        port: int = key(1, toml="elsewhere_port", section="other")

    @dataclass(frozen=True)
    class Outer:
        name: str = ""  # not from the file
        first: int = key(1)
        inner: Inner = key(factory=Inner, inline=True)
        low: int = key(0, toml="range")
        high: int = key(9, toml="range")  # two fields from one key: listed once

    assert keys_of(Outer) == ("first", "switch", "range")
    assert keys_of(Outer, "other") == ("elsewhere_port",)
    assert Outer().inner == Inner() and Outer.first == 1


def wrong_value(table: str, name: str) -> dict:
    """A deploy.toml with ``name`` of ``table`` set to a value no key accepts."""
    data = tomllib.loads(THREE_HOSTS if table == "pools.reports" else ONE_HOST)
    place = data
    for part in table.split(".") if table else ():
        place = place.setdefault(part, {})
    place[name] = [{}]
    return data


@pytest.mark.parametrize(
    ("table", "name"), [(table, name) for table in TABLES for name in declared(table)]
)
def test_every_declared_key_is_read(table: str, name: str) -> None:
    """A key allowed but never read would take any value in silence: each one refuses a
    wrong value in a message that names it."""
    with pytest.raises(ConfigError) as caught:
        parse(wrong_value(table, name), Path("deploy.toml"), MYPRODUCT)
    full = f"{table}.{name}" if table else name
    assert str(caught.value).startswith(f"deploy.toml: {full}: ")


def test_the_reference_shows_every_key_once_in_order_with_its_help() -> None:
    """docs' table of deploy.toml comes from the same fields: a key added is documented."""
    tables = {"api": "api", "background": "background", "nginx": "nginx", "logs": "logs",
              "database": "database", "hosts": "hosts.web1",
              "pools": "pools.reports"}  # fmt: skip
    expected = []
    for name in TABLES[""].split(", "):
        if name in tables:
            shown = name + (".NAME" if name in ("hosts", "pools") else "")
            expected += [f"`[{shown}] {key}`" for key in TABLES[tables[name]].split(", ")]
        else:
            expected.append(f"`[{name}]`" if name == "environment" else f"`{name}`")
    rows = reference.rows()
    assert [key for key, _, _ in rows] == [*expected, "`[env.NAME]`"]
    assert all(help and "|" not in help + default for _, default, help in rows)
    shown = {key: default for key, default, _ in rows}
    assert shown["`[api] max_body`"] == '`"1M"`' and shown["`keep_releases`"] == "5"
    assert shown["`[nginx] connect_timeout`"] == "2" and shown["`[api] access_log`"] == "false"
    assert shown["`venv`"] == '`"copy"`' and shown["`secrets`"] == "none"
    assert shown["`[api] cors_origins`"] == "`[]`" and shown["`product`"] == ""
    table = reference.markdown().splitlines()
    assert table[:2] == ["| key | default | |", "| --- | --- | --- |"]
    assert table[2:] == [f"| {key} | {default} | {help} |" for key, default, help in rows]
