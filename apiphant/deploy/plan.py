"""The deploy as a list of steps, built from the config alone: pure, printable, testable.

A step is one shell command or one upload on one host, or a command on the
deployer that reaches a host through an SSH tunnel (``Local``), with the reason
it is there. A deploy is phases of steps; the runner decides what a failure
means by the phase it happens in:

- lock: per host; a held lock stops everything before anything happens.
- prepare: apt, user, the release uploaded, its virtualenv, its configs
  validated; small commands with no decision between them run as one step.
  Nothing live is touched: a failure leaves a failed release dir.
- release: deploy.toml's ``release`` command (migrations), once, on one API
  host, in the new release. A failure stops the deploy; nothing live switched.
- activate: ``current`` switched, configs linked, services reloaded, API
  workers restarted one at a time. From here a failure rolls back.
- verify: the smoke test through Nginx. A failure rolls back.
- finish: the release marked good, old releases removed, ``after_deploy``
  (its failure is reported, never rolled back).
- unlock: always.

status, logs, unlock, run, maintenance and history are plans too: one phase
of steps, printable with ``--dry-run`` like a deploy.
"""

import sys
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from shlex import quote as q

from apiphant.deploy import artifacts, commands, roles
from apiphant.deploy.config import Config, Host, Pool, Worker
from apiphant.deploy.layout import VENV_ARCHIVE, Layout, Paths
from apiphant.deploy.render import HostFiles
from apiphant.deploy.tls import Files
from apiphant.deploy.wheelhouse import Platform

#: The kit's Supervisor client, uploaded to every host by every activation.
SUPERVISE = (resources.files("apiphant.deploy") / "supervise.py").read_bytes()
#: The kit's host agent (cleanup, rotation check), uploaded beside it.
AGENT = (resources.files("apiphant.deploy") / "agent.py").read_bytes()
#: The nginx role's rendered files: Nginx is reloaded when either changed.
NGINX_FILES = ("nginx-main.conf", "nginx.conf")


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
    #: An archive unpacked into the folder ``remote`` (its files root's, with their modes).
    unpack: bool = False

    @property
    def size(self) -> int:
        if self.content is not None:
            return len(self.content)
        return self.local.stat().st_size if self.local and self.local.exists() else 0


@dataclass(frozen=True)
class Download:
    """A file a host made, fetched to the deploying machine (``local``) for other hosts."""

    remote: str
    local: Path
    label: str


@dataclass(frozen=True)
class VenvCopies:
    """The hosts that get the release's virtualenv as another host of their platform built
    it: ``builders`` maps each host that builds one to the hosts that receive its copy, and
    each copy travels through ``folder`` on the deploying machine. The hosts of a platform
    with the same requirements take the same wheels (``wheelhouse.platform_tags``) into the
    same paths (one layout), so one build serves them all: a deploy to ten hosts builds one
    virtualenv, not ten."""

    builders: dict[str, tuple[str, ...]]
    folder: Path

    def source(self, host: str) -> str:
        """The host whose build ``host`` receives, or "" when it builds (or reuses) its own."""
        return next((b for b, receivers in self.builders.items() if host in receivers), "")

    def archive(self, builder: str) -> Path:
        return self.folder / f"{builder}-{VENV_ARCHIVE}"


def venv_copies(
    need: list[str],
    platforms: dict[str, Platform],
    rendered: dict[str, HostFiles],
    folder: Path,
    mode: str = "copy",
) -> VenvCopies:
    """The first host (in config order) of each platform among ``need`` (the hosts that
    lack the release's virtualenv) builds it; the others of its platform, with the same
    rendered requirements.txt, receive copies. With deploy.toml's ``venv = "build"``
    (``mode``) each builds its own."""
    groups: dict[tuple[Platform, str], list[str]] = {}
    for host in need if mode == "copy" else []:
        wants = rendered[host].files.get("requirements.txt", "")
        groups.setdefault((platforms[host], wants), []).append(host)
    builders = {hosts[0]: tuple(hosts[1:]) for hosts in groups.values() if len(hosts) > 1}
    return VenvCopies(builders, folder)


