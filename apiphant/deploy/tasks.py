"""The deploy kit's commands, as the fabfile's tasks call them; each returns an exit status.

They take plain values (where the product is, host names, flags), so they can
be called from anything; apiphant.deploy.fabtasks only maps its command line
onto them. Every one reads and checks deploy.toml before it touches a host.
"""

import functools
import re
import shlex
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apiphant
from apiphant.deploy import artifacts, commands, hostwide, plan, render, roles, tls, wheelhouse
from apiphant.deploy import config as configuration
from apiphant.deploy.config import Config, ConfigError, Host, check_secrets
from apiphant.deploy.console import DryRun, Hosts, print_plan, say
from apiphant.deploy.errors import DeployError, StepFailed
from apiphant.deploy.layout import PRODUCTION, RELEASE_ID
from apiphant.deploy.orchestrate import (
    Releases,
    all_releases,
    execute,
    locked,
    report_serving,
    run_every_host,
    run_side_by_side,
    run_steps,
)
from apiphant.deploy.roles import RoleError
from apiphant.deploy.ssh import Remote

__all__ = ["PRODUCTION", "Target"]


class UsageError(Exception):
    """A command line that names something that does not exist; one line."""


@dataclass(frozen=True)
class Target:
    """Which deployment a task is about: the product, another deploy.toml, an environment."""

    product: str = ""
    config: str = ""
    env: str = PRODUCTION


def repository(start: Path | None = None) -> Path:
    """The folder whose fabfile.py ``fab`` runs: the nearest one up from here, as Fabric
    finds it."""
    here = (start or Path.cwd()).resolve()
    return next((d for d in (here, *here.parents) if (d / "fabfile.py").is_file()), here)


def find_product(target: Target, start: Path | None = None) -> Config:
    """The product: ``--product`` (a folder here or beside the fabfile), else the repository
    itself; its deploy.toml (or ``--config``), with ``--env`` over it."""
    root = repository(start)
    if target.product:
        candidates = [Path(target.product), root / target.product]
        folder = next((c for c in candidates if (c / "api").is_dir()), None)
        if folder is None:
            raise UsageError(
                f"--product {target.product}: no product folder (with api/) named "
                f"{target.product} here or in {root}"
            )
    elif (root / "api").is_dir():
        folder = root
    else:
        raise UsageError(
            f"--product is required: {root} is not a product (no api/ folder); "
            "say which, like --product=myproduct"
        )
    path = Path(target.config) if target.config else folder / "deploy.toml"
    if not path.is_file():
        hint = "" if target.config else ": apiphant new writes one; or copy myproduct's"
        raise UsageError(f"{path}: no such file{hint}")
    return configuration.load(path, folder.resolve(), target.env)


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


def audit_line(
    config: Config,
    action: str,
    outcome: str,
    release: str = "",
    shipped: artifacts.Shipped | None = None,
) -> str:
    """One line of a host's history: when, who, which code (git commit, and dirty: a file
    git tracks in the product folder differs from it), what, how. A deploy's line also says
    which files it shipped (``files=tracked``: those git tracks, as in the working tree;
    ``files=folder``: a folder outside git)."""
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    commit, changed = artifacts.revision(config.product_dir)
    dirty = ("yes" if changed else "no") if commit else "-"
    fields = [when, action, f"outcome={outcome}", f"by={artifacts.deployer()}",
              f"commit={commit or 'none'}", f"dirty={dirty}", f"apiphant={apiphant.__version__}",
              f"env={config.env}"]  # fmt: skip
    if shipped is not None:
        fields.append(f"files={'folder' if shipped.repository is None else 'tracked'}")
    if release:
        fields.append(f"release={release}")
    return " ".join(f.replace("\n", " ") for f in fields)


