"""The deploy as a list of steps, built from the config alone: pure, printable, testable.

A step is one shell command or one file upload on one host, with the
reason it is there. A deploy is phases of steps; the runner decides what a
failure means by the phase it happens in:

- lock: per host; a held lock stops everything before anything happens.
- prepare: apt, user, the release uploaded, its virtualenv, its configs
  validated. Nothing live is touched: a failure leaves a failed release dir.
- activate: ``current`` switched, configs linked, services reloaded, API
  workers restarted one at a time. From here a failure rolls back.
- verify: the smoke test through Nginx. A failure rolls back.
- finish: the release marked good, old releases removed.
- unlock: always.
"""

from dataclasses import dataclass
from pathlib import Path

from apiphant.deploy import commands, roles
from apiphant.deploy.config import Config, Host
from apiphant.deploy.render import HostFiles, Paths


@dataclass(frozen=True)
class Upload:
    """A file to put on a host: from memory or a local path, private when ``secret``."""

    remote: str
    mode: int
    label: str
    owner: str = "root"
    group: str = "root"
    content: bytes | None = None
    local: Path | None = None
    secret: bool = False

    @property
    def size(self) -> int:
        if self.content is not None:
            return len(self.content)
        return self.local.stat().st_size if self.local and self.local.exists() else 0


@dataclass(frozen=True)
class Step:
    """One command or upload on one host, and why."""

    host: str
    why: str
    command: str = ""
    upload: Upload | None = None
    switch: bool = False  # after this step the host serves ``release``
    timeout: int = 900
    kind: str = ""  # "lock": a failure means another deploy holds the lock


@dataclass(frozen=True)
class Plan:
    """The phases of a deploy (or a rollback), in order."""

    release: str
    hosts: tuple[str, ...]
    lock: tuple[Step, ...] = ()
    prepare: tuple[Step, ...] = ()
    activate: tuple[Step, ...] = ()
    verify: tuple[Step, ...] = ()
    finish: tuple[Step, ...] = ()
    unlock: tuple[Step, ...] = ()

    def phases(self) -> list[tuple[str, tuple[Step, ...]]]:
        return [
            ("lock", self.lock),
            ("prepare", self.prepare),
            ("activate", self.activate),
            ("verify", self.verify),
            ("finish", self.finish),
            ("unlock", self.unlock),
        ]

    def steps(self) -> list[Step]:
        return [step for _, steps in self.phases() for step in steps]


def lock_steps(config: Config, hosts: list[Host], holder: str) -> tuple[Step, ...]:
    paths = Paths(config.root, "")
    return tuple(
        Step(h.name, "take the deploy lock", commands.lock(paths, holder), timeout=60, kind="lock")
        for h in hosts
    )


def unlock_steps(config: Config, hosts: list[Host]) -> tuple[Step, ...]:
    paths = Paths(config.root, "")
    return tuple(
        Step(h.name, "release the deploy lock", commands.unlock(paths), timeout=60) for h in hosts
    )


def prepare_steps(
    config: Config,
    hosts: list[Host],
    release: str,
    tarball: Path,
    rendered: dict[str, HostFiles],
) -> tuple[Step, ...]:
    """Everything before the switch: nothing a live service reads is touched."""
    paths = Paths(config.root, release)
    steps = []
    for host in hosts:
        files = rendered[host.name]
        name = host.name
        remote_tarball = f"{paths.release}/release.tar.gz"
        steps += [
            Step(name, "apt packages", commands.apt_install(files.apt), timeout=1800),
            Step(name, f"system user {config.user}", commands.system_user(config.user, paths.root)),
            Step(name, "release folder", commands.make_release_dirs(paths, config.logs)),
            Step(
                name,
                "upload the release: product code, test.sh, apiphant wheel",
                upload=Upload(remote_tarball, 0o644, f"{tarball.name}", local=tarball),
            ),
            Step(name, "unpack the release", commands.extract(paths, remote_tarball)),
        ]
        for file_name, text in files.files.items():
            steps.append(
                Step(
                    name,
                    f"rendered {file_name}",
                    upload=Upload(
                        f"{paths.release}/config/{file_name}",
                        files.mode(file_name),
                        f"rendered {file_name}",
                        content=text.encode(),
                    ),
                )
            )
        if config.secrets and (host.has("api") or host.has("background")):
            steps.append(
                Step(
                    name,
                    # Root's, readable by the product's group: the product user cannot
                    # change what its programs start with (PYTHONPATH and the like).
                    "secrets, root's, readable by the product's group only",
                    upload=Upload(
                        paths.secrets,
                        0o640,
                        f"secrets {config.secrets}",
                        group=config.user,
                        local=config.secrets,
                        secret=True,
                    ),
                )
            )
        steps.append(
            Step(
                name,
                "virtualenv with apiphant and the product's requirements",
                commands.virtualenv(paths, config.python, config.product),
                timeout=1800,
            )
        )
        if "supervisor" in files.services:
            steps.append(
                Step(
                    name,
                    "check: Supervisor config",
                    commands.check_supervisor(paths, config.product),
                )
            )
        if "nginx" in files.services:
            steps.append(
                Step(
                    name,
                    "check: nginx -t, full config",
                    commands.check_nginx(
                        paths, config.product, files.unlinks, config.nginx.worker_rlimit_nofile
                    ),
                )
            )
        steps.append(Step(name, "check: logrotate config", commands.check_logrotate(paths)))
    return tuple(steps)


def _links(config: Config, host: Host, all_roles: dict[str, roles.Role]) -> tuple[dict, list]:
    """The links this host's roles make, and those to remove: the other roles' links, and
    what this host's roles unlink."""
    host_roles = roles.for_host(host, all_roles)
    used = roles.links(host_roles, config.product)
    every = roles.links(list(all_roles.values()), config.product)
    unused = set(every.values()) - set(used.values()) | set(roles.unlinks(host_roles))
    return used, sorted(unused)


