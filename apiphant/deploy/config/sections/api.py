"""``[api]`` and ``[background]``: what the API workers and the background runner are
started with. Each key is a setting of apiphant.settings.schema, read by its kind."""

from dataclasses import fields
from typing import Any

from apiphant import settings
from apiphant.cors import CorsError, policy
from apiphant.deploy.config.errors import ConfigError
from apiphant.deploy.config.model import Api, Background
from apiphant.deploy.config.reader import Reader


def _read(reader: Reader, cls: type) -> Any:
    """Every field of ``cls`` from its key, in field order (the order of the errors)."""
    return cls(**{each.name: reader.setting(each.name, each.default) for each in fields(cls)})


def read_api(a: Reader) -> Api:
    """The workers' serve options, and a CORS policy the workers will accept."""
    api = _read(a, Api)
    for key, origins, headers, credentials in (
        ("cors_origins", api.cors_origins, (), False),
        ("cors_headers", (), api.cors_headers, False),
        ("cors_credentials", api.cors_origins, (), api.cors_credentials),
    ):
        try:
            policy(origins, headers, credentials)
        except CorsError as error:
            raise ConfigError(f"{a.shown}: api.{key}: {error}") from None
    return api


def check_credentials(shown: str, api: Api, environment: tuple[tuple[str, str], ...]) -> None:
    """``cors_credentials`` or [environment]'s own APIPHANT_CORS_CREDENTIALS, not both: the
    variable is not reserved, since deploy.toml set it that way before the key existed."""
    if api.cors_credentials and settings.CORS_CREDENTIALS in dict(environment):
        raise ConfigError(f"{shown}: api.cors_credentials: {settings.CORS_CREDENTIALS} is in "
                          "[environment] too, leave one out")  # fmt: skip


def read_background(b: Reader) -> Background:
    """``apiphant-background --stop-timeout``."""
    return _read(b, Background)
