"""Reading deploy.toml from disk: the file, an environment's layers over it (``[env.NAME]``
and ``deploy.NAME.toml``), and what an environment changes."""

import tomllib
from pathlib import Path
from typing import Any

from apiphant.deploy.config.errors import ConfigError
from apiphant.deploy.config.model import Config
from apiphant.deploy.config.parsing import parse
from apiphant.deploy.config.patterns import ENV_NAME
from apiphant.deploy.layout import PRODUCTION


def _read(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path.name}: not valid TOML: {error}") from None


def merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``: tables merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def layers(path: Path, env: str = PRODUCTION) -> tuple[dict, dict, str]:
    """deploy.toml, and the same with environment ``env`` merged over it (its ``[env.NAME]``
    table, then ``deploy.NAME.toml`` beside it), and the name to show in errors."""
    base = _read(path)
    tables = base.pop("env", {})
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise ConfigError(f"{path.name}: env: expected [env.NAME] tables, like [env.staging]")
    if env == PRODUCTION:
        return base, base, path.name
    if not ENV_NAME.fullmatch(env):
        raise ConfigError(f"--env: expected an environment name like staging, got {env!r}")
    beside = path.with_name(f"{path.stem}.{env}.toml")
    found = [tables[env]] if env in tables else []
    if beside.is_file():
        found.append(_read(beside))
    if not found:
        raise ConfigError(
            f"--env {env}: no environment {env!r}: no {beside.name} beside {path.name} "
            f"and no [env.{env}] table in it"
        )
    merged = base
    for layer in found:
        merged = merge(merged, layer)
    shown = f"{path.name} + {beside.name}" if beside.is_file() else f"{path.name} [env.{env}]"
    return base, merged, shown


def differences(base: Any, merged: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values an environment changes: what ``fab render -e`` shows."""
    if isinstance(base, dict) and isinstance(merged, dict):
        keys = sorted(set(base) | set(merged))
        found = []
        for key in keys:
            name = f"{prefix}.{key}" if prefix else str(key)
            found += differences(base.get(key), merged.get(key), name)
        return found
    return [] if base == merged else [prefix]


def load(path: Path, product_dir: Path | None = None, env: str = PRODUCTION) -> Config:
    """Read and check a deploy.toml (with environment ``env`` over it); ``product_dir``
    defaults to the file's folder."""
    _, data, shown = layers(path, env)
    return parse(data, path, product_dir or path.parent, env, shown)
