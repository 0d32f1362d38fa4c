"""``fab db``: the deployment's database (the postgres role). Each returns an exit status.

    fab db backup             a backup now: waits, prints its name and size
    fab db backups            the backups on each host that holds them: name, size, age
    fab db restore BACKUP --yes   maintenance on, pg_restore --clean, maintenance off
                              (BACKUP from the copies' host when the postgres host lacks it)
    fab db psql               psql on the product's database, as its role

Like the other tasks they read and check deploy.toml before any host is asked, and print
every command (``--dry-run``: print only). What they run is ``plan.operate``'s.
"""

import hashlib
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from apiphant.deploy import plan
from apiphant.deploy.audit import _record, audit_line
from apiphant.deploy.config import Config, Host
from apiphant.deploy.console import DryRun, Hosts, say
from apiphant.deploy.errors import DeployError, StepFailed
from apiphant.deploy.host import backups, nginx, postgres
from apiphant.deploy.orchestrate import run_steps
from apiphant.deploy.ssh import Remote
from apiphant.deploy.target import Target, UsageError, find_product
from apiphant.deploy.tasks import _executor, _guarded, _operate

ACTIONS = ("backup", "backups", "restore", "psql")
USAGE = "fab db backup | backups | restore BACKUP --yes | psql"


def _server(config: Config) -> Host:
    server = config.database_host()
    if server is None:
        raise UsageError("fab db: no host of deploy.toml has the postgres role "
                         "(a database elsewhere has its own tools)")  # fmt: skip
    return server


@_guarded
def db(
    target: Target,
    words: Iterable[str] = (),
    yes: bool = False,
    dry_run: bool = False,
    fabric_config: Any = None,
) -> int:
    """``fab db ACTION [BACKUP]``: the words after ``db`` say which."""
    words = list(words)
    if not words or words[0] not in ACTIONS:
        raise UsageError(f"fab db: expected an action: {USAGE}")
    action, rest = words[0], words[1:]
    if (action == "restore") != bool(rest) or len(rest) > 1:
        raise UsageError(f"fab db {action}: unexpected {' '.join(rest) or 'nothing'}: {USAGE}")
    config = find_product(target)
    server = _server(config)
    if action == "backup":
        return _operate(config, plan.db_backup_plan(config, server), dry_run, fabric_config,
                        record="db backup")  # fmt: skip
    if action == "backups":
        return _operate(config, plan.db_backups_plan(config), dry_run, fabric_config)
    if action == "psql":
        return psql(config, server, dry_run, fabric_config)
    return restore(config, server, rest[0], yes, dry_run, fabric_config)


def psql(config: Config, server: Host, dry_run: bool, fabric_config: Any) -> int:
    """An interactive psql on the postgres host, over SSH with a pty."""
    command = postgres.psql(config.layout, config.database.port)
    why = f"psql on database {config.layout.db_name} as its role"
    executor = _executor(config, dry_run, fabric_config)
    try:
        if isinstance(executor, Remote):
            return executor.interactive(server.name, command, why)
        executor.query(server.name, command, why)
        say(executor.out, "dry run: nothing was run")
        return 0
    finally:
        executor.close()


