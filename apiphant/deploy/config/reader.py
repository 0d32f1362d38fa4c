"""Typed access to one table of deploy.toml, and the parsers of the values that need more
than a type check; every mistake is a ConfigError naming the full key. Sizes, seconds,
integers, flags and lists are read by apiphant.settings.values, as the schema's settings are."""

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Any

from apiphant.deploy.config.errors import ConfigError
from apiphant.deploy.config.model import Batch
from apiphant.deploy.config.patterns import RATE
from apiphant.settings import values
from apiphant.settings.schema import BY_NAME


class Reader:
    """Typed access to one table, with errors that name the full key."""

    def __init__(self, shown: str, prefix: str, table: Any, allowed: Iterable[str]) -> None:
        self.shown = shown
        self.prefix = prefix
        if not isinstance(table, dict):
            raise ConfigError(f"{shown}: {prefix}: expected a table, got {table!r}")
        self.table = table
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise ConfigError(
                f"{shown}: {self.key(unknown[0])}: unknown key "
                f"(expected one of: {', '.join(allowed)})"
            )

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, expected: str, got: Any) -> ConfigError:
        return ConfigError(f"{self.shown}: {self.key(name)}: expected {expected}, got {got!r}")

    def has(self, name: str) -> bool:
        return name in self.table

    def parse(self, name: str, parse: Callable[[Any], Any], default: Any) -> Any:
        """``parse`` of the key ``name`` (or of ``default`` when the table leaves it out);
        its ValueError, ``expected WHAT, got X``, becomes the ConfigError naming the key."""
        try:
            return parse(self.table.get(name, default))
        except ValueError as error:
            raise ConfigError(f"{self.shown}: {self.key(name)}: {error}") from None

    def setting(self, name: str, default: Any) -> Any:
        """The key of the schema's setting ``name``, read by its kind, or ``default`` when
        the table leaves it out."""
        parse = BY_NAME[name].kind.toml
        assert parse is not None, name
        return default if name not in self.table else self.parse(name, parse, None)

    def text(self, name: str, pattern: re.Pattern[str] | None, expected: str, default: Any = None):
        value = self.table.get(name, default)
        if value is None:
            raise ConfigError(f"{self.shown}: {self.key(name)}: missing, expected {expected}")
        if not isinstance(value, str) or (pattern and not pattern.fullmatch(value)):
            raise self.fail(name, expected, value)
        return value

    def integer(self, name: str, default: int | None, low: int = 1, high: int = 2**31) -> int:
        return self.parse(name, values.toml_integer(low, high), default)

    def seconds(self, name: str, default: float) -> float:
        return self.parse(name, values.toml_seconds, default)

    def nginx_seconds(self, name: str, default: float) -> float:
        """Seconds for an Nginx time, which counts whole milliseconds: 0.5 is rendered as
        500ms (``render.nginx_time``); less than one millisecond is none at all."""
        value = self.seconds(name, default)
        if round(value * 1000) < 1:
            raise self.fail(name, "at least 0.001 seconds (Nginx counts milliseconds)", value)
        return value

    def flag(self, name: str, default: bool) -> bool:
        return self.parse(name, values.toml_flag, default)

    def names(self, name: str, pattern: re.Pattern[str], expected: str, default: Any = None):
        if self.table.get(name, default) is None:
            raise ConfigError(
                f"{self.shown}: {self.key(name)}: missing, expected a list of {expected}"
            )
        return self.parse(name, values.toml_names(pattern.fullmatch, expected), default)


def size(reader: Reader, name: str, default: int) -> int:
    """A size: the one parser of them, apiphant.settings.values'."""
    return reader.parse(name, values.toml_size, default)


def batch(reader: Reader) -> Batch:
    """``batch``: a number of workers like 2, or a share of each pool like "25%"."""
    value = reader.table.get("batch", 1)
    expected = "a number of workers like 2, or a share of each pool like '25%'"
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 10000:
        return Batch(count=value)
    if isinstance(value, str) and re.fullmatch(r"[1-9][0-9]?%|100%", value):
        return Batch(percent=int(value[:-1]))
    raise reader.fail("batch", expected, value)


def private_address(reader: Reader, name: str) -> str | None:
    """An address workers may bind: loopback or private, never public, wildcard or multicast."""
    value = reader.table.get(name)
    if value is None:
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise reader.fail(name, "an IP address like 10.0.0.5", value) from None
    if (
        address.is_global
        or address.is_unspecified
        or address.is_multicast
        or address == ipaddress.IPv4Address("255.255.255.255")
    ):
        raise reader.fail(
            name, "a private address like 10.0.0.5 (workers bind it: never a public one)", value
        )
    return str(address)


def listen(reader: Reader, name: str = "listen", default: str = "80") -> tuple[str, int]:
    value = reader.table.get(name, default)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    expected = f"a port like '{default}' or an address like '127.0.0.1:8080' or '[::]:{default}'"
    if not isinstance(value, str):
        raise reader.fail(name, expected, value)
    host, _, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        if host:
            host = str(ipaddress.ip_address(host))
    except ValueError:
        raise reader.fail(name, expected, value) from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise reader.fail(name, expected, value)
    return host, int(port)


def command(reader: Reader, name: str) -> str:
    """A shell command for the product's virtualenv, or "" for none: one line."""
    value = reader.table.get(name, "")
    if not isinstance(value, str) or any(c in value for c in "\n\r\0"):
        raise reader.fail(name, "a one-line command string like 'python -m shop.migrate'", value)
    return value.strip()


def rate(reader: Reader, name: str) -> str:
    """A rate for Nginx's limit_req, or "" for none."""
    if reader.table.get(name, "") == "":
        return ""
    return reader.text(name, RATE, "a rate like '20r/s' or '600r/m', or \"\" for none")
