"""The documentation's settings tables, written from the schema.

A Markdown file marks each table it wants::

    <!-- generated: settings serve -->
    (the table, rewritten by this module)
    <!-- end generated -->

``settings GROUP`` is every setting of a schema group (serve, background, process, testing,
kit) with its flag, environment variable, deploy.toml key and default; ``options COMMAND``
is one command's options; ``deploy SECTION`` the deploy.toml keys of one section.

    python -m apiphant.settings.tables --write README.md docs   # rewrite the marked tables
    python -m apiphant.settings.tables --check README.md docs   # exit 1 if one has drifted
"""

import re
import sys
from dataclasses import replace
from pathlib import Path

from apiphant.settings.options import help_text
from apiphant.settings.schema import FLAG, GROUPS, Render, Setting, deploy_default, of_command

BLOCK = re.compile(r"(<!-- generated: ([a-z ]+) -->\n)(.*?)(<!-- end generated -->)", re.S)
DEFAULT_NOTE = re.compile(r" \(default \{default\}\)")


class TableError(ValueError):
    """A marker naming no table."""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(text: str | None) -> str:
    return f"`{text}`" if text else ""


def default(setting: Setting, deployed: bool = False) -> str:
    """The default in words: ``default_doc``, or the value as the documentation shows it
    (``deployed``: a deployment's, when it differs)."""
    if setting.default_doc:
        return setting.default_doc
    value = deploy_default(setting) if deployed else setting.default
    if value is None:
        return ""
    shown = setting.kind.shown(value)
    return _code(shown) if shown not in ("on", "off", "none") else shown


def doc_help(setting: Setting) -> str:
    """The help line without its ``(default X)``, which the table has a column for."""
    return help_text(replace(setting, help=DEFAULT_NOTE.sub("", setting.help)))


def deploy_help(setting: Setting) -> str:
    """A deploy.toml key's line: the option it gives the programs that take it (through
    their environment, for some), then what else it does."""
    program = "the workers'" if "serve" in setting.commands else "the background runner's"
    sets = f"{program} `{setting.flag}`"
    if setting.supervisor is Render.ENVIRONMENT:
        sets += f", through `{setting.env}`"
    return "; ".join(filter(None, (sets, setting.deploy_help)))


def option(setting: Setting) -> str:
    """``--max-body MAX_BODY``, ``--access-log``, ``PRODUCT``: as ``--help`` shows it."""
    if setting.positional:
        return setting.name.upper()
    if setting.kind is FLAG:  # one on by default is turned off by --no-NAME
        return f"{setting.flag}, --no-{setting.flag[2:]}" if setting.default else setting.flag or ""
    return f"{setting.flag} {setting.metavar or setting.name.upper()}"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render(block: str) -> str:
    """The Markdown table a marker names, ending in a newline."""
    what, _, name = block.strip().partition(" ")
    if what == "settings" and name in GROUPS:
        return _table(
            ("setting", "option", "environment", "deploy.toml", "default", "what it is for"),
            [(s.name, _code(option(s)) if s.flag or s.positional else "", _code(s.env),
              _code(s.deploy) or s.derived and f"set by the deploy: {s.derived}",
              default(s), doc_help(s)) for s in GROUPS[name]],
        )  # fmt: skip
    if what == "options" and of_command(name):
        return _table(
            ("option", "default", "what it is for"),
            [(_code(option(s)), default(s), doc_help(s)) for s in of_command(name)],
        )
    if what == "deploy":
        rows = [(_code(s.deploy.partition(".")[2]), default(s, True), deploy_help(s))
                for group in GROUPS.values() for s in group
                if s.deploy and s.deploy.partition(".")[0] == name]  # fmt: skip
        if rows:
            return _table((f"[{name}] key", "default", "what it sets"), rows)
    raise TableError(f"no settings table named {block!r}")


def rewrite(text: str) -> str:
    """``text`` with every marked table rendered anew."""
    return BLOCK.sub(lambda m: m[1] + render(m[2]) + m[4], text)


def files(paths: list[str]) -> list[Path]:
    """The Markdown files named, a folder standing for its ``*.md``."""
    found: list[Path] = []
    for path in map(Path, paths):
        found += sorted(path.glob("*.md")) if path.is_dir() else [path]
    return found


def main(argv: list[str] | None = None) -> int:
    """``--write PATH...`` rewrites the tables, ``--check PATH...`` exits 1 on drift."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] not in ("--write", "--check"):
        print("usage: python -m apiphant.settings.tables --write|--check PATH...",
              file=sys.stderr)  # fmt: skip
        return 2
    stale = []
    for path in files(argv[1:]):
        text = path.read_text()
        try:
            new = rewrite(text)
        except TableError as error:
            print(f"{path}: {error}", file=sys.stderr)
            return 2
        if new != text:
            stale.append(path)
            if argv[0] == "--write":
                path.write_text(new)
    if argv[0] == "--check" and stale:
        print("settings tables out of date (python -m apiphant.settings.tables --write): "
              + ", ".join(map(str, stale)), file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