def _record(executor: Hosts, config: Config, hosts: list[Host], line: str) -> None:
    """The line in every host's history, hosts side by side; a failure is reported."""
    run_side_by_side(executor, plan.record_steps(config, hosts, line))


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
                print(wheelhouse.describe(["apiphant's dependencies", *pip]))
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
                requirements = wheelhouse.wheel_requirements(wheel) + pip
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
            holder = artifacts.holder(release)
            the_plan = plan.deploy_plan(
                config, chosen, release, tarball, rendered, holder, all_roles, packages=packages,
                tls_files=tls_files, code_only=code_only, copies=copies, secrets=secrets,
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


def nginx_neighbours(
    executor: Hosts, config: Config, hosts: list[Host]
) -> dict[str, tuple[hostwide.Needs, ...]]:
    """The other deployments (environments) on each chosen Nginx host, by the record lines
    of its live main config, whose host-wide settings this deploy's main config serves
    too: asked before anything changes anywhere, so a conflict with one (``hostwide.merge``)
    stops the deploy in one line with nothing touched. Fronts are few: one after another."""
    own = hostwide.Needs.of(config)
    found = {}
    for host in (h for h in hosts if h.has("nginx")):
        try:
            answer = executor.query(host.name, hostwide.question(),
                                    "the other deployments its Nginx serves")  # fmt: skip
        except DeployError as error:
            raise DeployError(f"{error}; nothing was changed on any host") from None
        try:
            found[host.name] = hostwide.others_on(host.name, answer, own.name)
            hostwide.merge(host.name, own, found[host.name])
        except ConfigError as error:
            raise ConfigError(f"{error}; nothing was changed on any host") from None
    return found


def parallel_width(value: int | str) -> int:
    """``--parallel``: how many hosts prepare at once; empty or 0 means all of them."""
    text = str(value).strip()
    if text in ("", "0"):
        return 0
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--parallel: expected a positive number of hosts, like 4, got {text!r}")
    return int(text)


def host_facts(
    executor: Hosts, config: Config, hosts: list[Host]
) -> tuple[dict[str, wheelhouse.Platform], dict[str, frozenset[str]]]:
    """The Python and platform of every chosen host that gets a virtualenv (an Nginx-only
    host gets none: no wheels for it), and the complete virtualenvs each has, asked before
    anything changes anywhere: a host that cannot be reached, or has an account of the
    deployment's user name that the deploy did not make, stops the deploy here, with
    nothing touched."""
    python = {h.name for h in hosts if config.runs_python(h)}
    asked = [h.name for h in hosts]
    if not asked:
        return {}, {}
    account = commands.account_check(config.layout)
    facts = commands.join(account, wheelhouse.facts_command(config.python, config.layout.venvs))
    user = f"its system user {config.layout.user}"

    def ask(name: str) -> str | DeployError:
        try:
            if name not in python:
                return executor.query(name, account, user)
            why = f"{user}; its Python and platform; its virtualenvs"
            return executor.query(name, facts, why)
        except DeployError as error:
            return error

    # Every host at once: a fleet answers in one round trip's time, not one per host.
    with ThreadPoolExecutor(max_workers=len(asked), thread_name_prefix="apiphant-ask") as pool:
        answers = dict(zip(asked, pool.map(ask, asked), strict=True))
    for answer in answers.values():
        if isinstance(answer, DeployError):
            raise DeployError(f"{answer}; nothing was changed on any host")
    answers = {name: answer for name, answer in answers.items() if name in python}
    platforms = {name: wheelhouse.parse_facts(name, str(a)) for name, a in answers.items()}
    return platforms, {name: wheelhouse.complete_venvs(str(a)) for name, a in answers.items()}


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


def _current(rows: Releases) -> str:
    return next((r for r, _, is_current in rows if is_current), "")


def rollback_targets(rows: dict[str, Releases], wanted: str = "") -> dict[str, str]:
    """THE rule for ``fab rollback``'s release on each host, from each host's releases
    (newest first: release, good, current):

    - a named release (``wanted``): on every host, if it passed a deploy there;
    - hosts that serve one release: on each, the newest good release older than it;
    - hosts that serve different releases (a deploy that failed part way, a rollback of
      some hosts): one release for all, the newest that passed a deploy on every host and
      is no newer than the oldest one served. The rollback ends with every host on it."""
    currents = {host: _current(rs) for host, rs in rows.items()}
    if wanted:
        for host, rs in rows.items():
            if not any(r == wanted for r, _, _ in rs):
                known = ", ".join(r for r, good, _ in rs if good) or "none"
                raise UsageError(f"{host}: no release {wanted} (good releases: {known})")
            if not any(good for r, good, _ in rs if r == wanted):
                raise UsageError(f"{host}: release {wanted} never passed a deploy; deploy instead")
        return {host: wanted for host in rows}
    if len(set(currents.values())) > 1:
        served = ", ".join(f"{h} {r or 'none'}" for h, r in currents.items())
        oldest = min((r for r in currents.values() if r), default="")
        good = [{r for r, ok, _ in rs if ok and r <= oldest} for rs in rows.values()]
        common = set.intersection(*good) if good else set()
        if not common:
            raise UsageError(f"hosts serve different releases ({served}) and none that passed "
                             "a deploy on every one of them is older: deploy instead")  # fmt: skip
        return {host: max(common) for host in rows}
    targets = {}
    for host, rs in rows.items():
        current = currents[host]
        older = [r for r, good, _ in rs if good and (not current or r < current)]
        if not older:
            raise UsageError(f"{host}: no good release before {current or 'none'} to roll back to")
        targets[host] = older[0]
    return targets


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


#: A shell word that sets a variable for the command (``TOKEN=... python -m x``).
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def command_name(command: str) -> str:
    """What the history keeps of a ``fab run`` command: its name (the first word that is
    not a variable's assignment), never its arguments or assignments, which may hold what
    was typed as a secret; a name with anything but letters, digits and ``._/+-`` in it is
    kept as ``?``."""
    try:
        words = shlex.split(command)
    except ValueError:  # an unclosed quote: the shell would refuse it too
        words = command.split()
    name = next((w for w in words if not _ASSIGNMENT.match(w)), "")
    return name if re.fullmatch(r"[A-Za-z0-9._/+-]+", name) else "?"


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
