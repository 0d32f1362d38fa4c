"""The command lines, derived from the schema: argparse options, their resolved values, the
deploy kit's Supervisor arguments, and the server's ``Limits``.

As gunicorn's ``add_option``: each ``Setting`` of a command becomes one ``add_argument``;
no command spells an option of its own.
"""

import argparse
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from apiphant.settings import read
from apiphant.settings.schema import FLAG, SERVE, Render, Setting, of_command


class Resolved(NamedTuple):
    """A setting's value and where it came from: its flag (or positional's name), its
    environment variable, or ``"default"``."""

    value: Any
    source: str


def help_text(setting: Setting) -> str:
    """``setting.help`` with its default and environment variable filled in."""
    default = setting.kind.shown(setting.default) if setting.default is not None else ""
    return setting.help.format(default=default, env=setting.env or "")


def _argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` for argparse: its ValueError becomes the ``argument --x: ...`` message."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def argument(setting: Setting) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The ``add_argument`` arguments of one setting. A setting with an environment variable
    defaults to None on the command line, so ``resolve`` can tell it was not given."""
    unset = None if setting.env else setting.default
    keywords: dict[str, Any] = {"help": help_text(setting)}
    if setting.positional:
        if setting.optional:
            keywords.update(nargs="?", default=unset)
        return (setting.name,), keywords
    assert setting.flag, setting.name
    keywords["dest"] = setting.name
    if setting.metavar:
        keywords["metavar"] = setting.metavar
    if setting.kind is FLAG:  # one on by default can be turned off: --no-docs
        action = argparse.BooleanOptionalAction if setting.default else "store_true"
        keywords.update(action=action, default=unset)
    elif setting.repeat:
        keywords.update(action="append", default=None)
    else:
        keywords["default"] = unset
        if setting.kind.cli is not None:
            keywords["type"] = _argparse_type(setting.kind.cli)
    return (setting.flag,), keywords


def add_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Add ``command``'s settings to ``parser``, in the schema's order."""
    for setting in of_command(command):
        names, keywords = argument(setting)
        parser.add_argument(*names, **keywords)


def resolve(args: argparse.Namespace, command: str, environ: Mapping[str, str] | None = None
            ) -> dict[str, Resolved]:  # fmt: skip
    """Each of ``command``'s settings: from the command line, else its environment variable,
    else its default. A bad environment value raises SettingError naming the variable."""
    found = {}
    for setting in of_command(command):
        given = getattr(args, setting.name, None)
        if given is not None and (setting.env is not None or given != setting.default):
            found[setting.name] = Resolved(given, setting.flag or setting.name)
            continue
        if setting.env is not None and setting.kind.env is not None:
            value = read(setting.env, setting.kind.env, None, environ)
            if value is not None:
                found[setting.name] = Resolved(value, setting.env)
                continue
        found[setting.name] = Resolved(setting.default if given is None else given, "default")
    return found


def command_line(values: Mapping[str, Any], command: str) -> list[str]:
    """The options the deploy kit puts on ``command``'s Supervisor line: first those it
    always writes, then those that differ from their default, then the flags that are on;
    each group in the schema's order. ``values`` must hold every ALWAYS setting."""
    argv: list[str] = []
    for render in (Render.ALWAYS, Render.IF_NOT_DEFAULT, Render.FLAG):
        for setting in of_command(command):
            if setting.supervisor is not render:
                continue
            assert setting.flag, setting.name
            if render is Render.ALWAYS:
                argv += [setting.flag, setting.kind.format(values[setting.name])]
                continue
            value = values.get(setting.name, setting.default)
            if render is Render.FLAG:  # --access-log when on; --no-docs when off
                if bool(value) != bool(setting.default):
                    argv += [setting.flag if value else "--no-" + setting.flag[2:]]
            elif value is not None and value != setting.default:
                argv += [setting.flag, setting.kind.format(value)]
    return argv


def limits(values: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of the server's ``Limits``, from resolved values."""
    return {setting.name: values[setting.name] for setting in SERVE if setting.limits}
