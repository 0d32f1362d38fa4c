"""The deploy kit's Fabric tasks. A repository's fabfile.py is two lines that import them::

    from apiphant.deploy.fabtasks import *  # noqa: F403

    fab render   [HOST ...] [--out DIR] [-e ENV]         every file, no connection
    fab deploy   [HOST ...] [--dry-run] [-e ENV] [--parallel N]   no host: every host
    fab rollback [HOST ...] [--release ID] [--dry-run]
    fab status   [HOST ...]              fab logs [HOST ...] [--lines 50] [--follow]
    fab run      HOST -- COMMAND ...     a one-off command in the current release
    fab maintenance [HOST ...] --on|--off             fab history [HOST ...]
    fab unlock   [HOST ...]              a lock left by a dead deploy
    fab db backup | backups | restore BACKUP --yes | psql    the postgres role's database

Inside a product's repository the product is the repository's own; from a
folder holding several products, ``--product NAME`` says which. HOST is a
host's name in deploy.toml (or its ssh target). Fabric's own flags go before
the task, e.g. ``fab -i ~/.ssh/deploy_key deploy``. ``-e ENV`` (``--env``)
merges ``deploy.ENV.toml`` (or ``[env.ENV]``) over deploy.toml;
``--config PATH`` reads another deploy.toml.
"""

import inspect

from invoke import Exit, task

from apiphant.deploy import argv, dbtasks, tasks

__all__ = ["render", "deploy", "rollback", "status", "logs", "run", "maintenance", "history",
           "unlock", "db"]  # fmt: skip


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


@host_task(
    host="the action, and for restore the backup's name (bare words: fab db restore NAME)",
    yes="restore: yes, replace the database's tables with the backup",
)
def db(c, product="", host=None, yes=False, dry_run=False, config="", env=""):
    """The postgres role's database: backup, backups, restore BACKUP --yes, psql.

    ``fab db backup`` takes one now; ``fab db backups`` lists them on each host that holds
    them; ``fab db restore NAME --yes`` restores one under maintenance; ``fab db psql``
    opens psql on the database as the product's role."""
    where = _where(product, config, env)
    _done(dbtasks.db(where, host or [], yes, dry_run, c.config))


#: What followed ``--`` on the command line: ``fab run``'s command. Fabric has parsed its
#: core flags and is loading this fabfile: the tasks' arguments are rewritten now, before
#: Invoke parses them, and only here.
_REMAINDER = [argv.rewrite_fabric_command_line(
    (render, deploy, rollback, status, logs, run, maintenance, history, unlock, db))]  # fmt: skip
