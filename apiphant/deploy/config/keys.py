"""deploy.toml's keys, declared once: on the dataclass field each one fills.

A field made with ``key(...)`` is read from deploy.toml; one made without (``Host.name``, the
paths ``Config`` is loaded from) is not. ``keys_of`` lists a table's allowed keys in field
order, which is the order the "unknown key" message shows them in, so nothing else spells
them a second time.
"""

from dataclasses import MISSING, dataclass, field, fields
from typing import Any

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
    #: One line for the reference table of deploy.toml.
    help: str = ""


def key(
    default: Any = MISSING,
    *,
    factory: Any = MISSING,
    toml: str = "",
    section: str | None = None,
    inline: bool = False,
    help: str = "",
) -> Any:
    """A dataclass field read from deploy.toml: ``field(default=...)`` with its ``Key``;
    ``inline``: the field's dataclass (its ``factory``) is read from this field's table."""
    spec = Key(toml, section, factory if inline else None, help)
    return field(default=default, default_factory=factory, metadata={KEY: spec})


def keys_of(cls: type, section: str | None = None) -> tuple[str, ...]:
    """The keys of the table ``cls`` is read from, in field order; with ``section``, the keys
    of that other table which ``cls`` (or a dataclass inlined in it) reads."""
    found: dict[str, None] = {}
    for each in fields(cls):
        spec = each.metadata.get(KEY)
        if spec is None:
            continue
        if spec.inline is not None:
            found.update(dict.fromkeys(keys_of(spec.inline, section)))
        elif spec.section == section:
            found[spec.toml or each.name] = None
    return tuple(found)
