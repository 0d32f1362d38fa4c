"""What a new user does, end to end: pip install apiphant, `apiphant new shop`, deploy it.

A fresh virtualenv gets a non-editable install of this checkout with the
deploy extra (as `pip install apiphant[deploy]` would); `apiphant new shop`
writes a repository outside the checkout, which is committed with git. From
inside it, with no --product: `fab deploy` over a real sshd as a non-root
user in the sudo group (passwordless sudo), with a release command; `fab
run`, `fab maintenance --on/--off` through Nginx, `fab history`; a second
environment (deploy.staging.toml) deployed as root over another sshd to the
same machine, its folders, programs, site, system user and secrets its own; a
second production deploy and `fab rollback`. The release holds the files git
tracks, none of the untracked or ignored ones beside them. The product's own
test.py passes against the deployed Nginx. The machine is left as the test
found it.
"""

import grp
import http.client
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.deploy_helpers import CHECKOUT, HostCleanup, Sshd, free_port, free_ports, run

PRODUCT = "shop"
LOGIN = "apiphantdeployer"
SUDOERS = Path(f"/etc/sudoers.d/{LOGIN}")
NEEDS = ("/usr/sbin/sshd", "/usr/sbin/nginx", "/usr/bin/supervisord", "/usr/bin/sudo", "git")
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="deploys to this machine as root"),
    pytest.mark.skipif(
        not all(shutil.which(p) or Path(p).exists() for p in NEEDS),
        reason="needs sshd, nginx, supervisor, sudo and git",
    ),
]

MIGRATE = '''\
"""The release command of the test: one line per run, with the release it ran in."""

import os

with open(os.environ["MIGRATIONS"], "a") as log:
    log.write(os.environ["APIPHANT_RELEASE"] + "\\n")
'''