#: In a Local command's environment: the deployer's end of the SSH tunnel (127.0.0.1:PORT).
TUNNEL = "{tunnel}"


@dataclass(frozen=True)
class Local:
    """A command run on the deploying machine, about one host: while it runs, an SSH tunnel
    over that host's connection carries 127.0.0.1:PORT here (``{tunnel}`` in ``env``) to the
    host's own 127.0.0.1:``port``, its Nginx's loopback listener."""

    argv: tuple[str, ...]
    cwd: str
    port: int
    env: tuple[tuple[str, str], ...] = ()

    def shown(self, host: str) -> str:
        """The command as a shell line, and where the tunnel goes."""
        env = "".join(f"{k}={q(v)} " for k, v in self.env)
        line = " ".join(q(a) for a in self.argv)
        return (f"(on the deployer; {TUNNEL}: an SSH tunnel to {host}'s 127.0.0.1:{self.port}) "
                f"cd {q(self.cwd)} && {env}{line}")  # fmt: skip


@dataclass(frozen=True)
class Step:
    """One command or upload on one host (or a command on the deployer about it), and why."""

    host: str
    why: str
    command: str = ""
    upload: Upload | None = None
    local: Local | None = None
    download: Download | None = None
    switch: bool = False  # after this step the host serves ``release``
    timeout: int = 900
    #: "lock": a failure means another deploy holds the lock; "report": a failure is
    #: reported and the plan goes on; "passthrough": output and exit status are the user's.
    #: "reason": a failure ends with the last line the command wrote to stderr (its cause).
    kind: str = ""
    #: Within a phase, steps of one stage run host beside host (each host's in order), and
    #: a stage begins when the one before it has ended everywhere.
    stage: int = 0


def staged(stages: list[list[Step]]) -> list[Step]:
    """Stages in order, each step numbered with its stage; empty stages dropped."""
    numbered = [steps for steps in stages if steps]
    return [replace(step, stage=n) for n, steps in enumerate(numbered) for step in steps]


def stages(steps: tuple[Step, ...] | list[Step]) -> list[list[Step]]:
    """A phase's steps cut where the stage changes: what the runner runs one after another."""
    cut: list[list[Step]] = []
    for step in steps:
        if not cut or cut[-1][-1].stage != step.stage:
            cut.append([])
        cut[-1].append(step)
    return cut


@dataclass(frozen=True)
class Plan:
    """The phases of a deploy (or a rollback), in order."""

    release: str
    hosts: tuple[str, ...]
    lock: tuple[Step, ...] = ()
    prepare: tuple[Step, ...] = ()
    release_phase: tuple[Step, ...] = ()
    activate: tuple[Step, ...] = ()
    verify: tuple[Step, ...] = ()
    finish: tuple[Step, ...] = ()
    unlock: tuple[Step, ...] = ()

    def phases(self) -> list[tuple[str, tuple[Step, ...]]]:
        return [
            ("lock", self.lock),
            ("prepare", self.prepare),
            ("release", self.release_phase),
            ("activate", self.activate),
            ("verify", self.verify),
            ("finish", self.finish),
            ("unlock", self.unlock),
        ]

    def steps(self) -> list[Step]:
        return [step for _, steps in self.phases() for step in steps]


def lock_steps(config: Config, hosts: list[Host], holder: str) -> tuple[Step, ...]:
    layout = config.layout
    return tuple(
        Step(h.name, "take the deploy lock", commands.lock(layout, holder), timeout=60, kind="lock")
        for h in hosts
    )


def unlock_steps(config: Config, hosts: list[Host]) -> tuple[Step, ...]:
    return tuple(
        Step(h.name, "release the deploy lock", commands.unlock(config.layout), timeout=60)
        for h in hosts
    )


