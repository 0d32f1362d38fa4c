"""A deploy's plan and a rollback's, from the phases' builders."""

from pathlib import Path

from apiphant.deploy import roles
from apiphant.deploy.config import Config, Host
from apiphant.deploy.plan.activate import activate_steps, release_phase_steps
from apiphant.deploy.plan.operate import lock_steps, unlock_steps
from apiphant.deploy.plan.prepare import BackupKeys, VenvCopies, prepare_steps
from apiphant.deploy.plan.steps import ACTIVATE, FINISH, PREPARE, RELEASE, VERIFY, Later, Plan
from apiphant.deploy.plan.verify import finish_steps, verify_steps
from apiphant.deploy.render import HostFiles
from apiphant.deploy.tls import Files


def deploy_plan(
    config: Config,
    hosts: list[Host],
    release: str,
    tarball: Path | None,
    rendered: dict[str, HostFiles],
    holder: str,
    all_roles: dict[str, roles.Role] | None = None,
    *,
    packages: str,
    tls_files: Files | None = None,
    code_only: tuple[Path | None, frozenset[str]] = (None, frozenset()),
    copies: VenvCopies | None = None,
    secrets: bytes | dict[str, bytes | Later] | None = None,
    new_password: bool = False,
    backup_keys: BackupKeys | None = None,
) -> Plan:
    """Lock, prepare, the release command (when deploy.toml has one: else no such phase),
    activate, verify, finish, unlock. How each phase runs is its own (``plan.steps``)."""
    all_roles = all_roles if all_roles is not None else roles.load_roles()
    releases = {h.name: release for h in hosts}
    command = release_phase_steps(config, hosts, release)
    return Plan(
        release,
        tuple(h.name for h in hosts),
        lock=lock_steps(config, hosts, holder),
        phases=(
            PREPARE.of(prepare_steps(config, hosts, release, tarball, rendered, packages,
                                     tls_files, code_only, copies, secrets,
                                     new_password, backup_keys)),
            *([RELEASE.of(command)] if command else []),
            ACTIVATE.of(activate_steps(config, hosts, releases, all_roles)),
            VERIFY.of(verify_steps(config, hosts, releases)),
            FINISH.of(finish_steps(config, hosts, release)),
        ),  # fmt: skip
        unlock=unlock_steps(config, hosts),
    )


def rollback_plan(
    config: Config,
    hosts: list[Host],
    releases: dict[str, str],
    all_roles: dict[str, roles.Role] | None = None,
) -> Plan:
    """Back to ``releases[host]`` on each host: the same activation, then the smoke test.
    No lock phase: a deploy's rollback runs under its lock; ``fab rollback`` adds its own."""
    all_roles = all_roles if all_roles is not None else roles.load_roles()
    return Plan(
        ",".join(sorted(set(releases.values()))),
        tuple(h.name for h in hosts),
        phases=(
            ACTIVATE.of(activate_steps(config, hosts, releases, all_roles, obtain=False)),
            VERIFY.of(verify_steps(config, hosts, releases, https=False, rollback=True)),
        ),
    )
