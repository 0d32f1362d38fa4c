"""deploy.toml's keys, declared once: on the dataclass field each one fills.

A field made with ``key(...)`` is read from deploy.toml; one made without (``Host.name``, the
paths ``Config`` is loaded from) is not. ``keys_of`` lists a table's allowed keys in field
order, which is the order the "unknown key" message shows them in, so nothing else spells
them a second time.
"""

from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from apiphant.settings.schema import BY_NAME, SIZE, deploy_default
from apiphant.settings.tables import deploy_help

#: The field metadata entry that holds a field's ``Key``.
KEY = "apiphant.deploy.config.key"


@dataclass(frozen=True)
class Key:
    """Where a field comes from in deploy.toml."""

    #: Its name in its table ("" for the field's own name).
    toml: str = ""
    #: The table it is read from when that is not its dataclass's own, like "nginx" for
    #: ``Tls.listen_port`` (``[nginx] tls_listen``).
    section: str | None = None
    #: A dataclass whose keys are read from this field's table itself, not from a table
    #: of their own (``Config.tls``: ``tls``, ``domains``... are top-level keys).
    inline: type | None = None
    #: A key whose value is a table: the dataclass it is read into (``dict`` for free
    #: ``NAME = value`` pairs); ``named``: one such table per NAME, like ``[hosts.NAME]``.
    table: type | None = None
    named: bool = False
    #: One line for the reference table of deploy.toml (``reference``), and the default as
    #: it shows there when the field's own does not say it (``"1M"`` for 1048576).
    help: str = ""
    default_doc: str | None = None


def key(
    default: Any = MISSING,
    *,
    factory: Any = MISSING,
    toml: str = "",
    section: str | None = None,
    inline: bool = False,
    table: type | None = None,
    named: bool = False,
    help: str = "",
    default_doc: str | None = None,
) -> Any:
    """A dataclass field read from deploy.toml: ``field(default=...)`` with its ``Key``;
    ``inline``: the field's dataclass (its ``factory``) is read from this field's table."""
    spec = Key(toml, section, factory if inline else None, table, named, help, default_doc)
    return field(default=default, default_factory=factory, metadata={KEY: spec})


def setting_key(name: str, toml: str = "") -> Any:
    """A field that is the schema's setting ``name`` (its ``deploy`` key names the field):
    its default, the reference's help and its value's parser (``Reader.setting``) all come
    from that one entry (apiphant.settings.schema). ``toml``: the key's name in its table,
    when it is not the setting's (``[database] pool_size`` is ``db_pool_size``)."""
    setting = BY_NAME[name]
    value = deploy_default(setting)
    shown = f'`"{setting.kind.shown(value)}"`' if setting.kind is SIZE else None
    return key(value, toml=toml, help=deploy_help(setting),
               default_doc=setting.default_doc or shown)  # fmt: skip


def declared(cls: type, section: str | None = None) -> list[tuple[str, Field]]:
    """Each key of the table ``cls`` is read from, with the first field it fills, in field
    order; with ``section``, those of that other table which ``cls`` (or a dataclass inlined
    in it) reads."""
    found: dict[str, Field] = {}
    for each in fields(cls):
        spec = each.metadata.get(KEY)
        if spec is None:
            continue
        if spec.inline is not None:
            for name, inner in declared(spec.inline, section):
                found.setdefault(name, inner)
        elif spec.section == section:
            found.setdefault(spec.toml or each.name, each)
    return list(found.items())


def keys_of(cls: type, section: str | None = None) -> tuple[str, ...]:
    """The keys of the table ``cls`` is read from (``declared``), in field order."""
    return tuple(name for name, _ in declared(cls, section))