def prepare_steps(
    config: Config,
    hosts: list[Host],
    release: str,
    tarball: Path | None,
    rendered: dict[str, HostFiles],
    packages: str,
    tls_files: Files | None = None,
    code_only: tuple[Path | None, frozenset[str]] = (None, frozenset()),
    copies: VenvCopies | None = None,
    secrets: bytes | None = None,
) -> tuple[Step, ...]:
    """Everything before the switch: nothing a live service reads is touched. Per host: one
    script for the folders (apt, user, release folder), the code and the host's rendered
    files as one archive each, the secret uploads (``secrets``: the checked secrets file,
    ``config.check_secrets``, into the release), the virtualenv, one script of checks.
    ``packages`` names what the virtualenv holds (``wheelhouse.packages_key``): a release
    that installs the same as an earlier one links to its virtualenv, and the hosts that
    said they have it (``code_only``: an archive without wheels, and those hosts) get no
    wheels. Of the hosts of one platform that lack it, one builds it and the others receive
    its copy (``copies``): they get no wheels either, and unpack it once the builder's is
    on the deploying machine (two stages after the first). A host that runs no program
    (Nginx only) gets no code, no virtualenv, no secrets."""
    layout = config.layout
    paths = layout.release(release)
    copies = copies or VenvCopies({}, Path())
    steps = []
    for host in hosts:
        files = rendered[host.name]
        name = host.name
        python = config.runs_python(host)
        setup = [
            ("apt packages", commands.apt_install(files.apt)),
            (f"system user {layout.user}", commands.system_user(layout)),
            ("release folder", commands.make_release_dirs(paths, host.has("nginx"))),
        ]
        if tls_files is not None and host.has("nginx"):
            setup.append(("folder for the certificate, root's only",
                          commands.private_dir(paths.tls)))  # fmt: skip
        if config.renews(host):
            setup.append(("certbot's folders and the ACME webroot", commands.tls_dirs(layout)))
        steps.append(merged(name, setup, timeout=1800))
        has_venv = name in code_only[1]
        builder = copies.source(name)
        archive = code_only[0] if has_venv or builder else tarball
        if python and archive is None:
            raise ValueError(f"{name}: no release archive for it")  # the deploy built none
        if python:
            why = ("upload the release: product code (its virtualenv is on the host: no wheels)"
                   if has_venv else f"upload the release: product code (its virtualenv comes "
                   f"from {builder}, built there: no wheels)" if builder
                   else "upload the release: product code, apiphant and the wheels")  # fmt: skip
            steps.append(Step(name, why, upload=Upload(paths.dir, 0o644, archive.name,
                                                       group=layout.user, local=archive,
                                                       unpack=True)))  # fmt: skip
        listing = ", ".join(f"{n} {files.mode(n):04o}" for n in files.files)
        steps.append(
            Step(
                name,
                f"upload the rendered files, one archive: {', '.join(files.files)}",
                upload=Upload(
                    paths.config,
                    0o644,
                    f"{name}'s rendered files ({listing})",
                    content=artifacts.files_archive(
                        {n: (text.encode(), files.mode(n)) for n, text in files.files.items()},
                        release,
                    ),
                    unpack=True,
                ),
            )
        )
        if config.secrets and python:
            if secrets is None:
                raise ValueError(f"{name}: no secrets for it")  # the deploy read none
            steps.append(
                Step(
                    name,
                    # Root's, readable by the user's group: the product user cannot change
                    # what its programs start with (PYTHONPATH and the like). In the release,
                    # not shared: a rollback goes back to the secrets it ran with.
                    f"the release's secrets, root's, readable by {layout.user}'s group only",
                    upload=Upload(
                        paths.secrets,
                        0o640,
                        f"secrets {config.secrets}",
                        group=layout.user,
                        content=secrets,
                        secret=True,
                    ),
                )
            )
        if tls_files is not None and host.has("nginx"):
            steps += tls_file_steps(paths, tls_files, name)
        receivers = copies.builders.get(name, ())
        if python and not builder:
            venv = commands.virtualenv(paths, config.python, config.product, packages,
                                       wheels=not has_venv)  # fmt: skip
            why = "virtualenv with apiphant and the product's requirements"
            if receivers:
                venv = commands.join(venv, commands.pack_venv(paths, packages))
                why += f"; packed for {', '.join(receivers)}"
            steps.append(Step(name, why, venv, timeout=1800))
        checks = []
        if "supervisor" in files.services:
            checks.append(("check: Supervisor config", commands.check_supervisor(paths)))
        if "nginx" in files.services:
            checks.append((
                "check: nginx -t, full config",
                commands.check_nginx(
                    paths,
                    files.unlinks,
                    config.nginx.worker_rlimit_nofile,
                    layout.acme_fullchain if config.tls.acme else "",
                ),
            ))  # fmt: skip
        checks.append(("check: logrotate config", commands.check_logrotate(paths)))
        steps.append(merged(name, checks))
    fetch, receive = [], []
    for builder, receivers in copies.builders.items():
        local = copies.archive(builder)
        fetch.append(Step(builder, f"download its virtualenv for {', '.join(receivers)}",
                          download=Download(paths.venv_archive, local, "the virtualenv")))
        fetch.append(Step(builder, "remove the virtualenv's archive",
                          f"rm -f {q(paths.venv_archive)}"))  # fmt: skip
        for name in receivers:
            receive.append(Step(name, f"upload the virtualenv {builder} built",
                                upload=Upload(paths.venv_archive, 0o600, f"{builder}'s virtualenv",
                                              local=local)))  # fmt: skip
            receive.append(Step(name, f"virtualenv: unpack {builder}'s",
                                commands.virtualenv_from_archive(paths, config.product, packages),
                                timeout=1800))  # fmt: skip
    return tuple(staged([steps, fetch, receive]))


