"""The deploy kit's commands, as the fabfile's tasks call them; each returns an exit status.

They take plain values (product, host names, flags), so they can be called
from anything; the fabfile only maps its command line onto them.
"""

import functools
import shlex
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from apiphant.deploy import CHECKOUT, artifacts, commands, plan, render, roles
from apiphant.deploy.config import Config, ConfigError, Host, check_secrets, load
from apiphant.deploy.render import Paths
from apiphant.deploy.roles import RoleError
from apiphant.deploy.runner import (
    DeployError,
    Executor,
    Remote,
    execute,
    good_releases,
    print_plan,
    run_plan,
    say,
)


class UsageError(Exception):
    """A command line that names something that does not exist; one line."""


def find_product(product: str, config_path: str = "") -> Config:
    """``--product`` as a folder here or in the checkout; its deploy.toml, or ``--config``."""
    if not product:
        raise UsageError("--product is required, like --product=myproduct")
    candidates = [Path(product), CHECKOUT / product]
    folder = next((c for c in candidates if (c / "api").is_dir()), None)
    if folder is None:
        raise UsageError(
            f"unknown product {product!r}: no product folder (with api/) named {product} "
            f"here or in {CHECKOUT}"
        )
    path = Path(config_path) if config_path else folder / "deploy.toml"
    if not path.is_file():
        hint = "" if config_path else ": copy myproduct/deploy.toml there and edit it"
        raise UsageError(f"{path}: no such file{hint}")
    return load(path, folder.resolve())


def _guarded(task: Callable[..., int]) -> Callable[..., int]:
    """One line for every expected failure; tracebacks only for bugs."""

    @functools.wraps(task)
    def guarded(*args: Any, **kwargs: Any) -> int:
        try:
            return task(*args, **kwargs)
        except (UsageError, ConfigError, RoleError, DeployError, artifacts.BuildError) as error:
            first, _, rest = str(error).partition("\n")
            print(f"error: {first}", flush=True)
            if rest:
                print(rest, flush=True)
            return 1

    return guarded


@_guarded
def render_files(
    product: str, hosts: Iterable[str] = (), out: str = "", config_path: str = ""
) -> int:
    """Print or write every file of every chosen host; connects to nothing."""

    config = find_product(product, config_path)
    chosen = config.select(hosts)
    release = artifacts.release_id()
    rendered = render.render_all(config, chosen, release, artifacts.wheel_name())
    for name, files in rendered.items():
        for file_name, text in files.files.items():
            linked = files.links.get(file_name)
            where = f" (linked as {linked})" if linked else ""
            if out:
                target = Path(out) / name / file_name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
                target.chmod(files.mode(file_name))
                print(f"wrote {target}{where}")
            else:
                print(f"# ==> {name}/{file_name}{where} <==")
                print(text)
    return 0


def _executor(config: Config, dry_run: bool, fabric_config: Any) -> Executor:
    return Executor(config) if dry_run else Remote(config, fabric_config)


