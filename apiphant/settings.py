"""The environment variables apiphant reads, each checked in one place.

A bad value is a one-line SettingError naming the variable and what it accepts; the
commands turn it into that line on stderr and exit status 2, never a traceback.
"""

import os
from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")

LOG_LEVEL = "APIPHANT_LOG_LEVEL"
LOG_FORMAT = "APIPHANT_LOG_FORMAT"
CORS_ORIGINS = "APIPHANT_CORS_ORIGINS"
CORS_HEADERS = "APIPHANT_CORS_HEADERS"
CORS_CREDENTIALS = "APIPHANT_CORS_CREDENTIALS"
TRUSTED_PROXIES = "APIPHANT_TRUSTED_PROXIES"
PORT = "APIPHANT_PORT"
TIMEOUT = "APIPHANT_TIMEOUT"
#: Sentry: send frames' local variables (scrubbed) with events; off by default.
SENTRY_LOCALS = "APIPHANT_SENTRY_LOCALS"
#: Sentry: more key parts to scrub from events, comma-separated (apiphant.reporting.SCRUBBED).
SENTRY_SCRUB = "APIPHANT_SENTRY_SCRUB"

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


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


def choice(choices: tuple[str, ...], upper: bool = False) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.upper() if upper else text.lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
        return value

    return parse


def port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"expected a port number from 1 to 65535, got {text!r}")
    return int(text)


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise ValueError(f"expected a positive number of seconds, got {text!r}")
    return value


def words(text: str) -> tuple[str, ...]:
    """A comma-separated list: ``https://a.example,https://b.example``."""
    return tuple(word.strip() for word in text.split(",") if word.strip())


def flag(text: str) -> bool:
    value = text.lower()
    if value not in ("1", "0", "true", "false", "yes", "no"):
        raise ValueError(f"expected true or false, got {text!r}")
    return value in ("1", "true", "yes")


def log_level(environ: Mapping[str, str] | None = None) -> str:
    return read(LOG_LEVEL, choice(LOG_LEVELS, upper=True), "INFO", environ)


def log_format(environ: Mapping[str, str] | None = None) -> str:
    return read(LOG_FORMAT, choice(LOG_FORMATS), "text", environ)