def merged(host: str, parts: list[tuple[str, str]], timeout: int = 900) -> Step:
    """Small commands with no decision between them as one step: one round trip instead of
    one each. Its why names every part, in order; the first that fails stops the rest."""
    return Step(
        host, "; ".join(why for why, _ in parts), commands.join(*(c for _, c in parts)),
        timeout=timeout,
    )  # fmt: skip


def tls_file_steps(paths: Paths, files: Files, host: str) -> list[Step]:
    """tls = "files": the chain and its issuer, and the key: 0600, root's (Nginx's master reads
    it as root), a secret upload whose content is never shown. Their folder, root's only, is
    made with the release folder."""
    return [
        Step(host, "certificate chain", upload=Upload(
            paths.tls_fullchain, 0o644, f"certificate {files.cert_path}", content=files.fullchain)),
        Step(host, "the certificate's issuer (the smoke test's trust)", upload=Upload(
            paths.tls_issuer, 0o644, f"issuer of {files.cert_path}", content=files.issuer)),
        Step(host, "private key, mode 0600, root's", upload=Upload(
            paths.tls_key, 0o600, f"private key {files.key_path}", content=files.key,
            secret=True)),
    ]  # fmt: skip


def release_phase_steps(config: Config, hosts: list[Host], release: str) -> tuple[Step, ...]:
    """deploy.toml's ``release`` command, once, on the first API host, in the new release."""
    runner = next((h for h in hosts if h.has("api")), None)
    if not config.release_command or runner is None:
        return ()
    paths = config.layout.release(release)
    return (
        Step(
            runner.name,
            f"release command, once, in release {release}: {config.release_command}",
            commands.in_release(paths.dir, config.layout.user, config.release_command),
            timeout=3600,
        ),
    )


def _links(config: Config, host: Host, all_roles: dict[str, roles.Role]) -> tuple[dict, list]:
    """The links this host's roles make, and those to remove: the other roles' links, and
    what this host's roles unlink."""
    layout = config.layout
    host_roles = roles.for_host(config.role_names(host), all_roles)
    used = roles.links(host_roles, layout)
    every = roles.links(list(all_roles.values()), layout)
    unused = set(every.values()) - set(used.values()) | set(roles.unlinks(host_roles, layout))
    return used, sorted(unused)


