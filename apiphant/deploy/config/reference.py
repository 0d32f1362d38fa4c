"""The reference table of deploy.toml, written from the fields' ``key(...)`` metadata: every key
in the order of its table's, with its default and its help, so that a key added to a dataclass
is documented by being declared. ``python -m apiphant.deploy.config.reference`` prints it as
Markdown.
"""

from dataclasses import MISSING, Field, is_dataclass

from apiphant.deploy.config.keys import KEY, declared
from apiphant.deploy.config.model import Config

#: The one part of deploy.toml that is no field: environments are layers over the file
#: (``loading.layers``), not a part of the Config they make.
ENVIRONMENTS = (
    "`[env.NAME]`",
    "",
    "an environment's keys over the rest (or `deploy.NAME.toml` beside it): "
    "`fab deploy -e NAME`",
)


def shown_default(each: Field) -> str:
    """A field's default as the table shows it: its ``default_doc``, else the TOML spelling
    of its default; nothing for a key without one."""
    spec = each.metadata[KEY]
    value = each.default
    if spec.default_doc is not None:
        return spec.default_doc
    if value is MISSING:
        return ""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "`[]`"
    return f'`"{value}"`'


def rows(cls: type = Config, table: str = "", shown: str = "") -> list[tuple[str, str, str]]:
    """(key, default, help) for every key of ``table`` (``shown`` as ``[shown]``; read into
    ``cls``) and of the tables in it, in the order of their keys; for the whole file, then
    ``[env.NAME]``."""
    found = []
    for name, each in declared(cls) + (declared(Config, table) if table else []):
        spec = each.metadata[KEY]
        if is_dataclass(spec.table):
            found += rows(spec.table, name, f"{name}.NAME" if spec.named else name)
        elif spec.table is not None:
            found.append((f"`[{name}]`", shown_default(each), spec.help))
        else:
            label = f"[{shown}] {name}" if shown else name
            found.append((f"`{label}`", shown_default(each), spec.help))
    return found + [ENVIRONMENTS] if cls is Config else found


def markdown() -> str:
    """The table as docs/deploy-toml.md shows it."""
    lines = ["| key | default | |", "| --- | --- | --- |"]
    lines += [f"| {key} | {default} | {help} |" for key, default, help in rows()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
