"""The deploy kit's commands, as the fabfile's tasks call them; each returns an exit status.

They take plain values (where the product is, host names, flags), so they can
be called from anything; apiphant.deploy.fabtasks only maps its command line
onto them. Every one reads and checks deploy.toml before it touches a host.
"""

import functools
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from apiphant.deploy import artifacts, dbfacts, hostwide, plan, render, roles, tls, wheelhouse
from apiphant.deploy import config as configuration
from apiphant.deploy.audit import _record, audit_line, command_name
from apiphant.deploy.config import Config, ConfigError, Host, check_secrets
from apiphant.deploy.config.secrets import host_secrets
from apiphant.deploy.console import DryRun, Hosts, print_plan, say
from apiphant.deploy.errors import DeployError, StepFailed
from apiphant.deploy.facts import (
    database_password,
    host_facts,
    nginx_neighbours,
    password_after_lock,
)
from apiphant.deploy.layout import PRODUCTION, RELEASE_ID
from apiphant.deploy.orchestrate import (
    _current,
    all_releases,
    execute,
    locked,
    report_serving,
    rollback_targets,
    run_every_host,
    run_steps,
)
from apiphant.deploy.roles import RoleError
from apiphant.deploy.ssh import Remote
from apiphant.deploy.target import Target, UsageError, find_product, parallel_width

#: Besides the tasks, what tests and bench take from here (their homes are the modules
#: imported above).
__all__ = ["BAD_INPUT", "PRODUCTION", "Target", "UsageError", "audit_line", "command_name",
           "find_product", "host_facts", "parallel_width", "pip_requirements",
           "rollback_targets"]  # fmt: skip


#: Exit status of a command refused for what it was given (flags, deploy.toml, the product),
#: before any host was touched; a failure on a host exits 1.
BAD_INPUT = 2


def _guarded(task: Callable[..., int]) -> Callable[..., int]:
    """One line for every expected failure; tracebacks only for bugs."""

    @functools.wraps(task)
    def guarded(*args: Any, **kwargs: Any) -> int:
        try:
            return task(*args, **kwargs)
        except (UsageError, ConfigError, RoleError, DeployError, artifacts.BuildError,
                wheelhouse.WheelhouseError) as error:  # fmt: skip
            first, _, rest = str(error).partition("\n")
            print(f"error: {first}", flush=True)
            if rest:
                print(rest, flush=True)
            return BAD_INPUT if isinstance(error, (UsageError, ConfigError, RoleError)) else 1

    return guarded


def _executor(config: Config, dry_run: bool, fabric_config: Any) -> Hosts:
    return DryRun(config) if dry_run else Remote(config, fabric_config)


@_guarded
def render_files(target: Target, hosts: Iterable[str] = (), out: str = "") -> int:
    """Print or write every file of every chosen host; connects to nothing."""
    config = find_product(target)
    chosen = config.select(hosts)
    release = artifacts.release_id()
    rendered = render.render_all(config, chosen, release, artifacts.wheel_name())
    for name, files in rendered.items():
        for file_name, text in files.files.items():
            linked = files.links.get(file_name)
            where = f" (linked as {linked})" if linked else ""
            if out:
                path = Path(out) / name / file_name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                path.chmod(files.mode(file_name))
                print(f"wrote {path}{where}")
            else:
                print(f"# ==> {name}/{file_name}{where} <==")
                print(text)
    own = render.overridden(config)
    if own:
        print(f"templates from the product ({render.OVERRIDES}/): {', '.join(own)}")
    if config.env != PRODUCTION:
        base, merged, shown = configuration.layers(config.path, config.env)
        changed = configuration.differences(base, merged)
        print(f"environment {config.env} ({shown}) differs from production in: "
              + (", ".join(changed) or "nothing"))  # fmt: skip
    return 0


