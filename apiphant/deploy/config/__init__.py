"""PRODUCT/deploy.toml, parsed and checked into frozen dataclasses.

Every name that later reaches a shell command, a file path or a config
file (product, hosts, pools, targets, server names, environment keys) is
checked against a strict pattern here, so the layers above can rely on it.
A mistake is one line naming the key and what was expected::

    deploy.toml: hosts.web1.workers: expected a positive integer, got 'x'

The package: ``model`` and ``front`` (the dataclasses, each field read from the file declared
with ``keys.key``), ``topology`` (what follows from them), ``loading`` (files and environment
layers), ``parsing`` with ``reader`` and ``sections/`` (one module per part of the file),
``checks`` (rules across hosts), ``secrets`` (the secrets file) and ``reference`` (the table
of every key, for the docs). Its names are re-exported here: ``from apiphant.deploy.config
import X`` is the API.
"""

from apiphant.deploy.config.errors import ConfigError
from apiphant.deploy.config.front import (
    DEFAULT_TLS_LISTEN,
    LETSENCRYPT,
    LETSENCRYPT_STAGING,
    TLS_CERT_KEY,
    TLS_KEY_KEY,
    TLS_MODES,
    Nginx,
    Tls,
    listen_address,
    rlimit_nofile,
)
from apiphant.deploy.config.loading import differences, layers, load, merge
from apiphant.deploy.config.model import (
    DEFAULT_DB_PORT,
    DEFAULT_PORT,
    DEFAULT_PYTHON,
    DEFAULT_STOP_TIMEOUT,
    DEFAULT_WORKERS,
    KEEP_RELEASES,
    KNOWN_ROLES,
    SUDO_PASSWORD_ENV,
    VENV_MODES,
    Api,
    Background,
    Batch,
    Config,
    Database,
    Host,
    Logs,
    Pool,
)
from apiphant.deploy.config.parsing import parse
from apiphant.deploy.config.patterns import (
    ABS_PATH,
    ACME_URL,
    ANY_TEXT,
    DOMAIN,
    EMAIL,
    ENV_KEY,
    ENV_NAME,
    HOST_NAME,
    LOGIN,
    POOL,
    RATE,
    SERVER_NAME,
    SSH,
    TARGET,
)
from apiphant.deploy.config.secrets import check_secrets, parse_secrets, read_secrets, secrets_lines
from apiphant.deploy.config.sections.environment import RESERVED_ENV
from apiphant.deploy.config.topology import Worker

__all__ = [
    "ABS_PATH", "ACME_URL", "ANY_TEXT", "DEFAULT_DB_PORT", "DEFAULT_PORT", "DEFAULT_PYTHON",
    "DEFAULT_STOP_TIMEOUT",
    "DEFAULT_TLS_LISTEN", "DEFAULT_WORKERS", "DOMAIN", "EMAIL", "ENV_KEY", "ENV_NAME",
    "HOST_NAME", "KEEP_RELEASES", "KNOWN_ROLES", "LETSENCRYPT", "LETSENCRYPT_STAGING", "LOGIN",
    "POOL", "RATE", "RESERVED_ENV", "SERVER_NAME", "SSH", "SUDO_PASSWORD_ENV", "TARGET",
    "TLS_CERT_KEY", "TLS_KEY_KEY", "TLS_MODES", "VENV_MODES",
    "Api", "Background", "Batch", "Config", "ConfigError", "Database", "Host", "Logs", "Nginx",
    "Pool", "Tls",
    "Worker",
    "check_secrets", "differences", "layers", "listen_address", "load", "merge", "parse",
    "parse_secrets", "read_secrets", "rlimit_nofile", "secrets_lines",
]  # fmt: skip
