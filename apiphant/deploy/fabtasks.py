"""The deploy kit's Fabric tasks. A repository's fabfile.py is two lines that import them::

    from apiphant.deploy.fabtasks import *  # noqa: F403

    fab render   [HOST ...] [--out DIR] [-e ENV]         every file, no connection
    fab deploy   [HOST ...] [--dry-run] [-e ENV] [--parallel N]   no host: every host
    fab rollback [HOST ...] [--release ID] [--dry-run]
    fab status   [HOST ...]              fab logs [HOST ...] [--lines 50] [--follow]
    fab run      HOST -- COMMAND ...     a one-off command in the current release
    fab maintenance [HOST ...] --on|--off             fab history [HOST ...]
    fab unlock   [HOST ...]              a lock left by a dead deploy

Inside a product's repository the product is the repository's own; from a
folder holding several products, ``--product NAME`` says which. HOST is a
host's name in deploy.toml (or its ssh target). Fabric's own flags go before
the task, e.g. ``fab -i ~/.ssh/deploy_key deploy``. ``-e ENV`` (``--env``)
merges ``deploy.ENV.toml`` (or ``[env.ENV]``) over deploy.toml;
``--config PATH`` reads another deploy.toml.
"""

import inspect
import shlex
import sys

from invoke import Exit, task

from apiphant.deploy import argv, tasks

__all__ = ["render", "deploy", "rollback", "status", "logs", "run", "maintenance", "history",
           "unlock"]  # fmt: skip


def _done(status: int) -> None:
    if status:
        raise Exit(code=status)


#: The help of the flags tasks share.
SHARED_HELP = {
    "product": "the product folder (default: this repository's product)",
    "host": "a host of deploy.toml (also as bare words after the flags); none: all",
    "config": "another deploy.toml than PRODUCT/deploy.toml",
    "env": "an environment: deploy.ENV.toml or [env.ENV] over deploy.toml (also -e)",
    "dry_run": "print every command and upload; connect to nothing",
}


def host_task(**extra_help: str):
    """An invoke task over deploy.toml's hosts: --product, --host (repeatable), --config,
    --env, and --dry-run where it has one."""

    def decorate(body):
        names = inspect.signature(body).parameters
        shared = {k: v for k, v in SHARED_HELP.items() if k in names}
        return task(iterable=["host"], auto_shortflags=False, help={**shared, **extra_help})(body)

    return decorate


def _where(product: str, config: str, env: str) -> tasks.Target:
    return tasks.Target(product, config, env or tasks.PRODUCTION)


@host_task(out="write the files to DIR/HOST/NAME instead of printing them")
def render(c, product="", host=None, out="", config="", env=""):
    """Render every file for every host (Supervisor, Nginx, logrotate...) without connecting."""
    _done(tasks.render_files(_where(product, config, env), host or [], out))


@host_task(parallel="how many hosts prepare at once (default: all)")
def deploy(c, product="", host=None, dry_run=False, config="", env="", parallel=""):
    """Deploy: build, lock, upload, check, release command, switch, restart, smoke test.

    Hosts prepare side by side; it rolls back by itself when anything fails after the
    switch."""
    where = _where(product, config, env)
    _done(tasks.deploy(where, host or [], dry_run, c.config, parallel))


@host_task(release="the release id to go back to (default: the previous good one)")
def rollback(c, product="", host=None, release="", dry_run=False, config="", env=""):
    """Go back to the previous good release (or --release ID), worker by worker."""
    _done(tasks.rollback(_where(product, config, env), host or [], release, dry_run, c.config))


@host_task()
def status(c, product="", host=None, dry_run=False, config="", env=""):
    """Current release, kept releases, lock, maintenance, processes and /health of each worker."""
    _done(tasks.status(_where(product, config, env), host or [], dry_run, c.config))


@host_task(
    lines="how many last lines of each log (default 50)",
    follow="keep printing new lines (one host)",
)
def logs(c, product="", host=None, lines=50, follow=False, dry_run=False, config="", env=""):
    """Tail the product's logs: its workers, its background runner, its Nginx site."""
    where = _where(product, config, env)
    _done(tasks.logs(where, host or [], int(lines), follow, dry_run, c.config))


@host_task(command="the command, as one string (or after --)")
def run(c, product="", host=None, command="", dry_run=False, config="", env=""):
    """A one-off command on a host, in the current release, as the product's user.

    With the release's virtualenv, environment and secrets: ``fab run web1 -- python -m
    shop.report``; its exit status is fab's."""
    command = command or _REMAINDER[0]
    _done(tasks.run(_where(product, config, env), host or [], command, dry_run, c.config))


@host_task(
    on="answer every public request with a JSON 503 (until --off, also across deploys)",
    off="serve again",
)
def maintenance(c, product="", host=None, on=False, off=False, dry_run=False, config="", env=""):
    """Maintenance mode: Nginx answers 503 with Retry-After; the workers keep running."""
    where = _where(product, config, env)
    _done(tasks.maintenance(where, host or [], on, off, dry_run, c.config))


@host_task(lines="how many last entries (default 50)")
def history(c, product="", host=None, lines=50, dry_run=False, config="", env=""):
    """Who deployed, rolled back, ran or turned maintenance on what, when, and how it ended."""
    _done(tasks.history(_where(product, config, env), host or [], int(lines), dry_run, c.config))


@host_task()
def unlock(c, product="", host=None, dry_run=False, config="", env=""):
    """Remove the deploy lock a dead deploy left behind (it says whose it was)."""
    _done(tasks.unlock(_where(product, config, env), host or [], dry_run, c.config))


#: What followed ``--`` on the command line: ``fab run``'s command.
_REMAINDER = [""]


def command_after_dashes(words: list[str]) -> str:
    """The shell line after ``--``: one word is taken as a line (``-- "a && b"``), several
    are quoted one by one (``-- python -c 'print(1)'`` keeps its argument whole), as the
    shell gave them to us. Invoke would join them with spaces and lose the quoting."""
    if "--" not in words:
        return ""
    rest = words[words.index("--") + 1 :]
    return rest[0] if len(rest) == 1 else shlex.join(rest)


def _rewrite_command_line() -> None:
    """Hosts as bare words (``fab deploy web1``, see apiphant.deploy.argv), ``-e`` for
    ``--env``, and the command after ``--`` kept for ``fab run`` (Fabric would run it on
    its own as an ad hoc command, and refuse with no -H).

    Fabric has parsed its core flags and is loading the fabfile; the task arguments, still
    unparsed, are rewritten in place. Under any other program, the long flags still work.
    """
    try:
        from fabric.main import program
    except ImportError:
        return
    core = getattr(program, "core", None)
    unparsed = getattr(core, "unparsed", None)
    if not isinstance(unparsed, list):
        return
    if getattr(core, "remainder", ""):
        _REMAINDER[0] = command_after_dashes(sys.argv)
        core.remainder = ""
    ours = {}
    for body in (render, deploy, rollback, status, logs, run, maintenance, history, unlock):
        # From the signature: Task.get_arguments() would use up the tasks' help texts.
        parameters = list(inspect.signature(body.body).parameters.values())[1:]
        takes_value = [p.name for p in parameters if not isinstance(p.default, bool)]
        ours[body.name] = argv.flag_names(takes_value)
    core_values = {
        name
        for a in program.initial_context.flags.values()
        if a.takes_value
        for name in argv.flag_names(a.names)
    }
    unparsed[:] = argv.hosts_as_flags(unparsed, ours, core_values, {"-e": "--env"})


_rewrite_command_line()
