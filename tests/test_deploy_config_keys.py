"""deploy.toml's keys: each table's allowed keys, in the order its "unknown key" message
lists them (users read that list to find a typo, so it stays as it is)."""

import pytest

from tests.test_deploy_config import ONE_HOST, THREE_HOSTS, error_of

#: Every table of deploy.toml, and its keys as the message lists them.
TABLES = {
    "": "product, tls, domains, acme_email, acme_server, acme_ca_bundle, hsts, user, release, "
        "after_deploy, server_names, keep_releases, batch, venv, python, secrets, environment, "
        "api, background, nginx, logs, hosts, pools",
    "api": "max_body, max_json_values, keepalive_timeout, header_timeout, request_timeout, "
           "drain_timeout, max_connections, access_log, cors_origins, cors_headers",
    "background": "stop_timeout",
    "nginx": "listen, connect_timeout, read_timeout, send_timeout, client_timeout, "
             "keepalive_timeout, upstream_keepalive, upstream_keepalive_timeout, fail_timeout, "
             "worker_connections, limit_conn, limit_req, limit_req_burst, local_port, tls_listen",
    "logs": "max_size, check_every",
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
