"""apiphant's settings: declared once in ``settings.schema``, read here from the environment.

A bad value is a one-line SettingError naming the variable and what it accepts; the
commands turn it into that line on stderr and exit status 2, never a traceback.

``settings.values`` parses, ``settings.options`` builds the command lines, and
``settings.tables`` writes the documentation's tables, all from the schema.
"""

import os
from collections.abc import Callable, Mapping
from typing import TypeVar

from apiphant.settings import schema
from apiphant.settings.schema import LOG_FORMATS, LOG_LEVELS, Setting
from apiphant.settings.values import choice, flag, port, seconds, words

__all__ = [
    "LOG_FORMATS", "LOG_LEVELS", "SettingError", "choice", "env_value", "flag", "log_format",
    "log_level", "port", "read", "seconds", "words",
]  # fmt: skip

T = TypeVar("T")


# The environment variables by their names of old: each is its schema entry's ``env``.
LOG_LEVEL = schema.env_name("log_level")
LOG_FORMAT = schema.env_name("log_format")
CORS_ORIGINS = schema.env_name("cors_origins")
CORS_HEADERS = schema.env_name("cors_headers")
CORS_CREDENTIALS = schema.env_name("cors_credentials")
TRUSTED_PROXIES = schema.env_name("trusted_proxies")
PORT = schema.env_name("port")
TIMEOUT = schema.env_name("timeout")
#: Sentry: send frames' local variables (scrubbed) with events; off by default.
SENTRY_LOCALS = schema.env_name("sentry_locals")
#: Sentry: more key parts to scrub from events, comma-separated (reporting.SCRUBBED).
SENTRY_SCRUB = schema.env_name("sentry_scrub")


class SettingError(ValueError):
    """A bad environment value or option: one line naming it and the accepted values."""


def read(name: str, parse: Callable[[str], T], default: T, environ: Mapping[str, str] | None = None
         ) -> T:  # fmt: skip
    """``parse(environ[name])``, or ``default`` when unset or empty."""
    environ = os.environ if environ is None else environ
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        return parse(text)
    except ValueError as error:
        raise SettingError(f"{name}: {error}") from None


def env_value(setting: Setting | str, environ: Mapping[str, str] | None = None):
    """A setting from its environment variable, parsed by its kind; its default when unset."""
    setting = schema.BY_NAME[setting] if isinstance(setting, str) else setting
    assert setting.env is not None and setting.kind.env is not None, setting.name
    return read(setting.env, setting.kind.env, setting.default, environ)


def log_level(environ: Mapping[str, str] | None = None) -> str:
    return env_value("log_level", environ)


def log_format(environ: Mapping[str, str] | None = None) -> str:
    return env_value("log_format", environ)
