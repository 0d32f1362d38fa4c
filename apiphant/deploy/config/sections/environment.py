"""``[environment]``: the programs' clear variables, and those the deploy sets itself."""

from typing import Any

from apiphant import settings
from apiphant.app import RELEASE_ENV
from apiphant.deploy.config.errors import ConfigError
from apiphant.deploy.config.patterns import ENV_KEY
from apiphant.settings import schema

#: Set by the deploy: the release id; the CORS policy and the docs from [api]; the fronts as
#: trusted proxies.
RESERVED_ENV = {
    RELEASE_ENV: "the release id",
    settings.CORS_ORIGINS: "[api] cors_origins",
    settings.CORS_HEADERS: "[api] cors_headers",
    schema.env_name("docs"): "[api] docs",
    settings.TRUSTED_PROXIES: "the hosts with the nginx role",
}


def read_environment(shown: str, table: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(table, dict):
        raise ConfigError(f"{shown}: environment: expected a table of NAME = value")
    items = []
    for key, value in table.items():
        if not ENV_KEY.fullmatch(key):
            raise ConfigError(
                f"{shown}: environment.{key}: expected a variable name like SENTRY_ENVIRONMENT"
            )
        if key in RESERVED_ENV:
            raise ConfigError(f"{shown}: environment.{key}: set by the deploy from "
                              f"{RESERVED_ENV[key]}, leave it out")  # fmt: skip
        if isinstance(value, bool):
            value = "true" if value else "false"
        if isinstance(value, int | float):
            value = str(value)
        if not isinstance(value, str) or "\n" in value or "\r" in value or "\0" in value:
            raise ConfigError(
                f"{shown}: environment.{key}: expected a one-line string or number, got {value!r}"
            )
        items.append((key, value))
    return tuple(items)