def activate_steps(
    config: Config,
    hosts: list[Host],
    releases: dict[str, str],
    all_roles: dict[str, roles.Role],
    obtain: bool = True,
) -> tuple[Step, ...]:
    """Make ``releases[host]`` live on each host: switch, link, reload, rolling restart.

    In stages, hosts side by side within each: hosts without Nginx switch first, then the
    fronts, so a front switches once its backends have; then the rolling restart; then
    Supervisor's programs are matched to the config. With tls = "acme" each front gets its
    certificate before its 443 server goes live (not on a rollback, ``obtain=False``: the
    release it goes back to was served before).
    """
    layout = config.layout
    switch_stages: list[list[Step]] = [[], []]
    for host in hosts:
        steps = switch_stages[host.has("nginx")]
        paths = layout.release(releases[host.name])
        used, unused = _links(config, host, all_roles)
        services = roles.services(roles.for_host(config.role_names(host), all_roles))
        steps.append(
            Step(
                host.name,
                f"make release {paths.release_id} current",
                commands.switch(paths),
                switch=True,
            )
        )
        if obtain and config.renews(host):
            steps.append(obtain_step(config, host, used, all_roles))
        steps.append(
            Step(
                host.name,
                "link configs into /etc",
                commands.link(used, unused, layout.current_config),
            )
        )
        if config.tls.on and host.has("nginx"):
            steps.append(Step(host.name, "check: nginx -t, with the certificate",
                              commands.nginx_check_live()))  # fmt: skip
        # Every host: one that lost its programs' roles has them removed by it (the sync).
        steps.append(Step(host.name, "the kit's Supervisor client", upload=Upload(
            layout.supervise, 0o644, "supervise.py", content=SUPERVISE)))  # fmt: skip
        steps.append(agent_step(layout, host.name))
        if "supervisor" in services:
            steps.append(Step(host.name, "supervisord: start if not running",
                              commands.supervisor_ready(layout)))  # fmt: skip
        if "nginx" in services:
            nginx_files = [f"{layout.current_config}/{n}" for n in NGINX_FILES]
            steps.append(
                Step(
                    host.name,
                    "nginx: reload if its config changed, or start",
                    commands.nginx_ready(nginx_files, layout.nginx_loaded),
                )
            )
    sync = [
        Step(
            host.name,
            "supervisor: add and remove programs to match the config",
            commands.supervisor_sync(layout, config.programs(host)),
        )
        for host in hosts
    ]
    restarts, checks = rolling_restart(config, hosts, releases)
    # A host's steps of one stage run in order: the runner's check before its host's sync.
    return tuple(staged([*switch_stages, *restarts, checks + sync]))


def agent_step(layout: Layout, host: str) -> Step:
    """The kit's host agent onto ``host``, before a step there runs it: this deploy's, as a
    host may have an older kit's."""
    return Step(host, "the kit's host agent", upload=Upload(
        layout.agent, 0o644, "agent.py", content=AGENT))  # fmt: skip


def obtain_step(
    config: Config, host: Host, used: dict[str, str], all_roles: dict[str, roles.Role]
) -> Step:
    """certbot through Nginx (HTTP-01); the first time, Nginx serves port 80 alone first."""
    layout = config.layout
    http_site = {("nginx-http.conf" if n == "nginx.conf" else n): target
                 for n, target in used.items() if n in NGINX_FILES}  # fmt: skip
    first = [f"{layout.current_config}/{n}" for n in ("nginx-main.conf", "nginx-http.conf")]
    unlinks = roles.unlinks(roles.for_host(config.role_names(host), all_roles), layout)
    return Step(
        host.name,
        f"certificate for {', '.join(config.tls.domains)} from {config.tls.acme_server} "
        "(certbot, HTTP-01 through Nginx)",
        commands.obtain_certificate(layout, config.tls, http_site, unlinks, first),
        timeout=600,
        kind="reason",
    )


def batches(config: Config, hosts: list[Host]) -> list[list[list[Worker]]]:
    """The chosen workers in batches, ``[group][batch] -> workers``: pools that share a
    host restart as one group (a worker restarts once), groups side by side. A batch is
    ``config.batch`` of the group's smallest pool, so it never holds a whole pool."""
    chosen = {h.name for h in hosts}
    groups: list[tuple[set[str], list[Pool]]] = []
    for pool in config.pools:
        joined = [g for g in groups if g[0] & set(pool.hosts)]
        merged = (set(pool.hosts).union(*(g[0] for g in joined)),
                  [p for g in joined for p in g[1]] + [pool])  # fmt: skip
        groups = [g for g in groups if g not in joined] + [merged]
    every = []
    for _, pools in sorted(groups, key=lambda g: config.pools.index(g[1][0])):
        size = min(config.batch.size(len(config.pool_workers(p))) for p in pools)
        workers = list({w.address: w for p in pools for w in config.pool_workers(p)}.values())
        mine = [w for w in workers if w.host in chosen]
        every.append([mine[i : i + size] for i in range(0, len(mine), size)])
    return every


