"""The deploy lock's steps, and the operator's tasks as plans: status, logs, unlock, run,
maintenance, history, the database's (``fab db``), and the line each task records in a
host's history."""

from pathlib import Path

from apiphant.deploy.config import Config, Host
from apiphant.deploy.host import backups, postgres
from apiphant.deploy.host.lock import lock, unlock
from apiphant.deploy.host.nginx import maintenance
from apiphant.deploy.host.releases import history, in_release, record
from apiphant.deploy.host.shell import join
from apiphant.deploy.host.status import status, tail_logs
from apiphant.deploy.plan.steps import Download, Step, StepKind, Upload


def lock_steps(config: Config, hosts: list[Host], holder: str) -> tuple[Step, ...]:
    """Each host's deploy lock, taken for ``holder``: a held one fails as StepKind.LOCK."""
    layout = config.layout
    return tuple(
        Step(h.name, "take the deploy lock", lock(layout, holder), timeout=60,
             kind=StepKind.LOCK)
        for h in hosts
    )  # fmt: skip


def unlock_steps(
    config: Config, hosts: list[Host], why: str = "release the deploy lock"
) -> tuple[Step, ...]:
    """Each host's deploy lock removed: after a deploy, or ``fab unlock``'s (``why``)."""
    return tuple(
        Step(h.name, why, unlock(config.layout), timeout=60) for h in hosts
    )


# The operator's tasks: one phase each, so they print and --dry-run like a deploy.


def certificates(config: Config, host: Host) -> list[tuple[str, str]]:
    """The certificates a host serves, by name: ``fab status`` shows when each expires."""
    if not (config.tls.on and host.has("nginx")):
        return []
    layout = config.layout
    if config.tls.acme:
        return [(", ".join(config.tls.domains), layout.acme_fullchain)]
    return [(", ".join(config.tls.domains), layout.current_tls_fullchain)]


def status_plan(config: Config, hosts: list[Host]) -> tuple[Step, ...]:
    """Each host's status; the postgres host's says how its database runs, too."""
    layout = config.layout
    return tuple(
        Step(
            h.name,
            "status",
            join(status(layout, [(w.program, w.address) for w in config.workers(h)],
                        certificates(config, h)),
                 *([postgres.status(layout, config.database.port), backups.last_backup(layout)]
                   if h.has("postgres") else [])),  # fmt: skip
            timeout=60,
            kind=StepKind.PASSTHROUGH,
        )
        for h in hosts
    )


def logs_plan(config: Config, hosts: list[Host], lines: int, follow: bool) -> tuple[Step, ...]:
    layout = config.layout
    return tuple(
        Step(
            h.name,
            f"logs in {layout.logs}",
            tail_logs(layout, lines, follow),
            timeout=24 * 3600 if follow else 120,
            kind=StepKind.PASSTHROUGH,
        )
        for h in hosts
    )


def unlock_plan(config: Config, hosts: list[Host]) -> tuple[Step, ...]:
    """``fab unlock``: a lock left by a deploy that died."""
    return unlock_steps(config, hosts, "remove the deploy lock")


def run_plan(config: Config, hosts: list[Host], command: str) -> tuple[Step, ...]:
    """A one-off command in the current release, as the product user, with its environment."""
    layout = config.layout
    return tuple(
        Step(
            h.name,
            f"run in the current release as {layout.user}: {command}",
            in_release(layout.current, layout.user, command),
            timeout=24 * 3600,
            kind=StepKind.PASSTHROUGH,
        )
        for h in hosts
    )


def maintenance_plan(config: Config, hosts: list[Host], on: bool) -> tuple[Step, ...]:
    return tuple(
        Step(
            h.name,
            f"maintenance {'on' if on else 'off'}",
            maintenance(config.layout, on),
            timeout=60,
        )
        for h in hosts
        if h.has("nginx")
    )


def history_plan(config: Config, hosts: list[Host], lines: int) -> tuple[Step, ...]:
    return tuple(
        Step(h.name, "history", history(config.layout, lines), timeout=60,
             kind=StepKind.PASSTHROUGH)
        for h in hosts
    )  # fmt: skip


def record_steps(config: Config, hosts: list[Host], line: str) -> tuple[Step, ...]:
    """One line in each host's audit log (never fails the task it records)."""
    return tuple(
        Step(h.name, "record in the host's history", record(config.layout, line),
             timeout=60, kind=StepKind.REPORT)
        for h in hosts
    )  # fmt: skip


# fab db: the postgres host's backups, a restore, psql.


def db_backup_plan(config: Config, server: Host) -> tuple[Step, ...]:
    """One backup now, on the postgres host (copied on, as the loop's are)."""
    return (Step(server.name, "a backup now (pg_dump -Fc)", backups.backup_now(config.layout),
                 timeout=24 * 3600, kind=StepKind.PASSTHROUGH),)  # fmt: skip


def db_backups_plan(config: Config) -> tuple[Step, ...]:
    """The backups on the postgres host, and the copies on the host that keeps them."""
    holders = [config.database_host(), config.backup_copy_host()]
    return tuple(
        Step(h.name, "backups", backups.list_backups(config.layout), timeout=60,
             kind=StepKind.PASSTHROUGH)
        for h in holders if h is not None
    )  # fmt: skip


def db_restore_step(config: Config, server: Host, name: str) -> Step:
    """``name`` restored into the product's database (checked first; all or nothing)."""
    return Step(server.name, f"restore {name} into database {config.layout.db_name}",
                postgres.restore(config.layout, config.database.port, name),
                timeout=24 * 3600, kind=StepKind.REASON)  # fmt: skip


def db_fetch_steps(config: Config, copy: Host, name: str, local: Path) -> tuple[Step, ...]:
    """Backup ``name`` and its checksum from the host of the copies to the deployer's
    private folder ``local``, for a postgres host that lacks it (a new one, after the
    loss of the old): there is no key between the two hosts for it, and none is made."""
    layout = config.layout
    out = layout.db_outgoing
    login = config.login_of(copy)
    return (
        Step(copy.name, f"backups: the copy of {name}, for {login} to fetch",
             backups.hand_out(layout, name, login), timeout=600),
        *(Step(copy.name, f"fetch {n}", download=Download(f"{out}/{n}", local / n, n))
          for n in (name + ".sha256", name)),
    )  # fmt: skip


def db_fetch_done(config: Config, copy: Host) -> Step:
    """What ``db_fetch_steps`` left on the host of the copies removed (also on a failure)."""
    return Step(copy.name, "backups: the fetched copy removed from its way out",
                backups.hand_out_done(config.layout), timeout=60, kind=StepKind.REPORT)


def db_put_steps(config: Config, server: Host, name: str, local: Path) -> tuple[Step, ...]:
    """The fetched backup into the postgres host's backups (root's, 0600), its checksum
    first: a dump the folder lists always has its own."""
    folder = config.layout.db_backups
    return (
        Step(server.name, "backups: their folder, root's", f"install -d -m 0700 {folder}"),
        *(Step(server.name, f"backups: {n}, from the copy",
               upload=Upload(f"{folder}/{n}", 0o600, n, local=local / n))
          for n in (name + ".sha256", name)),
    )  # fmt: skip