@_guarded
def deploy(
    target: Target,
    hosts: Iterable[str] = (),
    dry_run: bool = False,
    fabric_config: Any = None,
    parallel: int | str = 0,
) -> int:
    """Build once, then lock, prepare (hosts side by side, ``parallel`` at most, 0: all), run
    the release command, switch, restart, smoke-test every chosen host; record the outcome in
    each host's history."""
    width = parallel_width(parallel)
    config = find_product(target)
    chosen = config.select(hosts)
    secrets = check_secrets(config)
    # Which files ship: refused here, before any host is asked, when one looks like a secret.
    source = artifacts.shipped(config)
    # tls = "files": present, a key that matches, not expired; before any host is touched
    tls_files = tls.load_files(config) if config.tls.mode == "files" else None
    artifacts.check_requirements(config)
    all_roles = roles.load_roles()
    release = artifacts.release_id()
    env = "" if config.env == PRODUCTION else f" ({config.env})"
    print(f"Deploying {config.product}{env} release {release} to {_hosts(config, chosen)}",
          flush=True)  # fmt: skip
    print(f"local: the release ships {source.describe()}", flush=True)
    if source.untracked:
        shown = ", ".join(source.untracked[:5]) + (", ..." if len(source.untracked) > 5 else "")
        print(f"local: not shipped, as git does not track them: {len(source.untracked)} files "
              f"in {config.product}/ ({shown}); git add what the release needs",
              flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="apiphant-deploy-") as work:
        workdir = Path(work)
        executor = _executor(config, dry_run, fabric_config)
        pip = pip_requirements(config, chosen, all_roles)
        try:
            if dry_run:
                wheel_name = artifacts.wheel_name()
                print(artifacts.describe_build(workdir))
                extras = "".join(f" and its {e} extra" for e in config.apiphant_extras())
                print(wheelhouse.describe([f"apiphant's dependencies{extras}", *pip]))
                tarball = artifacts.tarball_path(workdir, config, release)
                print(f"local: would build {tarball}: {config.product}/, wheels/ "
                      f"(for hosts that have its virtualenv: {config.product}/ alone); the "
                      "hosts' answers decide which of them build the virtualenv, and which "
                      f"unpack a copy of another's (venv = {config.venv!r})")  # fmt: skip
                packages = "<digest of the wheels and requirements>"
                code_only, copies = (None, frozenset()), None
                rendered = _render(config, chosen, release, wheel_name, all_roles)
            else:
                neighbours = nginx_neighbours(executor, config, chosen)
                platforms, venvs = host_facts(executor, config, chosen)
                wheel = artifacts.build_wheel(workdir)
                wheel_name = wheel.name
                requirements = wheelhouse.wheel_requirements(wheel, config.apiphant_extras()) + pip
                wheels = wheelhouse.build(platforms.values(), requirements, workdir / "wheelhouse")
                packages = wheelhouse.packages_key(config.python, [wheel, *wheels], pip)
                # Hosts that have this release's virtualenv get the code alone, not the wheels;
                # so do those that receive a copy of the one another host of theirs builds.
                have = frozenset(name for name, keys in venvs.items() if packages in keys)
                need = [name for name in platforms if name not in have]
                rendered = _render(config, chosen, release, wheel_name, all_roles, neighbours)
                copies = plan.venv_copies(need, platforms, rendered, workdir, config.venv)
                receive = {name for names in copies.builders.values() for name in names}
                tarball = (artifacts.build_tarball(config, release, [wheel, *wheels], workdir)
                           if set(need) - receive else None)  # fmt: skip
                code_only = (artifacts.build_tarball(config, release, [], workdir, "code")
                             if have or receive else None), have  # fmt: skip
            # The postgres host's password into memory, for each host's DATABASE_URL; a
            # question only: a host that has none yet makes it under the lock, and the
            # secrets that hold it are made when they are uploaded.
            password = database_password(executor, config, chosen)
            new_password = password is None
            host_files = host_secrets(config, chosen, secrets,
                                      password_after_lock(executor, config) if password is None
                                      else password)  # fmt: skip
            keys = dbfacts.backup_keys(executor, config, chosen)
            holder = artifacts.holder(release)
            the_plan = plan.deploy_plan(
                config, chosen, release, tarball, rendered, holder, all_roles, packages=packages,
                tls_files=tls_files, code_only=code_only, copies=copies, secrets=host_files,
                new_password=new_password,
                backup_keys=keys,
            )

            def rollback(targets: dict[str, str]) -> plan.Plan:
                back = [h for h in chosen if h.name in targets]
                return plan.rollback_plan(config, back, targets, all_roles)

            if dry_run:
                back = rollback({h.name: "<previous>" for h in chosen})
                print_plan(the_plan, executor, back, width)
                say(executor.out, "dry run: nothing was run")
                return 0
            outcome = execute(the_plan, executor, rollback, chosen, config, width)
            result = "ok" if outcome.ok else "failed"
            _record(executor, config, chosen,
                    audit_line(config, "deploy", result, release, source))  # fmt: skip
        finally:
            executor.close()
    say(print, ("OK: " if outcome.ok else "FAILED: ") + outcome.message)
    return 0 if outcome.ok else 1