def restore(
    config: Config, server: Host, name: str, yes: bool, dry_run: bool, fabric_config: Any
) -> int:
    """Maintenance on the fronts, the restore, maintenance off; a failed restore leaves
    maintenance on (the database is as it was: the restore is one transaction) and says so.
    A backup the postgres host lacks (a new host, after the old one was lost) is brought
    from the copies' host first, while the fronts still serve."""
    if not re.fullmatch(backups.name_pattern(config.layout), name):
        raise UsageError(f"fab db restore: {name!r} is not a backup's name (like "
                         f"{config.layout.db_name}-20260102T030405Z.dump; fab db backups "
                         "lists them)")  # fmt: skip
    if not yes and not dry_run:
        raise UsageError(f"fab db restore: replaces every table of database "
                         f"{config.layout.db_name} with {name}: add --yes")  # fmt: skip
    on = plan.maintenance_plan(config, config.hosts, True)
    step = plan.db_restore_step(config, server, name)
    executor = _executor(config, dry_run, fabric_config)
    hosts = [config.host(n) for n in dict.fromkeys([server.name, *(s.host for s in on)])]
    try:
        with tempfile.TemporaryDirectory(prefix="apiphant-restore-") as work:
            source = _bring_over(executor, config, server, name, Path(work))
        hosts += [config.host(source)] if source else []
        line = f"db restore {name}" + (f" from the copy on {source}" if source else "")
        # A front already in maintenance (the operator's) stays in it after the restore.
        already = {s.host for s in on if executor.query(
            s.host, nginx.maintenance_state(config.layout), "is maintenance on already"
        ).strip() == "maintenance: on"}  # fmt: skip
        off = tuple(s for s in plan.maintenance_plan(config, config.hosts, False)
                    if s.host not in already)  # fmt: skip
        if already:
            print(f"maintenance was on already on {', '.join(sorted(already))}: it stays on",
                  flush=True)  # fmt: skip
        run_steps(executor, on, set())
        try:
            run_steps(executor, (step,), set())
        except StepFailed as error:
            print(f"error: {error}", flush=True)
            print("FAILED: the database is as it was (the restore is one transaction); "
                  "maintenance stays ON: fix it, then fab maintenance --off", flush=True)
            _record(executor, config, hosts, audit_line(config, line, "failed"))
            return 1
        run_steps(executor, off, set())
        if isinstance(executor, DryRun):
            say(executor.out, "dry run: nothing was run")
            return 0
        _record(executor, config, hosts, audit_line(config, line, "ok"))
    finally:
        executor.close()
    came = f" from the copy on {source}" if source else ""
    say(print, f"OK: {name} restored{came}; maintenance off")
    return 0


def _bring_over(executor: Hosts, config: Config, server: Host, name: str, work: Path) -> str:
    """Where ``name`` is restored from: "" when the postgres host holds it; else the copies'
    host, from which it is brought into the postgres host's backups through the deployer's
    private folder ``work``, its sha256 checked on the deployer (and again by the restore).
    Neither holding it is refused before anything changes. A dry run shows the fetch."""
    layout, copy = config.layout, config.backup_copy_host()
    dry = isinstance(executor, DryRun)
    here = executor.query(server.name, backups.has_backup(layout, name), f"does it hold {name}")
    if here.strip() == "present" or (dry and copy is None):
        return ""
    missing = f"fab db restore: no backup {name} on {server.name}"
    if copy is None:
        raise UsageError(f"{missing} (fab db backups lists them)")
    there = executor.query(copy.name, backups.has_backup(layout, name),
                           f"does it hold a copy of {name}")  # fmt: skip
    if dry:
        executor.out(f"(dry run: what follows up to the maintenance runs when {server.name} "
                     f"lacks {name})")  # fmt: skip
    elif there.strip() != "present":
        raise UsageError(f"{missing}, nor a copy on {copy.name} (fab db backups lists them)")
    try:
        run_steps(executor, plan.db_fetch_steps(config, copy, name, work), set())
    finally:
        run_steps(executor, (plan.db_fetch_done(config, copy),), set())
    if dry:
        executor.out(f"(on the deployer: {name} checked against its .sha256 before it is sent)")
    else:
        _check_sum(work, name, f"{copy.name}: the copy of {name}")
    run_steps(executor, plan.db_put_steps(config, server, name, work), set())
    if not dry:
        print(f"restore: {name} is not on {server.name}: brought from the copy on "
              f"{copy.name}, its sha256 checked", flush=True)  # fmt: skip
    return copy.name


def _check_sum(work: Path, name: str, what: str) -> None:
    """The fetched dump against its ``.sha256``: a copy that differs is never restored."""
    expected = backups.parse_checksum(
        (work / f"{name}.sha256").read_text(errors="replace"), name)
    with open(work / name, "rb") as dump:
        found = hashlib.file_digest(dump, "sha256").hexdigest()
    if not expected or found != expected:
        raise DeployError(f"{what} does not match its sha256: not used; the database "
                          "was not touched")  # fmt: skip
