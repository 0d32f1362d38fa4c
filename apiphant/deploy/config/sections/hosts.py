"""``[hosts.NAME]`` and ``[pools.NAME]``: the machines, their roles and workers, and which of
them serve which targets."""

import re
from typing import Any

from apiphant.deploy.config.errors import ConfigError
from apiphant.deploy.config.front import Nginx
from apiphant.deploy.config.keys import keys_of
from apiphant.deploy.config.model import (
    DEFAULT_PORT,
    DEFAULT_WORKERS,
    KNOWN_ROLES,
    Host,
    Pool,
)
from apiphant.deploy.config.patterns import HOST_NAME, POOL, SSH, TARGET
from apiphant.deploy.config.reader import Reader, private_address


def read_hosts(shown: str, table: Any, nginx: Nginx) -> tuple[Host, ...]:
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{shown}: hosts: missing, expected at least one [hosts.NAME] table")
    hosts = []
    for name, body in table.items():
        if not HOST_NAME.fullmatch(name):
            raise ConfigError(f"{shown}: hosts.{name}: expected a host name like web1")
        r = Reader(shown, f"hosts.{name}", body, keys_of(Host))
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
        private = private_address(r, "private_address")
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


def read_pools(shown: str, table: Any, hosts: tuple[Host, ...]) -> tuple[Pool, ...]:
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
        r = Reader(shown, f"pools.{name}", body, keys_of(Pool))
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
