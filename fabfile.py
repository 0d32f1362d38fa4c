"""The deploy kit's tasks: ``fab TASK --product=NAME [HOST ...]`` (README.md, "Deploy").

    fab render   --product=myproduct [HOST ...] [--out DIR]   every file, no connection
    fab deploy   --product=myproduct [HOST ...] [--dry-run]   no host: every host
    fab rollback --product=myproduct [HOST ...] [--release ID] [--dry-run]
    fab status   --product=myproduct [HOST ...]
    fab logs     --product=myproduct [HOST ...] [--lines 50] [--follow]
    fab unlock   --product=myproduct [HOST ...]               a lock left by a dead deploy

HOST is a host's name in deploy.toml (or its ssh target). Fabric's own flags
go before the task, e.g. ``fab -i ~/.ssh/deploy_key deploy --product=myproduct``.
``--config PATH`` reads another deploy.toml (staging, tests).
"""

import inspect

from invoke import Exit, task

from apiphant.deploy import argv, tasks


def _done(status: int) -> None:
    if status:
        raise Exit(code=status)


def host_task(**extra_help: str):
    """An invoke task over deploy.toml's hosts: --product, --host (repeatable), --config."""
    return task(
        iterable=["host"],
        auto_shortflags=False,
        help={
            "product": "the product folder, e.g. myproduct",
            "host": "a host of deploy.toml (also as bare words after the flags); none: all",
            "config": "another deploy.toml than PRODUCT/deploy.toml",
            **extra_help,
        },
    )


@host_task(
    out="write the files to DIR/HOST/NAME instead of printing them",
)
def render(c, product="", host=None, out="", config=""):
    """Render every file for every host (Supervisor, Nginx, logrotate...) without connecting."""
    _done(tasks.render_files(product, host or [], out, config))


@host_task(
    dry_run="print every command and upload; connect to nothing",
)
def deploy(c, product="", host=None, dry_run=False, config=""):
    """Deploy the product: lock, upload, validate, switch, rolling restart, smoke test;
    roll back by itself when anything fails after the switch."""
    _done(tasks.deploy(product, host or [], dry_run, config, c.config))


@host_task(
    release="the release id to go back to (default: the previous good one)",
    dry_run="print every command; connect to nothing",
)
def rollback(c, product="", host=None, release="", dry_run=False, config=""):
    """Go back to the previous good release (or --release ID), worker by worker."""
    _done(tasks.rollback(product, host or [], release, dry_run, config, c.config))


@host_task()
def status(c, product="", host=None, config=""):
    """Current release, kept releases, lock, processes and /health of each worker."""
    _done(tasks.status(product, host or [], config, c.config))


@host_task(
    lines="how many last lines of each log (default 50)",
    follow="keep printing new lines (one host)",
)
def logs(c, product="", host=None, lines=50, follow=False, config=""):
    """Tail the product's logs: its workers, its background runner, its Nginx site."""
    _done(tasks.logs(product, host or [], int(lines), follow, config, c.config))


@host_task()
def unlock(c, product="", host=None, config=""):
    """Remove the deploy lock a dead deploy left behind (it says whose it was)."""
    _done(tasks.unlock(product, host or [], config, c.config))


def _positional_hosts() -> None:
    """Let hosts be bare words: ``fab deploy --product=myproduct web1`` (see apiphant.deploy.argv).

    Fabric has parsed its core flags and is loading this file; the task
    arguments, still unparsed, are rewritten in place. Under any other
    program, --host flags still work.
    """
    try:
        from fabric.main import program
    except ImportError:
        return
    core = getattr(program, "core", None)
    unparsed = getattr(core, "unparsed", None)
    if not isinstance(unparsed, list):
        return
    ours = {}
    for body in (render, deploy, rollback, status, logs, unlock):
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
    unparsed[:] = argv.hosts_as_flags(unparsed, ours, core_values)


_positional_hosts()