def activate_steps(
    config: Config,
    hosts: list[Host],
    releases: dict[str, str],
    all_roles: dict[str, roles.Role],
) -> tuple[Step, ...]:
    """Make ``releases[host]`` live on each host: switch, link, reload, rolling restart.

    Hosts without Nginx go first, so the fronts switch once their backends have.
    """
    steps: list[Step] = []
    for host in sorted(hosts, key=lambda h: h.has("nginx")):
        paths = Paths(config.root, releases[host.name])
        used, unused = _links(config, host, all_roles)
        services = roles.services(roles.for_host(host, all_roles))
        steps.append(
            Step(
                host.name,
                f"make release {paths.release_id} current",
                commands.switch(paths, paths.release_id),
                switch=True,
            )
        )
        steps.append(
            Step(host.name, "link configs into /etc", commands.link(used, unused, paths.current))
        )
        if "supervisor" in services:
            steps.append(
                Step(host.name, "supervisord: reread, or start", commands.supervisor_ready())
            )
        if "nginx" in services:
            loaded = f"{paths.shared}/nginx-loaded.conf"
            nginx_files = [f"{paths.current}/config/{n}" for n in ("nginx-main.conf", "nginx.conf")]
            steps.append(
                Step(
                    host.name,
                    "nginx: reload if its config changed, or start",
                    commands.nginx_ready(nginx_files, loaded),
                )
            )
    steps += rolling_restart(config, hosts, releases, all_roles)
    for host in hosts:
        steps.append(
            Step(
                host.name,
                "supervisor: add and remove programs to match the config",
                commands.supervisor_sync(config.product, config.programs(host)),
            )
        )
    return tuple(steps)


def rolling_restart(
    config: Config,
    hosts: list[Host],
    releases: dict[str, str],
    all_roles: dict[str, roles.Role],
) -> list[Step]:
    """API workers one at a time, each healthy before the next; never all at once.

    Nginx is not reloaded for this: a reload makes its old workers close busy
    client connections, which a client reusing them sees as an error. Instead a
    restarting worker drains (it stops accepting, so Nginx's connects are refused
    and tried on the next worker, safe even for a create), and before the next
    worker restarts, Nginx has had ``fail_timeout`` to take the previous one back.
    """
    chosen = {h.name for h in hosts}
    pause = int(config.nginx.fail_timeout) + 1
    steps = []
    for host in hosts:
        release = releases[host.name]
        for worker in config.workers(host):
            if any(s.why.startswith("restart ") for s in steps):
                steps.append(
                    Step(
                        host.name,
                        f"wait {pause}s: Nginx takes the restarted worker back "
                        f"(fail_timeout {config.nginx.fail_timeout:g}s) before the next restarts",
                        f"sleep {pause}",
                    )
                )
            steps.append(
                Step(
                    host.name,
                    f"restart {worker.program}; wait for /health to answer release {release}",
                    commands.restart_worker(
                        worker.program,
                        worker.address,
                        release,
                        f"{config.logs}/{worker.program}.log",
                    ),
                )
            )
    runner = config.background_host()
    if runner is not None and runner.name in chosen:
        program = config.background_program
        steps.append(
            Step(
                runner.name,
                f"restart {program}",
                commands.restart_background(
                    program, releases[runner.name], f"{config.logs}/{program}.log"
                ),
            )
        )
    return steps


def verify_steps(config: Config, hosts: list[Host], releases: dict[str, str]) -> tuple[Step, ...]:
    """The product's test.py, through each front's Nginx; through the workers when no front
    is part of this deploy."""
    steps = []
    fronts = [h for h in hosts if h.has("nginx")]
    for host in fronts or [h for h in hosts if h.has("api")]:
        paths = Paths(config.root, releases[host.name])
        if host.has("nginx"):
            url, why = config.nginx.local_url, "smoke test through Nginx"
        else:
            url = "http://" + config.workers(host)[0].address
            why = "smoke test on the first worker (no Nginx host in this deploy)"
        steps.append(
            Step(
                host.name,
                f"{why}: test.sh {url}",
                commands.smoke_test(paths, paths.release_id, config.product, config.user, url),
            )
        )
    return tuple(steps)


def finish_steps(config: Config, hosts: list[Host], release: str) -> tuple[Step, ...]:
    paths = Paths(config.root, release)
    steps = []
    for host in hosts:
        steps.append(Step(host.name, f"mark release {release} good", commands.mark_good(paths)))
        steps.append(
            Step(
                host.name,
                f"keep the {config.keep_releases} newest good releases; failed ones go",
                commands.cleanup(paths, config.keep_releases),
            )
        )
    return tuple(steps)


def deploy_plan(
    config: Config,
    hosts: list[Host],
    release: str,
    tarball: Path,
    rendered: dict[str, HostFiles],
    holder: str,
    all_roles: dict[str, roles.Role] | None = None,
) -> Plan:
    all_roles = all_roles if all_roles is not None else roles.load_roles()
    releases = {h.name: release for h in hosts}
    return Plan(
        release=release,
        hosts=tuple(h.name for h in hosts),
        lock=lock_steps(config, hosts, holder),
        prepare=prepare_steps(config, hosts, release, tarball, rendered),
        activate=activate_steps(config, hosts, releases, all_roles),
        verify=verify_steps(config, hosts, releases),
        finish=finish_steps(config, hosts, release),
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
        release=",".join(sorted(set(releases.values()))),
        hosts=tuple(h.name for h in hosts),
        activate=activate_steps(config, hosts, releases, all_roles),
        verify=verify_steps(config, hosts, releases),
    )