@_guarded
def deploy(
    product: str,
    hosts: Iterable[str] = (),
    dry_run: bool = False,
    config_path: str = "",
    fabric_config: Any = None,
) -> int:
    """Build once, then lock, prepare, switch, restart, smoke-test every chosen host."""
    config = find_product(product, config_path)
    chosen = config.select(hosts)
    check_secrets(config)
    all_roles = roles.load_roles()
    release = artifacts.release_id()
    print(f"Deploying {config.product} release {release} to {_hosts(chosen)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="apiphant-deploy-") as work:
        workdir = Path(work)
        if dry_run:
            wheel_name = artifacts.wheel_name()
            command = artifacts.wheel_command(workdir / "source", workdir / "wheels")
            print("local $ " + " ".join(command))
            tarball = artifacts.tarball_path(workdir, config, release)
            print(f"local: would build {tarball}: {config.product}/, test.sh, {wheel_name}")
        else:
            wheel = artifacts.build_wheel(workdir)
            wheel_name = wheel.name
            tarball = artifacts.build_tarball(config, release, wheel, workdir)
        rendered = {
            h.name: render.render_host(config, h, release, wheel_name, all_roles) for h in chosen
        }
        the_plan = plan.deploy_plan(
            config, chosen, release, tarball, rendered, artifacts.holder(release), all_roles
        )

        def rollback(targets: dict[str, str]) -> plan.Plan:
            back = [h for h in chosen if h.name in targets]
            return plan.rollback_plan(config, back, targets, all_roles)

        executor = _executor(config, dry_run, fabric_config)
        try:
            if dry_run:
                print_plan(the_plan, executor, rollback({h.name: "<previous>" for h in chosen}))
                say(executor.out, "dry run: nothing was run")
                return 0
            outcome = execute(the_plan, executor, rollback, chosen, config)
        finally:
            executor.close()
    say(print, ("OK: " if outcome.ok else "FAILED: ") + outcome.message)
    return 0 if outcome.ok else 1


def _hosts(hosts: list[Host]) -> str:
    return ", ".join(f"{h.name} ({h.ssh})" for h in hosts)


@_guarded
def rollback(
    product: str,
    hosts: Iterable[str] = (),
    release: str = "",
    dry_run: bool = False,
    config_path: str = "",
    fabric_config: Any = None,
) -> int:
    """Back to the previous good release (or a named one) on each chosen host."""

    config = find_product(product, config_path)
    chosen = config.select(hosts)
    if release and not artifacts.RELEASE.fullmatch(release):
        raise UsageError(f"--release: expected a release id like 20250102030405, got {release!r}")
    all_roles = roles.load_roles()
    locks = plan.lock_steps(config, chosen, artifacts.holder(release or "rollback"))
    unlocks = plan.unlock_steps(config, chosen)
    executor = _executor(config, dry_run, fabric_config)
    try:
        if dry_run:
            targets = {h.name: release or "<previous>" for h in chosen}
            back = plan.rollback_plan(config, chosen, targets, all_roles)
            shown = plan.Plan(
                back.release, back.hosts, locks, (), back.activate, back.verify, (), unlocks
            )
            print_plan(shown, executor)
            say(executor.out, "dry run: nothing was run")
            return 0
        held: list[str] = []
        try:
            for step in locks:
                executor.run(step)
                held.append(step.host)
            targets = {h.name: _target(executor, config, h, release) for h in chosen}
            say(print, "rolling back: " + ", ".join(f"{h} to {r}" for h, r in targets.items()))
            outcome = run_plan(plan.rollback_plan(config, chosen, targets, all_roles), executor)
        finally:
            for step in unlocks:
                if step.host in held:
                    executor.run(step)
    finally:
        executor.close()
    if outcome.ok:
        say(print, "OK: " + ", ".join(f"{h} serves {r}" for h, r in targets.items()))
        return 0
    say(print, f"FAILED: rollback: {outcome.message}")
    return 1


def _target(executor: Executor, config: Config, host: Host, wanted: str) -> str:
    rows = good_releases(executor, config, host)
    current = next((r for r, _, is_current in rows if is_current), "")
    if wanted:
        match = [r for r, good, _ in rows if r == wanted]
        if not match:
            known = ", ".join(r for r, good, _ in rows if good) or "none"
            raise UsageError(f"{host.name}: no release {wanted} (good releases: {known})")
        if not any(good for r, good, _ in rows if r == wanted):
            raise UsageError(f"{host.name}: release {wanted} never passed a deploy; deploy instead")
        return wanted
    older = [r for r, good, _ in rows if good and (not current or r < current)]
    if not older:
        raise UsageError(f"{host.name}: no good release before {current or 'none'} to roll back to")
    return older[0]


@_guarded
def status(
    product: str, hosts: Iterable[str] = (), config_path: str = "", fabric_config: Any = None
) -> int:
    """Release, releases, lock, processes and health of each chosen host; changes nothing."""
    config = find_product(product, config_path)
    executor = Remote(config, fabric_config)
    paths = Paths(config.root, "")
    try:
        for host in config.select(hosts):
            workers = [(w.program, w.address) for w in config.workers(host)]
            say(print, f"{host.name} ({host.ssh})")
            text = executor.query(
                host.name,
                commands.status(paths, config.product, workers, config.logs),
                "status",
            )
            for line in text.rstrip().splitlines():
                print(f"[{host.name}]   {line}")
    finally:
        executor.close()
    return 0


@_guarded
def logs(
    product: str,
    hosts: Iterable[str] = (),
    lines: int = 50,
    follow: bool = False,
    config_path: str = "",
    fabric_config: Any = None,
) -> int:
    """The last lines of the product's logs (programs and Nginx); --follow keeps tailing."""

    config = find_product(product, config_path)
    chosen = config.select(hosts)
    if follow and len(chosen) > 1:
        raise UsageError("--follow tails one host: name it")
    executor = Remote(config, fabric_config)
    try:
        for host in chosen:
            executor.run(
                plan.Step(
                    host.name,
                    f"logs in {config.logs}",
                    commands.tail_logs(config.logs, lines, follow),
                    timeout=24 * 3600 if follow else 120,
                )
            )
    finally:
        executor.close()
    return 0


@_guarded
def unlock(
    product: str, hosts: Iterable[str] = (), config_path: str = "", fabric_config: Any = None
) -> int:
    """Remove a deploy lock left by a deploy that died; say whose it was."""
    config = find_product(product, config_path)
    paths = Paths(config.root, "")
    executor = Remote(config, fabric_config)
    try:
        for host in config.select(hosts):
            executor.run(
                plan.Step(
                    host.name,
                    "remove the deploy lock",
                    f"cat {shlex.quote(paths.lock + '/holder')} 2>/dev/null "
                    "|| echo 'no lock held'; " + commands.unlock(paths),
                )
            )
    finally:
        executor.close()
    return 0
