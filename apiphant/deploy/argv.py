"""Hosts as positional arguments: ``fab deploy --product=myproduct web1 web2``.

Invoke has no variadic positional arguments (pyinvoke/invoke#378), so the
fabfile's tasks take ``--host`` flags (repeatable), and this turns the bare
words after a task's flags into ``--host WORD`` before Invoke parses them; and
keeps what follows ``--`` for ``fab run``. The one place that touches Fabric's
own command line (``rewrite_fabric_command_line``); the rest is pure.
"""

import inspect
import shlex
import sys
from collections.abc import Iterable
from typing import Any


def hosts_as_flags(
    tokens: list[str],
    tasks: dict[str, set[str]],
    value_flags: set[str],
    aliases: dict[str, str] | None = None,
    leading: frozenset[str] = frozenset(),
) -> list[str]:
    """Rewrite ``tokens`` (the command line after the core flags).

    ``tasks`` maps each task that takes hosts to its flags that take a value;
    ``value_flags`` are the core flags taking a value, allowed after a task
    too; ``aliases`` spells short flags long (``-e`` is ``--env``). A word that
    is a task name starts that task, but a task in ``leading`` only as the first
    (``db``, also a host's usual name: ``fab status db`` is the host); anything
    after ``--`` is left alone.
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
        elif token in tasks and (current is None or token not in leading):
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


#: Tasks whose bare words are an action (``fab db backup``), and whose name is a host's usual
#: one: a task only as the command line's first.
LEADING = frozenset({"db"})


def flag_names(names: Iterable[str]) -> set[str]:
    """Invoke's spellings of argument names: ``dry_run`` is --dry-run, ``p`` is -p."""
    found = set()
    for name in names:
        name = name.replace("_", "-")
        found.add(f"-{name}" if len(name) == 1 else f"--{name}")
    return found


def command_after_dashes(words: list[str]) -> str:
    """The shell line after ``--``: one word is taken as a line (``-- "a && b"``), several
    are quoted one by one (``-- python -c 'print(1)'`` keeps its argument whole), as the
    shell gave them to us. Invoke would join them with spaces and lose the quoting."""
    if "--" not in words:
        return ""
    rest = words[words.index("--") + 1 :]
    return rest[0] if len(rest) == 1 else shlex.join(rest)


def rewrite_fabric_command_line(tasks: Iterable[Any]) -> str:
    """Hosts as bare words (``fab deploy web1``), ``-e`` for ``--env``, and the command
    after ``--`` kept for ``fab run`` (Fabric would run it on its own as an ad hoc command,
    and refuse with no -H); returns that command ("" when there is none).

    Called once, by the fabfile's tasks as Fabric loads them: Fabric has parsed its core
    flags, and the task arguments, still unparsed, are rewritten in place in its
    ``program.core``. Under any other program nothing is rewritten, and the long flags
    (``--host``, ``--env``, ``--command``) still work.
    """
    try:
        from fabric.main import program
    except ImportError:
        return ""
    core = getattr(program, "core", None)
    unparsed = getattr(core, "unparsed", None)
    if not isinstance(unparsed, list):
        return ""
    remainder = ""
    if getattr(core, "remainder", ""):
        remainder = command_after_dashes(sys.argv)
        core.remainder = ""
    ours = {}
    for body in tasks:
        # From the signature: Task.get_arguments() would use up the tasks' help texts.
        parameters = list(inspect.signature(body.body).parameters.values())[1:]
        takes_value = [p.name for p in parameters if not isinstance(p.default, bool)]
        ours[body.name] = flag_names(takes_value)
    core_values = {
        name
        for a in program.initial_context.flags.values()
        if a.takes_value
        for name in flag_names(a.names)
    }
    unparsed[:] = hosts_as_flags(unparsed, ours, core_values, {"-e": "--env"}, LEADING)
    return remainder