def rolling_restart(
    config: Config, hosts: list[Host], releases: dict[str, str]
) -> tuple[list[list[Step]], list[Step]]:
    """The API workers in batches per pool, pools side by side (``batches``); never a whole
    pool at once. Returns the stages, and the steps that check afterwards what they only
    started: the background runner serves no traffic, so its start (Supervisor's
    ``startsecs`` until RUNNING, a second) holds up no batch.

    A batch's workers restart together, each host's in one step, and each is checked on
    its own /health until it answers the new release; then every front's Nginx must send
    it requests again (``commands.in_rotation``) before the pool's next batch restarts.
    Nginx is not reloaded for this: a reload makes its old workers close busy client
    connections, which a client reusing them sees as an error. Instead a restarting worker
    drains (it stops accepting, so Nginx's connects are refused and tried on the next
    worker, safe even for a create), and Nginx takes it back at most ``back_within``
    seconds after a refusal: the check waits for exactly that, and not at all when nothing
    was refused.
    """
    layout = config.layout
    nginx = config.nginx
    fronts = [h for h in config.hosts if h.has("nginx")]
    pools_of: dict[str, list[str]] = {}
    workers_of: dict[str, list[Worker]] = {}
    for pool in config.pools:
        workers_of[pool.name] = config.pool_workers(pool)
        for w in workers_of[pool.name]:
            pools_of.setdefault(w.address, []).append(pool.name)
    groups = batches(config, hosts)
    # The background runner restarts beside the first batch restarted on its host, or in
    # the first stage on a host of its own; it is checked once the batches are done.
    beside: dict[str, tuple[str, str]] = {}
    checks: list[Step] = []
    runner = config.background_host()
    if runner is not None and runner.name in {h.name for h in hosts}:
        program, release = layout.background, releases[runner.name]
        beside[runner.name] = (f"restart {program} (checked after the batches)",
                               commands.restart_background(layout, program, release,
                                                           layout.log(program), wait=False))
        checks.append(Step(runner.name, f"{program} runs release {release}",
                           commands.restart_background(layout, program, release,
                                                       layout.log(program))))  # fmt: skip
    stages: list[list[Step]] = []
    # A front outside this deploy checks the rotation too: with the agent of this deploy.
    outside = [front for front in fronts if front.name not in releases]
    for n in range(max((len(g) for g in groups), default=0)):
        batch = [w for group in groups if n < len(group) for w in group[n]]
        restarts = []
        for host in hosts:
            mine = [w for w in batch if w.host == host.name]
            if not mine:
                continue
            release = releases[host.name]
            why = (f"restart {', '.join(w.program for w in mine)}; "
                   f"wait for /health to answer release {release}")  # fmt: skip
            also = beside.pop(host.name, None)
            restarts.append(Step(
                host.name,
                f"{why}; {also[0]}" if also else why,
                commands.restart_workers(
                    layout, [(w.program, w.address, layout.log(w.program)) for w in mine], release,
                    [also[1]] if also else []),
            ))  # fmt: skip
        stages.append(restarts)
        uploads = [agent_step(layout, front.name) for front in outside] if n == 0 else []
        stages.append(uploads + [
            Step(
                front.name,
                f"Nginx sends requests to {', '.join(w.address for w in batch)} again "
                f"(at most {nginx.back_within}s after a refusal)",
                commands.join(*[
                    commands.in_rotation(layout, nginx.rotation_url(pool), nginx.rotation_host,
                                         nginx.rotation_header, w.address, nginx.back_within,
                                         rounds=len(workers_of[pool]))
                    for w in batch for pool in pools_of[w.address]
                ]),
                timeout=(nginx.back_within + 10) * len(batch) * len(config.pools) + 60,
            )
            for front in fronts
        ])  # fmt: skip
    for name, (why, command) in beside.items():
        if not stages:
            stages.append([])
        stages[0].append(Step(name, why, command))
    return stages, checks