def _render(
    config: Config,
    hosts: list[Host],
    release: str,
    wheel: str,
    all_roles: dict[str, roles.Role],
    neighbours: dict[str, tuple[hostwide.Needs, ...]] | None = None,
) -> dict[str, render.HostFiles]:
    """Every chosen host's rendered files (the copies need them to group hosts), each main
    Nginx config with the other deployments on its host (``neighbours``)."""
    neighbours = neighbours or {}
    return {h.name: render.render_host(config, h, release, wheel, all_roles,
                                       neighbours=neighbours.get(h.name, ()))
            for h in hosts}  # fmt: skip


def pip_requirements(
    config: Config, hosts: list[Host], all_roles: dict[str, roles.Role]
) -> list[str]:
    """What the release's virtualenvs install besides apiphant: roles' packages, the product's."""
    host_roles = [roles.for_host(config.role_names(h), all_roles) for h in hosts]
    packages = {p for one in host_roles for p in roles.pip_packages(one)}
    return sorted(packages) + list(render.product_requirements(config))


def _hosts(config: Config, hosts: list[Host]) -> str:
    return ", ".join(f"{h.name} ({config.ssh_target(h)})" for h in hosts)


@_guarded
def rollback(
    target: Target,
    hosts: Iterable[str] = (),
    release: str = "",
    dry_run: bool = False,
    fabric_config: Any = None,
) -> int:
    """Back to the previous good release (or a named one) on each chosen host."""
    config = find_product(target)
    chosen = config.select(hosts)
    if release and not RELEASE_ID.fullmatch(release):
        raise UsageError(f"--release: expected a release id like 20250102030405, got {release!r}")
    all_roles = roles.load_roles()
    locks = plan.lock_steps(config, chosen, artifacts.holder(release or "rollback"))
    unlocks = plan.unlock_steps(config, chosen)
    executor = _executor(config, dry_run, fabric_config)
    try:
        if dry_run:
            targets = {h.name: release or "<previous>" for h in chosen}
            back = plan.rollback_plan(config, chosen, targets, all_roles)
            print_plan(replace(back, lock=locks, unlock=unlocks), executor)
            say(executor.out, "dry run: nothing was run")
            return 0
        failures: dict[str, DeployError] = {}
        with locked(executor, locks, unlocks):
            found = all_releases(executor, config, chosen)
            for answer in found.values():
                if isinstance(answer, DeployError):
                    raise answer
            rows = {name: answer for name, answer in found.items()
                    if not isinstance(answer, DeployError)}  # fmt: skip
            targets = rollback_targets(rows, release)
            # A host that already serves its target (hosts that differed) is left as it is.
            moving = {h: r for h, r in targets.items() if _current(rows[h]) != r}
            staying = [h for h in targets if h not in moving]
            going = [", ".join(f"{h} to {r}" for h, r in moving.items())] if moving else []
            say(print, "rolling back: " + "; ".join(
                going + [f"{h} already serves {targets[h]}" for h in staying]))  # fmt: skip
            if moving:
                back = plan.rollback_plan(config, [h for h in chosen if h.name in moving],
                                          moving, all_roles)  # fmt: skip
                for phase in back.phases:
                    say(print, phase.name)
                    run_every_host(executor, phase.steps, failures)
        result = "failed" if failures else "ok"
        to = ",".join(sorted(set(targets.values())))
        _record(executor, config, chosen, audit_line(config, "rollback", result, to))
        if failures:
            report_serving(executor, config, chosen)
    finally:
        executor.close()
    if not failures:
        say(print, "OK: " + ", ".join(f"{h} serves {r}" for h, r in targets.items()))
        return 0
    done = [h for h in moving if h not in failures]
    say(print, "FAILED: rollback: " + "; ".join(
        [str(failures[h]) for h in moving if h in failures]
        + ([", ".join(f"{h} serves {targets[h]}" for h in done)] if done else [])))  # fmt: skip
    return 1