class Deployer:
    """The new user's machine: a virtualenv with apiphant installed, the shop repository."""

    def __init__(self, folder: Path, ssh: Sshd, root_ssh: Sshd) -> None:
        self.folder = folder
        self.key = ssh.key
        self.root_key = root_ssh.key
        self.venv = folder / "venv"
        self.repo = folder / "work" / PRODUCT
        self.migrations = Path(f"/var/tmp/apiphant-test-migrations-{os.getpid()}.log")
        # Staging's own: its user may not write production's files.
        self.staging_migrations = self.migrations.with_name(f"{self.migrations.stem}-staging.log")
        self.secrets = folder / "shop.secrets.env"
        self.staging_secrets = folder / "shop-staging.secrets.env"
        self.ports = {
            "nginx": free_port(),
            "local": free_port(),
            "first": free_ports(2),
            "staging nginx": free_port(),
            "staging local": free_port(),
            "staging first": free_ports(1),
        }
        self.ssh_port, self.root_ssh_port = ssh.port, root_ssh.port

    def install(self) -> None:
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True, timeout=120)
        done = subprocess.run(
            [str(self.venv / "bin" / "pip"), "install", "-q", f"{CHECKOUT}[deploy]"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    def shell(self, *args: str, cwd: Path | None = None, timeout: float = 120):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL"))}
        env["PATH"] = f"{self.venv / 'bin'}:{env.get('PATH', '')}"
        done = subprocess.run(list(args), cwd=cwd or self.repo, capture_output=True, text=True,
                              timeout=timeout, env=env)  # fmt: skip
        print(f"$ {' '.join(args)}\n{done.stdout}{done.stderr}(exit {done.returncode})")
        return done

    def fab(self, *args: str, key: Path | None = None, timeout: float = 600):
        key = key or self.key
        return self.shell("fab", "-i", str(key), *args, timeout=timeout)

    def create(self) -> None:
        (self.folder / "work").mkdir()
        made = self.shell("apiphant", "new", PRODUCT, str(self.folder / "work"), cwd=self.folder)
        assert made.returncode == 0, made.stderr
        (self.repo / "migrate.py").write_text(MIGRATE)
        (self.repo / "private_notes.json").write_text('{"internal": true}\n')
        (self.repo / "private_notes.json").chmod(0o600)
        self.secrets.write_text(f"SHOP_TOKEN={PRODUCTION_SECRET}\n")
        self.staging_secrets.write_text("SHOP_TOKEN=staging-token\n")
        p = self.ports
        toml = (self.repo / "deploy.toml").read_text()
        for old, new in (
            ('# user = "root" ', f'user = "{LOGIN}" '),
            ('# secrets = "~/.config/apiphant/shop.secrets.env"', f'secrets = "{self.secrets}"'),
            ('# release = "python -m shop.migrate"', 'release = "python -m shop.migrate"'),
            ('ssh = "root@203.0.113.10"', f'ssh = "127.0.0.1:{self.ssh_port}"'),
            ('listen = "80"', f'listen = "127.0.0.1:{p["nginx"]}"\nlocal_port = {p["local"]}'),
            ("first_port = 8001", f"first_port = {p['first']}"),
            ('APIPHANT_LOG_LEVEL = "INFO"',
             f'APIPHANT_LOG_LEVEL = "INFO"\nMIGRATIONS = "{self.migrations}"'),
        ):  # fmt: skip
            assert old in toml, old
            toml = toml.replace(old, new)
        (self.repo / "deploy.toml").write_text(toml)
        (self.repo / "deploy.staging.toml").write_text(textwrap.dedent(f"""\
            # staging: as root, over another sshd; shop-staging's own folders and programs
            server_names = ["staging.example.com"]
            after_deploy = "echo warming; false"
            secrets = "{self.staging_secrets}"
            [environment]
            MIGRATIONS = "{self.staging_migrations}"
            [nginx]
            listen = "127.0.0.1:{p["staging nginx"]}"
            local_port = {p["staging local"]}
            [hosts.web1]
            ssh = "root@127.0.0.1:{self.root_ssh_port}"
            workers = 1
            first_port = {p["staging first"]}
            """))  # fmt: skip
        self.commit("shop, as apiphant new made it, with a release command")
        # Beside the commit, as on a developer's machine: never part of a release.
        for name, text in UNSHIPPED.items():
            (self.repo / name).parent.mkdir(parents=True, exist_ok=True)
            (self.repo / name).write_text(text)

    def commit(self, message: str, *paths: str) -> None:
        """Commit ``paths`` (all there is when none are named)."""
        git = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com"]
        if not (self.repo / ".git").exists():
            assert self.shell("git", "init", "-q").returncode == 0
        assert self.shell("git", "add", "-A", "--", *paths).returncode == 0
        assert self.shell(*git, "commit", "-q", "-m", message).returncode == 0

    def head(self) -> str:
        return self.shell("git", "rev-parse", "--short=12", "HEAD").stdout.strip()


PRODUCTION_SECRET = "production-token-4711"
#: Untracked (notes, a staging secrets file) and ignored (.gitignore as `apiphant new` writes
#: it: a key, an env file, the rendered configs the generated README suggests).
UNSHIPPED = {
    "notes-local.txt": "the admin password is ...\n",
    "secrets.staging.env": "TOKEN=staging\n",
    "tls/privkey.pem": "-----BEGIN PRIVATE KEY-----\n",
    ".env.production": "TOKEN=production\n",
    "rendered/web1/run": "#!/bin/sh\n",
}


def user_of(program: str) -> str:
    pid = run(f"supervisorctl pid {program}").stdout.strip()
    return run(f"ps -o user= -p {pid}").stdout.strip()


def post(port: int, path: str, host: str, body: bytes = b"{}") -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body, {"Host": host})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        conn.close()


def released(output: str) -> str:
    match = re.search(r"release (\d{14}) is live", output)
    assert match, output[-3000:]
    return match.group(1)


def allow_sudo() -> None:
    """Passwordless sudo for the login, as a cloud image has."""
    SUDOERS.write_text(f"{LOGIN} ALL=(ALL) NOPASSWD:ALL\n")
    SUDOERS.chmod(0o440)


@pytest.fixture(scope="module")
def deployer(tmp_path_factory: pytest.TempPathFactory):
    cleanup = HostCleanup(PRODUCT, envs=("staging",))
    clash = cleanup.clashes()
    if clash:
        pytest.skip(clash)
    if run(f"id -u {LOGIN}").returncode == 0:
        pytest.skip(f"user {LOGIN} exists, not touched")
    folder = tmp_path_factory.mktemp("newuser")
    made_user = False
    try:
        # A non-root login in the sudo group with passwordless sudo, as a cloud image has.
        assert run(f"useradd --create-home --shell /bin/bash --groups sudo {LOGIN}").returncode == 0
        made_user = True
        run(f"usermod -p '*' {LOGIN}")  # no password, not locked: key login only
        allow_sudo()
        with Sshd(folder / "ssh") as ssh, Sshd(folder / "ssh-root") as root_ssh:
            home = Path(pwd.getpwnam(LOGIN).pw_dir)
            (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
            key = (ssh.folder / "client_key.pub").read_text()
            (home / ".ssh" / "authorized_keys").write_text(key)
            shutil.chown(home / ".ssh", LOGIN, LOGIN)
            shutil.chown(home / ".ssh" / "authorized_keys", LOGIN, LOGIN)
            user = Deployer(folder, ssh, root_ssh)
            user.install()
            user.create()
            yield user
    finally:
        cleanup()
        SUDOERS.unlink(missing_ok=True)
        if made_user:
            run(f"userdel --remove {LOGIN}")
        for log in ("", "-staging"):
            Path(f"/var/tmp/apiphant-test-migrations-{os.getpid()}{log}.log").unlink(missing_ok=True)


def test_a_new_user_deploys_their_own_repository_as_a_sudo_user(deployer: Deployer) -> None:
    p = deployer.ports
    listed = deployer.shell("fab", "--list")
    assert all(f"  {t} " in listed.stdout for t in ("deploy", "run", "maintenance", "history"))

    # 1. The first deploy, from the repository, no --product, as the sudo user.
    first = deployer.fab("deploy")
    assert first.returncode == 0, first.stdout[-4000:]
    r1 = released(first.stdout)
    assert f"logged in as {LOGIN}: commands run as root through sudo" in first.stdout
    assert "packing the installed apiphant" in first.stdout  # not a checkout: the installed one
    assert deployer.migrations.read_text().splitlines() == [r1]  # the release phase, once
    # The release holds what git tracks, as in the working tree; nothing else beside it.
    release = Path(f"/opt/shop/releases/{r1}/shop")
    tracked = deployer.shell("git", "ls-files").stdout.split()
    shipped = sorted(str(f.relative_to(release)) for f in release.rglob("*")
                     if f.is_file() and "__pycache__" not in f.parts)  # fmt: skip
    assert shipped == sorted(tracked)
    assert "not shipped, as git does not track them: 2 files in shop/" in first.stdout
    private = (release / "private_notes.json").stat()  # 0600 here: the shop group's only there
    assert stat.S_IMODE(private.st_mode) == 0o640 and private.st_gid == grp.getgrnam("shop").gr_gid
    secrets = Path(f"/opt/shop/releases/{r1}/config/secrets.env")
    assert secrets.read_text() == f"SHOP_TOKEN={PRODUCTION_SECRET}\n"
    assert PRODUCTION_SECRET not in first.stdout
    status, _, body = post(p["nginx"], "/api/v0/echo/read", "api.example.com", b'{"a": 1}')
    assert (status, body) == (200, {"a": 1, "server": "shop"})
    # The product's own tests, against the deployed Nginx (its loopback listener).
    smoke = deployer.shell("./test.sh", f"http://127.0.0.1:{p['local']}")
    assert smoke.returncode == 0, smoke.stdout[-2000:] + smoke.stderr[-2000:]

    # 2. fab run: in the current release, as the product user, its exit status back.
    code = "import os, getpass; print(getpass.getuser(), os.environ['APIPHANT_RELEASE'])"
    ran = deployer.fab("run", "web1", "--", "python", "-c", code)
    assert ran.returncode == 0 and f"shop {r1}" in ran.stdout, ran.stdout
    failing = deployer.fab("run", "web1", "--", "sh -c 'exit 3'")
    assert failing.returncode == 3, failing.stdout

    # 3. Maintenance: a JSON 503 through Nginx, the workers untouched; off serves again.
    assert deployer.fab("maintenance", "--on").returncode == 0
    status, headers, body = post(p["nginx"], "/api/v0/echo/read", "api.example.com")
    assert (status, body) == (503, {"error": "503 Service Unavailable"})
    assert headers["Retry-After"] == "1" and headers["Content-Type"] == "application/json"
    assert post(p["local"], "/health", "localhost")[0] == 200  # the host's own way in
    assert "maintenance: on" in deployer.fab("status").stdout
    assert deployer.fab("maintenance", "--off").returncode == 0
    assert post(p["nginx"], "/api/v0/echo/read", "api.example.com")[0] == 200

    # 4. A staging environment, as root over another sshd: its own folders and programs.
    staging = deployer.fab("deploy", "-e", "staging", key=deployer.root_key)
    assert staging.returncode == 0, staging.stdout[-4000:]
    # Its after_deploy fails: said, and neither rolled back nor failing the deploy.
    assert "warming" in staging.stdout and "FAILED, reported and not rolled back" in staging.stdout
    rs = released(staging.stdout)
    assert os.readlink("/opt/shop-staging/current").endswith(rs)
    assert os.readlink("/opt/shop/current").endswith(r1)  # production untouched
    status, _, body = post(p["staging nginx"], "/health", "staging.example.com")
    assert (status, body["release"]) == (200, rs)
    programs = run("supervisorctl status").stdout
    assert f"shop-staging-api-{p['staging first']}" in programs
    assert f"shop-api-{p['first']}" in programs
    # Its own system user, marked as the deploy's: staging's code cannot read production's
    # secrets on the host they share, and has its own.
    assert user_of(f"shop-staging-api-{p['staging first']}") == "shop-staging"
    assert user_of(f"shop-api-{p['first']}") == "shop"
    assert pwd.getpwnam("shop-staging").pw_gecos == "apiphant deployment shop-staging"
    assert pwd.getpwnam("shop").pw_gecos == "apiphant deployment shop"
    production = f"/opt/shop/releases/{r1}/config/secrets.env"
    peek = run(f"runuser -u shop-staging -- cat {production}")
    assert peek.returncode != 0 and "Permission denied" in peek.stderr, peek
    assert run(f"runuser -u shop -- cat {production}").returncode == 0
    pid = run(f"supervisorctl pid shop-staging-api-{p['staging first']}").stdout.strip()
    assert b"SHOP_TOKEN=staging-token" in Path(f"/proc/{pid}/environ").read_bytes()
    staged = f"/opt/shop-staging/releases/{rs}/config/secrets.env"
    assert run(f"runuser -u shop -- cat {staged}").returncode != 0
    # Each rotates its own logs, by its own state file: neither rotates the other's.
    states = {n: Path(f"/opt/{n}/shared/logrotate.state") for n in ("shop", "shop-staging")}
    for _ in range(100):  # just added by the deploy: RUNNING after its startsecs (1 s)
        programs = run("supervisorctl status").stdout
        running = [n for n in states if re.search(rf"^{n}-logrotate +RUNNING", programs, re.M)]
        if len(running) == 2 and all(state.exists() for state in states.values()):
            break
        time.sleep(0.1)
    assert len(running) == 2, programs
    assert "/var/log/shop/" in states["shop"].read_text()
    assert "/var/log/shop-staging/" not in states["shop"].read_text()
    assert "/var/log/shop/" not in states["shop-staging"].read_text()
    assert "/var/log/shop-staging/" in states["shop-staging"].read_text()
    shown = deployer.shell("fab", "render", "-e", "staging")
    assert ("differs from production in: after_deploy, environment.MIGRATIONS, "
            "hosts.web1.first_port") in shown.stdout
    # One main nginx.conf for both, staging's now: production's catch-all is in it too, so
    # a Host no site names still gets the JSON 404 on production's socket, not its API.
    for port in (p["nginx"], p["staging nginx"]):
        assert post(port, "/health", "unknown.example.com")[::2] == (
            404, {"error": "404 Not Found"}), port
    # A host-wide setting that staging would change for production as well: refused in one
    # line naming both, exit 2, before anything on the host changed.
    staging_toml = deployer.repo / "deploy.staging.toml"
    kept = staging_toml.read_text()
    releases = sorted(os.listdir("/opt/shop-staging/releases"))
    staging_toml.write_text(kept.replace("[nginx]\n", "[nginx]\nclient_timeout = 5\n"))
    try:
        conflict = deployer.fab("deploy", "-e", "staging", key=deployer.root_key)
    finally:
        staging_toml.write_text(kept)
    errors = [line for line in conflict.stdout.splitlines() if line.startswith("error: ")]
    assert conflict.returncode == 2 and errors == [
        "error: web1: nginx.client_timeout: shop-staging has 5s, shop on the same host has 15s: "
        "the host's Nginx reads every request's head with one value; give both the same; "
        "nothing was changed on any host"], conflict.stdout[-3000:]
    assert sorted(os.listdir("/opt/shop-staging/releases")) == releases
    assert not os.path.exists("/opt/shop-staging/deploy.lock")

    # 5. A second production deploy of a new commit, then fab rollback to the first.
    version = "/api/v0/version/read"
    (deployer.repo / "api" / "v0" / "version.py").write_text(
        "def read(request):\n    return {'version': 2}\n"
    )
    deployer.commit("v2", "api")
    v2 = deployer.head()
    assert post(p["nginx"], version, "api.example.com")[0] == 404
    second = deployer.fab("deploy")
    assert second.returncode == 0, second.stdout[-4000:]
    r2 = released(second.stdout)
    assert post(p["nginx"], version, "api.example.com")[2] == {"version": 2}
    back = deployer.fab("rollback")
    assert back.returncode == 0, back.stdout[-4000:]
    assert f"web1 serves {r1}" in back.stdout
    assert post(p["nginx"], version, "api.example.com")[0] == 404
    assert deployer.migrations.read_text().splitlines() == [r1, r2]  # once per deploy
    assert deployer.staging_migrations.read_text().splitlines() == [rs]

    # 6. A release command that fails stops the deploy before any switch, output shown.
    (deployer.repo / "migrate.py").write_text("raise SystemExit('migration 7 failed: no table')\n")
    deployer.commit("a broken migration", "migrate.py")
    broken = deployer.fab("deploy")
    assert broken.returncode == 1, broken.stdout[-3000:]
    assert "migration 7 failed: no table" in broken.stdout
    # Nothing was switched; what the release command may have changed is not undone.
    assert "failed, nothing was switched (what the release command changed" in broken.stdout
    assert os.readlink("/opt/shop/current").endswith(r1)
    assert post(p["nginx"], "/api/v0/echo/read", "api.example.com")[0] == 200

    # 7. The history: who, which commit, which apiphant, what, how it ended.
    history = deployer.fab("history").stdout
    for action in ("deploy", "run", "maintenance on", "maintenance off", "rollback"):
        assert f" {action} " in history or f" {action} '" in history, action
    assert f"commit={v2} dirty=no apiphant=1.0.0 env=production files=tracked release={r2}" \
        in history
    assert "outcome=exit 3" in history
    # fab run by the command's name, never its arguments; root's and the group's file
    assert " run python outcome=ok " in history and "getpass" not in history
    kept = os.stat(f"/opt/{PRODUCT}/history.log")
    assert (kept.st_mode & 0o777, grp.getgrgid(kept.st_gid).gr_name) == (0o640, PRODUCT)
    assert history.count(" deploy outcome=failed ") == 1  # the broken migration

    # 8. A user sudo refuses: one line naming the user and the command, nothing run.
    SUDOERS.unlink()
    refused = deployer.fab("status")
    lines = [line for line in refused.stdout.splitlines() if line.startswith("error: ")]
    assert refused.returncode == 1 and len(lines) == 1, refused.stdout
    assert f"web1: user {LOGIN} may not run this as root with sudo" in lines[0]
    assert "APIPHANT_SUDO_PASSWORD" in lines[0]


def test_a_sudo_user_downloads_what_a_root_step_made_readable(deployer: Deployer) -> None:
    """The copy of a virtualenv travels through the deployer (deploy.toml's venv = "copy"):
    packed by root on the host that built it, fetched over SFTP as the login user, who is
    not root. A file root made readable (0644, as host.venv.pack_venv does) comes down
    whole; one it did not is a one-line failure naming the host, the step and the file."""
    from fabric import Config as FabricConfig

    from apiphant.deploy import plan
    from apiphant.deploy.config import load
    from apiphant.deploy.errors import StepFailed
    from apiphant.deploy.ssh import Remote

    allow_sudo()  # as the fixture did: the test before takes it away at its end
    config = load(deployer.repo / "deploy.toml")
    assert config.login_of(config.host("web1")) == LOGIN
    folder = Path(f"/var/tmp/apiphant-download-{os.getpid()}")
    lines: list[str] = []
    fabric = FabricConfig(overrides={"connect_kwargs": {"key_filename": [str(deployer.key)]}})
    executor = Remote(config, fabric, lines.append)
    try:
        made = plan.Step("web1", "make two files as root", (
            f"install -d -m 0755 {folder} && head -c 300000 /dev/urandom > {folder}/open && "
            f"chmod 0644 {folder}/open && echo secret > {folder}/closed && "
            f"chmod 0600 {folder}/closed"))  # fmt: skip
        executor.run(made)
        assert (folder / "open").stat().st_uid == 0  # root's, through sudo
        local = deployer.folder / "fetched"
        executor.run(plan.Step("web1", "download it", download=plan.Download(
            f"{folder}/open", local, "a file")))  # fmt: skip
        assert local.read_bytes() == (folder / "open").read_bytes()
        with pytest.raises(StepFailed) as failed:
            executor.run(plan.Step("web1", "download the other", download=plan.Download(
                f"{folder}/closed", deployer.folder / "closed", "a file")))  # fmt: skip
        message = str(failed.value)
        assert "\n" not in message
        assert message.startswith(f"web1: download the other failed: {folder}/closed: ")
    finally:
        executor.close()
        shutil.rmtree(folder, ignore_errors=True)