def verify_steps(
    config: Config,
    hosts: list[Host],
    releases: dict[str, str],
    https: bool = True,
    rollback: bool = False,
) -> tuple[Step, ...]:
    """The product's test.py, through each front's Nginx loopback listener, and on every API
    host without Nginx, on its first worker: a front's Nginx spreads the test's requests
    over its pools, so an API host whose release cannot serve could pass unseen. A front
    that runs the product's programs runs it itself, in the release; an Nginx-only front has
    no Python: the deployer runs this repository's test.py (what the release holds) through
    an SSH tunnel to it. With TLS on, /health over HTTPS too, by each domain (not after a
    rollback, ``https=False``: the release gone back to may have served plain HTTP).

    After a rollback (``rollback``) the deployer's test.py may test what only the failed
    release has: an Nginx-only front is checked by /health through the tunnel, and each API
    host gone back runs its own release's test.py on its first worker."""
    steps = []
    fronts = [h for h in hosts if h.has("nginx")]
    backends = [h for h in hosts if h.has("api") and not h.has("nginx")]
    for host in fronts:
        paths = config.layout.release(releases[host.name])
        if config.runs_python(host):
            url, why = config.nginx.local_url, "smoke test through Nginx"
            steps.append(Step(host.name, f"{why}: {config.product}/test.py {url}",
                              commands.smoke_test(paths, config.product, url)))  # fmt: skip
        elif rollback:
            steps.append(tunnel_health(config, host))
        else:
            steps.append(tunnel_smoke_test(config, host))
        if https and config.tls.on:
            issuer = config.layout.acme_chain if config.tls.acme else paths.tls_issuer
            for domain in config.tls.domains:
                steps.append(Step(
                    host.name,
                    f"smoke test over HTTPS: {domain}, its chain verified against its issuer",
                    commands.https_check(config.tls, domain, issuer, releases[host.name]),
                ))  # fmt: skip
    for host in backends:
        paths = config.layout.release(releases[host.name])
        url = "http://" + config.workers(host)[0].address
        why = ("smoke test on the first worker (no Nginx host in this deploy)" if not fronts
               else "smoke test of the release gone back to, on the first worker" if rollback
               else "smoke test of this API host, on its first worker")  # fmt: skip
        steps.append(Step(host.name, f"{why}: {config.product}/test.py {url}",
                          commands.smoke_test(paths, config.product, url)))  # fmt: skip
    return tuple(steps)


#: The URL the smoke test reaches an Nginx-only front by, from the deployer.
TUNNEL_URL = f"http://{TUNNEL}"
#: /health through the tunnel: the front answers, from a worker, with some release (or with
#: status ok alone, from workers that do not trust the front to name the deployment).
HEALTH_SCRIPT = (
    'import json, os, urllib.request; url = os.environ["APIPHANT_URL"] + "/health"; '
    "answer = json.load(urllib.request.urlopen(url, timeout=10)); "
    'assert answer["status"] == "ok", answer; '
    'print(url, "answers", "release " + answer["release"] if "release" in answer else "ok")'
)


def tunnel_smoke_test(config: Config, host: Host) -> Step:
    """An Nginx-only front's smoke test: the deployer's Python (it runs this deploy, so it
    has apiphant) runs the product's test.py, from the product folder the release was built
    from, against the front's loopback listener through an SSH tunnel."""
    product = config.product_dir
    return Step(
        host.name,
        f"smoke test through Nginx, from the deployer: {config.product}/test.py "
        f"through an SSH tunnel to {host.name}'s {config.nginx.local_url}",
        local=Local((sys.executable, f"{product.name}/test.py"), str(product.parent),
                    config.nginx.local_port, (("APIPHANT_URL", TUNNEL_URL),)),
    )  # fmt: skip


