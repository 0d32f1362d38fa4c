"""Every value parser of apiphant's settings, once: sizes, seconds, counts, ports, word lists,
flags and addresses, for each surface a setting is read from.

A parser raises ValueError whose text is ``expected WHAT, got 'TEXT'``; the surface adds
the name (an argparse option, an environment variable, a deploy.toml key) in front. The
bounds differ per surface, as they always have (the messages are pinned by tests):

- command line: seconds at least 1 ms; ``--drain-idle-grace`` 0 or more (inf too);
  ``--stop-timeout`` 0 or more and finite;
- environment: seconds above 0 and finite;
- deploy.toml: seconds above 0 and below a day; a size may be an integer, and its phrase
  quotes ``'512K'``.
"""

import math
import re
from collections.abc import Callable
from typing import Any

#: The units a size may end with: ``512K``, ``1M``, ``2G``.
SIZE_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3}


class AddressError(ValueError):
    """A bad address argument; the message is one line for the user."""


def _size(value: Any) -> int | None:
    """``1048576``, ``"512K"``, ``"1M"`` as a byte count above 0; None when it is not one."""
    if isinstance(value, str):
        factor = SIZE_UNITS.get(value[-1:].upper(), 1)
        number = value[:-1] if factor > 1 else value
        if number.isdigit() and int(number) > 0:
            return int(number) * factor
    elif isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def size(text: str) -> int:
    """A size on the command line: ``1048576``, ``512K`` or ``1M``."""
    value = _size(text)
    if value is None:
        raise ValueError(f"expected a size like 1048576, 512K or 1M, got {text!r}")
    return value


def toml_size(value: Any) -> int:
    """A size in deploy.toml: an integer, or a string like ``"512K"``."""
    found = _size(value)
    if found is None:
        raise ValueError(f"expected a size like 1048576, '512K' or '1M', got {value!r}")
    return found


def at_least(kind: type, minimum: float, words: str) -> Callable[[str], Any]:
    """A command-line number of ``kind`` (int or float) of at least ``minimum``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value >= minimum:
            raise ValueError(f"expected {words}, got {text!r}")
        return value

    parse.__name__ = f"at_least_{minimum:g}"
    return parse


#: Command-line seconds: at least a millisecond, no upper bound.
cli_seconds = at_least(float, 1e-3, "a positive number of seconds")
#: Command-line seconds that may be 0 (and inf): ``--drain-idle-grace``.
grace_seconds = at_least(float, 0, "0 or more seconds")
#: A command-line count: a whole number from 1.
count = at_least(int, 1, "a positive whole number")


def stop_seconds(text: str) -> float:
    """``--stop-timeout``: 0 or more seconds, finite (0 = do not wait)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"expected seconds >= 0, got {text!r}")
    return value


def seconds(text: str) -> float:
    """Seconds in an environment variable: above 0 and finite."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise ValueError(f"expected a positive number of seconds, got {text!r}")
    return value


def toml_seconds(value: Any) -> float:
    """Seconds in deploy.toml: a number above 0 and below a day."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 86400:
        raise ValueError(f"expected a positive number of seconds, got {value!r}")
    return float(value)


#: ``toml_every``'s units: "90s", "30m", "6h", "1d".
EVERY_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def toml_every(value: Any) -> float:
    """How often, in deploy.toml: seconds (a number above 0), or a number and a unit
    (``"30m"``, ``"6h"``, ``"1d"``), at most 30 days."""
    found = isinstance(value, str) and re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([smhd])", value)
    if found:
        value = float(found[1]) * EVERY_UNITS[found[2]]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 30 * 86400:
        raise ValueError(f'expected seconds or "30m", "6h", "1d" (at most 30 days), got {value!r}')
    return float(value)


def toml_integer(low: int = 1, high: int = 2**31) -> Callable[[Any], int]:
    """An integer in deploy.toml from ``low`` to ``high``."""

    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            what = f"an integer from {low} to {high}"
            if low == 1:
                what = "a positive integer" + (f" up to {high}" if high < 2**31 else "")
            raise ValueError(f"expected {what}, got {value!r}")
        return value

    return parse


def toml_flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def toml_names(pattern: Callable[[str], Any], expected: str) -> Callable[[Any], tuple[str, ...]]:
    """A list of distinct strings in deploy.toml, each matching ``pattern`` (a fullmatch)."""

    def parse(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise ValueError(f"expected a list of {expected}, got {value!r}")
        for item in value:
            if not isinstance(item, str) or not pattern(item):
                raise ValueError(f"expected a list of {expected}, got {item!r}")
        if len(set(value)) != len(value):
            raise ValueError(f"expected a list of distinct {expected}, got {value!r}")
        return tuple(value)

    return parse


def port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"expected a port number from 1 to 65535, got {text!r}")
    return int(text)


def words(text: str) -> tuple[str, ...]:
    """A comma-separated list: ``https://a.example,https://b.example``."""
    return tuple(word.strip() for word in text.split(",") if word.strip())


def flag(text: str) -> bool:
    value = text.lower()
    if value not in ("1", "0", "true", "false", "yes", "no"):
        raise ValueError(f"expected true or false, got {text!r}")
    return value in ("1", "true", "yes")


def choice(choices: tuple[str, ...], upper: bool = False) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.upper() if upper else text.lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
        return value

    return parse


def text(value: str) -> str:
    """Any text, as it is (a DSN, a URL, a path)."""
    return value


def parse_address(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8001"`` -> ``("127.0.0.1", 8001)``; ``"[::1]:8001"`` -> ``("::1", 8001)``."""
    if "://" in text or "/" in text:
        raise AddressError(
            f"bad address {text!r}: expected HOST:PORT, no scheme or path, like 127.0.0.1:8001"
        )
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise AddressError(f"bad address {text!r}: expected HOST:PORT, like 127.0.0.1:8001")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host:
            raise AddressError(f"bad address {text!r}: empty IPv6 host")
    elif ":" in host:
        raise AddressError(f"bad address {text!r}: write an IPv6 host in brackets, like [::1]:8001")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise AddressError(f"bad address {text!r}: port should be a number from 1 to 65535")
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    """HOST:PORT as apiphant, Nginx and URLs read it: an IPv6 host in brackets. The one
    place an address and a port are joined."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