def _operate(
    config: Config,
    steps: tuple[plan.Step, ...],
    dry_run: bool,
    fabric_config: Any,
    record: str = "",
    after: Callable[[Hosts, list[Host]], int] | None = None,
) -> int:
    """Run an operator's plan (status, logs, run...), or print it; the exit status of a
    failed step is the task's, as ``fab run`` promises. ``after``: what runs once the steps
    have, on the same connections (not in a dry run); its exit status, when not 0, is the
    task's."""
    executor = _executor(config, dry_run, fabric_config)
    hosts = [config.host(name) for name in dict.fromkeys(s.host for s in steps)]
    status = 0
    try:
        try:
            run_steps(executor, steps, set())
        except StepFailed as error:
            if error.step.kind is not plan.StepKind.PASSTHROUGH:
                raise
            print(f"[{error.step.host}] exit {error.exited}", flush=True)
            status = error.exited
        if after is not None and not dry_run:
            status = after(executor, hosts) or status
        if dry_run:
            say(executor.out, "dry run: nothing was run")
        elif record:
            result = "ok" if status == 0 else f"exit {status}"
            _record(executor, config, hosts, audit_line(config, record, result))
    finally:
        executor.close()
    return status


@_guarded
def status(
    target: Target, hosts: Iterable[str] = (), dry_run: bool = False, fabric_config: Any = None
) -> int:
    """Release, releases, lock, maintenance, processes and health of each chosen host; then,
    for several, whether they serve one release: hosts that differ (a deploy that failed
    part way) are said loudly, and the exit status is 1."""
    config = find_product(target)
    steps = plan.status_plan(config, config.select(hosts))
    return _operate(config, steps, dry_run, fabric_config, after=_one_release)


#: ``fab status``'s exit status when its hosts serve different releases.
MIXED = 1


def _one_release(executor: Hosts, hosts: list[Host]) -> int:
    if len(hosts) < 2:
        return 0
    return 0 if report_serving(executor, executor.config, hosts) else MIXED


@_guarded
def logs(
    target: Target,
    hosts: Iterable[str] = (),
    lines: int = 50,
    follow: bool = False,
    dry_run: bool = False,
    fabric_config: Any = None,
) -> int:
    """The last lines of the product's logs (programs and Nginx); --follow keeps tailing."""
    config = find_product(target)
    chosen = config.select(hosts)
    if follow and len(chosen) > 1:
        raise UsageError("--follow tails one host: name it")
    steps = plan.logs_plan(config, chosen, lines, follow)
    return _operate(config, steps, dry_run, fabric_config)


@_guarded
def run(
    target: Target,
    hosts: Iterable[str] = (),
    command: str = "",
    dry_run: bool = False,
    fabric_config: Any = None,
) -> int:
    """A one-off command in the current release on each named host; its exit status back."""
    config = find_product(target)
    if not command.strip():
        raise UsageError("fab run: no command: fab run HOST -- COMMAND ...")
    if not hosts:
        raise UsageError("fab run: name the host to run on: fab run HOST -- COMMAND ...")
    chosen = config.select(hosts)
    bare = [h.name for h in chosen if not config.runs_python(h)]
    if bare:
        with_python = ", ".join(h.name for h in config.hosts if config.runs_python(h))
        raise UsageError(
            f"fab run: {', '.join(bare)} runs Nginx only: no release code or virtualenv there; "
            f"run on a host with api or background ({with_python})"
        )
    steps = plan.run_plan(config, chosen, command)
    return _operate(config, steps, dry_run, fabric_config, record=f"run {command_name(command)}")


@_guarded
def maintenance(
    target: Target,
    hosts: Iterable[str] = (),
    on: bool = False,
    off: bool = False,
    dry_run: bool = False,
    fabric_config: Any = None,
) -> int:
    """Turn maintenance on or off on the chosen hosts' Nginx."""
    config = find_product(target)
    if on == off:
        raise UsageError("fab maintenance: say --on or --off")
    steps = plan.maintenance_plan(config, config.select(hosts), on)
    if not steps:
        raise UsageError("fab maintenance: none of these hosts has the nginx role")
    word = "maintenance on" if on else "maintenance off"
    return _operate(config, steps, dry_run, fabric_config, record=word)


@_guarded
def history(
    target: Target,
    hosts: Iterable[str] = (),
    lines: int = 50,
    dry_run: bool = False,
    fabric_config: Any = None,
) -> int:
    """The last entries of each chosen host's history (the audit log)."""
    config = find_product(target)
    steps = plan.history_plan(config, config.select(hosts), lines)
    return _operate(config, steps, dry_run, fabric_config)


@_guarded
def unlock(
    target: Target, hosts: Iterable[str] = (), dry_run: bool = False, fabric_config: Any = None
) -> int:
    """Remove a deploy lock left by a deploy that died; say whose it was."""
    config = find_product(target)
    steps = plan.unlock_plan(config, config.select(hosts))
    return _operate(config, steps, dry_run, fabric_config, record="unlock")