def tunnel_health(config: Config, host: Host) -> Step:
    """After a rollback, an Nginx-only front: it answers /health through its Nginx."""
    return Step(
        host.name,
        f"check through Nginx, from the deployer: /health through an SSH tunnel to "
        f"{host.name}'s {config.nginx.local_url}",
        local=Local((sys.executable, "-c", HEALTH_SCRIPT), str(config.product_dir.parent),
                    config.nginx.local_port, (("APIPHANT_URL", TUNNEL_URL),)),
    )  # fmt: skip


def finish_steps(config: Config, hosts: list[Host], release: str) -> tuple[Step, ...]:
    layout = config.layout
    paths = layout.release(release)
    steps = []
    for host in hosts:
        steps.append(Step(host.name, f"mark release {release} good", commands.mark_good(paths)))
        steps.append(
            Step(
                host.name,
                f"keep the {config.keep_releases} newest good releases; failed ones go",
                commands.cleanup(layout, config.keep_releases),
            )
        )
    after = []
    runner = next((h for h in hosts if h.has("api")), None)
    if config.after_deploy and runner is not None:
        after.append(
            Step(
                runner.name,
                f"after_deploy, once: {config.after_deploy}",
                commands.in_release(paths.dir, layout.user, config.after_deploy),
                timeout=3600,
                kind="report",
            )
        )
    # Hosts side by side; after_deploy once every host has marked the release good.
    return tuple(staged([steps, after]))


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
    secrets: bytes | None = None,
) -> Plan:
    all_roles = all_roles if all_roles is not None else roles.load_roles()
    releases = {h.name: release for h in hosts}
    return Plan(
        release=release,
        hosts=tuple(h.name for h in hosts),
        lock=lock_steps(config, hosts, holder),
        prepare=prepare_steps(config, hosts, release, tarball, rendered, packages, tls_files,
                              code_only, copies, secrets),  # fmt: skip
        release_phase=release_phase_steps(config, hosts, release),
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
        activate=activate_steps(config, hosts, releases, all_roles, obtain=False),
        verify=verify_steps(config, hosts, releases, https=False, rollback=True),
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
    return tuple(
        Step(
            h.name,
            "status",
            commands.status(config.layout, [(w.program, w.address) for w in config.workers(h)],
                            certificates(config, h)),  # fmt: skip
            timeout=60,
            kind="passthrough",
        )
        for h in hosts
    )


def logs_plan(config: Config, hosts: list[Host], lines: int, follow: bool) -> tuple[Step, ...]:
    layout = config.layout
    return tuple(
        Step(
            h.name,
            f"logs in {layout.logs}",
            commands.tail_logs(layout, lines, follow),
            timeout=24 * 3600 if follow else 120,
            kind="passthrough",
        )
        for h in hosts
    )


def unlock_plan(config: Config, hosts: list[Host]) -> tuple[Step, ...]:
    return tuple(
        Step(h.name, "remove the deploy lock", commands.unlock(config.layout), timeout=60)
        for h in hosts
    )


def run_plan(config: Config, hosts: list[Host], command: str) -> tuple[Step, ...]:
    """A one-off command in the current release, as the product user, with its environment."""
    layout = config.layout
    return tuple(
        Step(
            h.name,
            f"run in the current release as {layout.user}: {command}",
            commands.in_release(layout.current, layout.user, command),
            timeout=24 * 3600,
            kind="passthrough",
        )
        for h in hosts
    )


def maintenance_plan(config: Config, hosts: list[Host], on: bool) -> tuple[Step, ...]:
    return tuple(
        Step(
            h.name,
            f"maintenance {'on' if on else 'off'}",
            commands.maintenance(config.layout, on),
            timeout=60,
        )
        for h in hosts
        if h.has("nginx")
    )


def history_plan(config: Config, hosts: list[Host], lines: int) -> tuple[Step, ...]:
    return tuple(
        Step(h.name, "history", commands.history(config.layout, lines), timeout=60,
             kind="passthrough")
        for h in hosts
    )  # fmt: skip


def record_steps(config: Config, hosts: list[Host], line: str) -> tuple[Step, ...]:
    """One line in each host's audit log (never fails the task it records)."""
    return tuple(
        Step(h.name, "record in the host's history", commands.record(config.layout, line),
             timeout=60, kind="report")
        for h in hosts
    )  # fmt: skip
