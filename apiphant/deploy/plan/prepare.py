"""The prepare phase: everything before the switch, which no live service reads; and which
hosts build the release's virtualenv and which receive a copy of it."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from shlex import quote as q

from apiphant.deploy import artifacts, render
from apiphant.deploy.config import Config, Host
from apiphant.deploy.host import backups, postgres
from apiphant.deploy.host.certbot import tls_dirs
from apiphant.deploy.host.configs import check_logrotate
from apiphant.deploy.host.nginx import check_nginx
from apiphant.deploy.host.releases import make_release_dirs
from apiphant.deploy.host.shell import join
from apiphant.deploy.host.supervisor import check_supervisor
from apiphant.deploy.host.system import apt_install, private_dir, system_user
from apiphant.deploy.host.venv import pack_venv, virtualenv, virtualenv_from_archive
from apiphant.deploy.layout import VENV_ARCHIVE, Paths
from apiphant.deploy.plan.activate import SUPERVISE
from apiphant.deploy.plan.steps import Download, Later, Step, Upload, merged, staged
from apiphant.deploy.render import HostFiles
from apiphant.deploy.tls import Files
from apiphant.deploy.wheelhouse import Platform


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


@dataclass(frozen=True)
class BackupKeys:
    """What the deploy read for the backups' copies (``dbfacts.backup_keys``): the postgres
    host's public key for pushing them, and the receiving host's SSH host key. ``push`` is
    a callable when that key does not exist yet: the prepare phase's first stage makes it,
    under the lock, and the receiving account's authorized_keys reads it when uploaded."""

    push: str | Callable[[], str]
    host: str

    @property
    def new(self) -> bool:
        """The push key is made by this deploy."""
        return callable(self.push)


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
    secrets: bytes | dict[str, bytes | Later] | None = None,
    new_password: bool = False,
    backup_keys: BackupKeys | None = None,
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
    (Nginx only) gets no code, no virtualenv, no secrets. ``secrets`` may differ by host
    (a dict by name): each has its own DATABASE_URL. The postgres host's last step makes or
    updates the database, which then runs before the release phase migrates it. When the
    database host had no password yet (``new_password``), a first stage makes it there,
    under the lock, before the secrets that hold it (``Later``) are uploaded."""
    layout = config.layout
    paths = layout.release(release)
    copies = copies or VenvCopies({}, Path())
    steps = []
    for host in hosts:
        files = rendered[host.name]
        name = host.name
        python = config.runs_python(host)
        setup = [
            ("apt packages", apt_install(files.apt)),
            (f"system user {layout.user}", system_user(layout)),
            ("release folder", make_release_dirs(paths, host.has("nginx"))),
        ]
        if tls_files is not None and host.has("nginx"):
            setup.append(("folder for the certificate, root's only",
                          private_dir(paths.tls)))  # fmt: skip
        if config.renews(host):
            setup.append(("certbot's folders and the ACME webroot", tls_dirs(layout)))
        if config.database_host() is not None and host != config.backup_copy_host():
            setup.append(("backups: no receiving account for copies here",
                          backups.no_receiver(layout)))  # fmt: skip
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
        own = secrets.get(name) if isinstance(secrets, dict) else secrets
        if (config.secrets or config.has_database()) and python:
            if own is None:
                raise ValueError(f"{name}: no secrets for it")  # the deploy read none
            label = f"secrets {config.secrets}" if config.secrets else "secrets"
            if config.has_database():
                label += " and DATABASE_URL"
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
                        label,
                        group=layout.user,
                        content=own,
                        secret=True,
                    ),
                )
            )
        if tls_files is not None and host.has("nginx"):
            steps += tls_file_steps(paths, tls_files, name)
        receivers = copies.builders.get(name, ())
        if python and not builder:
            venv = virtualenv(paths, config.python, config.product, packages,
                              wheels=not has_venv)  # fmt: skip
            why = "virtualenv with apiphant and the product's requirements"
            if receivers:
                venv = join(venv, pack_venv(paths, packages))
                why += f"; packed for {', '.join(receivers)}"
            steps.append(Step(name, why, venv, timeout=1800))
        checks = []
        if "supervisor" in files.services:
            checks.append(("check: Supervisor config", check_supervisor(paths)))
        if "nginx" in files.services:
            checks.append((
                "check: nginx -t, full config",
                check_nginx(
                    paths,
                    files.unlinks,
                    config.nginx.worker_rlimit_nofile,
                    layout.acme_fullchain if config.tls.acme else "",
                ),
            ))  # fmt: skip
        checks.append(("check: logrotate config", check_logrotate(paths)))
        steps.append(merged(name, checks))
        if host.has("postgres"):
            steps += database_steps(config, host, paths, backup_keys)
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
                                virtualenv_from_archive(paths, config.product, packages),
                                timeout=1800))  # fmt: skip
    # What the steps after it read from the database host (``Later``), made under the lock.
    first = []
    server = config.database_host()
    if server is not None and server in hosts:
        if new_password:
            first.append(Step(server.name, f"postgres: its password, made once in "
                              f"{layout.db_password} (not shown)",
                              postgres.make_password(layout)))  # fmt: skip
        if backup_keys is not None and backup_keys.new:
            first.append(Step(server.name, "backups: the key that pushes copies, made once in "
                              f"{layout.db_backup_key}",
                              backups.make_push_key(layout)))  # fmt: skip
    steps += backup_receiver_steps(config, hosts, backup_keys)
    # The backup loop last, once the database, its role and both ends of the copies are set.
    loop = [Step(h.name, f"backups: {layout.backup_program} running", backups.run_loop(layout),
                 timeout=120) for h in hosts if h.has("postgres")]  # fmt: skip
    return tuple(staged([first, steps, fetch, receive, loop]))


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


def database_steps(
    config: Config, host: Host, paths: Paths, keys: BackupKeys | None = None
) -> list[Step]:
    """The postgres host, last in its prepare: the cluster made once (initdb only into an
    empty folder), the release's configs copied to the database's own folder, its program
    started or left running and told to read them again, the product's role and database
    made once. Before the release phase, which migrates it; never a DROP, never the data."""
    layout = config.layout
    port = config.database.port
    return [
        Step(host.name, "the kit's Supervisor client", upload=Upload(
            layout.supervise, 0o644, "supervise.py", content=SUPERVISE)),
        merged(host.name, [
            (f"postgres: the cluster in {layout.db_data}, made once",
             postgres.make_cluster(layout)),
            ("postgres: its configs and program from this release",
             postgres.install_configs(layout, paths)),
            (f"postgres: {layout.database_program} running, its configs read again (restarted "
             "when a setting that takes a restart changed)",
             postgres.run_cluster(layout, port, render.restart_only(config))),
            (f"postgres: role and database {layout.db_name}, made once; its password from "
             f"{layout.db_password}", postgres.database_and_role(layout, port)),
            *backup_copy_setup(config, keys),
        ], timeout=600),
    ]  # fmt: skip


def backup_copy_setup(config: Config, keys: BackupKeys | None) -> list[tuple[str, str]]:
    """The postgres host's side of the copies: whose host key it trusts for them, or none."""
    copy = config.backup_copy_host()
    if copy is None or keys is None:
        return [("backups: kept on this host only", backups.no_copies(config.layout))]
    return [(f"backups: copies to {copy.name}, its host key known",
             backups.known_host(config.layout, copy.private_address or "",
                                config.ssh_port(copy), keys.host))]  # fmt: skip


