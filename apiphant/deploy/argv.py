"""Hosts as positional arguments: ``fab deploy --product=myproduct web1 web2``.

Invoke has no variadic positional arguments (pyinvoke/invoke#378), so the
fabfile's tasks take ``--host`` flags (repeatable), and this turns the bare
words after a task's flags into ``--host WORD`` before Invoke parses them.
"""

from collections.abc import Iterable


def hosts_as_flags(
    tokens: list[str],
    tasks: dict[str, set[str]],
    value_flags: set[str],
    aliases: dict[str, str] | None = None,
) -> list[str]:
    """Rewrite ``tokens`` (the command line after the core flags).

    ``tasks`` maps each task that takes hosts to its flags that take a value;
    ``value_flags`` are the core flags taking a value, allowed after a task
    too; ``aliases`` spells short flags long (``-e`` is ``--env``). A word that
    is a task name starts that task; anything after ``--`` is left alone.
    """
    aliases = aliases or {}
    result: list[str] = []
    current: str | None = None
    expecting_value = False
    for index, token in enumerate(tokens):
        if token == "--":
            result.extend(tokens[index:])
            break
        if expecting_value:
            result.append(token)
            expecting_value = False
        elif token in tasks:
            current = token
            result.append(token)
        elif token.startswith("-") and len(token) > 1:
            token = aliases.get(token, token) if current is not None else token
            result.append(token)
            if "=" not in token and current is not None:
                expecting_value = token in tasks[current] or token in value_flags
        elif current is not None:
            result.extend(["--host", token])
        else:
            result.append(token)
    return result


def flag_names(names: Iterable[str]) -> set[str]:
    """Invoke's spellings of argument names: ``dry_run`` is --dry-run, ``p`` is -p."""
    found = set()
    for name in names:
        name = name.replace("_", "-")
        found.add(f"-{name}" if len(name) == 1 else f"--{name}")
    return found