def backup_receiver_steps(config: Config, hosts: list[Host], keys: BackupKeys | None) -> list[Step]:
    """The receiving host's side: its account, folder and receive script, then its one key,
    restricted, as an upload: read from the postgres host when uploaded if this deploy
    makes it (``BackupKeys.push``), so a dry run shows where it goes, never a key."""
    copy, server = config.backup_copy_host(), config.database_host()
    if copy is None or server is None or keys is None or copy not in hosts:
        return []
    layout, source = config.layout, server.private_address or ""
    user = layout.backup_program
    why = (f"backups: {server.name}'s copies kept here by {user}, whose one key stores them "
           "and does nothing else")  # fmt: skip
    command = backups.receiver(layout, config.database.keep_backups, source)
    push = keys.push
    line = (backups.receiver_key(layout, source, push).encode() if isinstance(push, str)
            else lambda: backups.receiver_key(layout, source, push()).encode())  # fmt: skip
    shown = backups.receiver_key(layout, source, f"<{server.name}'s key for copies>").strip()
    key = Upload(layout.db_receiver_keys, 0o644, f"{user}'s one key: {shown}", content=line)
    return [Step(copy.name, why, command, timeout=120),
            Step(copy.name, f"backups: {server.name}'s key for copies, restricted", upload=key)]
