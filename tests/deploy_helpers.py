"""Real parts for the deploy kit's tests: an sshd on 127.0.0.1, `fab` as a subprocess,
and a host cleanup that leaves this machine as the test found it.

The SSH target is this machine: the deploy's nginx and supervisord are the
system's own (they run as root and use /etc), so the e2e test needs root,
Debian's openssh-server, nginx and supervisor (all installed by .ci/run).
"""

import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.ports import free_port, port_open, service_ports
from tests.support.processes import stop

CHECKOUT = Path(__file__).resolve().parents[1]
SSHD = "/usr/sbin/sshd"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
#: myproduct's server name: a client of the public listener sends it as Host (any other
#: Host gets the catch-all's 404).
SERVER_NAME = "api.example.com"
NGINX_CONF = Path("/etc/nginx/nginx.conf")
DEBIAN_SITE = Path("/etc/nginx/sites-enabled/default")


#: Their names here, for the deploy tests that import them from this module.
free_ports = service_ports
stop_process = stop


class Sshd:
    """sshd in the foreground on 127.0.0.1:PORT, root login with a generated key only.

    ``addresses`` > 1 makes it listen on 127.0.0.2, 127.0.0.3... as well (all loopback): one
    sshd under several names, for tests that need many "hosts" (``targets``)."""

    def __init__(self, folder: Path, addresses: int = 1) -> None:
        self.folder = folder
        self.port = free_port()
        self.addresses = [f"127.0.0.{n}" for n in range(1, addresses + 1)]
        self.key = folder / "client_key"
        self.proc: subprocess.Popen | None = None
        self.made_privsep = False

    def __enter__(self) -> "Sshd":
        self.folder.mkdir(parents=True, exist_ok=True)
        host_key = self.folder / "host_key"
        for path in (host_key, self.key):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True
            )
        (self.folder / "authorized_keys").write_text((self.folder / "client_key.pub").read_text())
        config = self.folder / "sshd_config"
        config.write_text(
            f"Port {self.port}\n"
            + "".join(f"ListenAddress {a}\n" for a in self.addresses)
            + f"HostKey {host_key}\n"
            f"PidFile {self.folder / 'sshd.pid'}\n"
            # root's key here; another user's in its own home (read as that user)
            f"AuthorizedKeysFile {self.folder / 'authorized_keys'} .ssh/authorized_keys\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "Subsystem sftp internal-sftp\n"
            # many connections at once (one sshd as many hosts) are not dropped
            "MaxStartups 100\n"
            "LogLevel ERROR\n"
        )
        privsep = Path("/run/sshd")
        if not privsep.exists():
            privsep.mkdir(mode=0o755)
            self.made_privsep = True
        self.log = (self.folder / "sshd.log").open("wb")
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(
                    f"sshd did not start: {(self.folder / 'sshd.log').read_text()[-2000:]}"
                )
            time.sleep(0.05)
        return self

    @property
    def target(self) -> str:
        return f"root@127.0.0.1:{self.port}"

    @property
    def targets(self) -> list[str]:
        """Root's SSH target at each address it listens on (see the class)."""
        return [f"root@{a}:{self.port}" for a in self.addresses]

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop(self.proc)
        self.log.close()
        if self.made_privsep:
            shutil.rmtree("/run/sshd", ignore_errors=True)


def fab(
    *args: str, key: Path | None = None, timeout: float = 600, cwd: Path = CHECKOUT
) -> subprocess.CompletedProcess:
    """``fab [-i KEY] ARGS`` from the checkout, output captured (and echoed for the log)."""
    command = [sys.executable, "-m", "fabric"]
    if key is not None:
        command += ["-i", str(key)]
    command += list(args)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )
    print(f"$ fab {' '.join(args)}\n{done.stdout}{done.stderr}\n(exit {done.returncode})")
    return done


def run(command: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, shell=True, capture_output=True, text=True, timeout=timeout, check=check
    )


class HostCleanup:
    """Remember what runs before the test; afterwards stop what the deploy started and remove
    what it made: /opt/NAME, /var/log/NAME, the linked configs and the system user of each
    deployment (the product, and ``envs`` such as PRODUCT-staging)."""

    def __init__(self, product: str, envs: tuple[str, ...] = ()) -> None:
        self.product = product
        self.deployments = (product, *(f"{product}-{env}" for env in envs))
        self.supervisord_was_running = run("supervisorctl pid").returncode == 0
        self.nginx_was_running = (
            run('[ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)"').returncode == 0
        )
        self.users_existing = [n for n in self.deployments if run(f"id -u {n}").returncode == 0]
        # The deploy replaces Debian's nginx.conf with a link (keeping it beside) and unlinks
        # Debian's default site; both are put back.
        self.debian_site = os.readlink(DEBIAN_SITE) if DEBIAN_SITE.is_symlink() else None

    def clashes(self) -> str:
        """Why this machine cannot host the test deploy, or ''."""
        for name in self.deployments:
            if Path(f"/opt/{name}").exists():
                return f"/opt/{name} exists: a real deployment, not touched"
        if self.users_existing:
            return f"user {self.users_existing[0]} exists, not touched"
        return ""

    def __call__(self) -> None:
        for name in self.deployments:
            for link in (
                f"/etc/supervisor/conf.d/{name}.conf",
                f"/etc/nginx/sites-enabled/{name}.conf",
                f"/etc/logrotate.d/{name}",
            ):
                if os.path.islink(link):
                    os.unlink(link)
        if self.supervisord_was_running:  # drop the product's programs, no one else's
            for name in self.deployments:
                run(
                    "names=$(supervisorctl status | awk '{print $1}' "
                    f"| grep -E '^{name}-(api-[0-9]+|background|certbot|logrotate)$'); "
                    '[ -z "$names" ] || supervisorctl update $names',
                    timeout=120,
                )
        else:
            run("supervisorctl shutdown", timeout=60)
            _wait_gone("/var/run/supervisord.pid")
        kept = NGINX_CONF.with_name(NGINX_CONF.name + ".before-apiphant")
        if NGINX_CONF.is_symlink() and kept.is_file():
            kept.replace(NGINX_CONF)
        if self.debian_site is not None and not DEBIAN_SITE.is_symlink():
            DEBIAN_SITE.symlink_to(self.debian_site)
        if self.nginx_was_running:
            run("nginx -s reload")
        else:
            run("nginx -s stop")
            _wait_gone("/run/nginx.pid")
        for name in self.deployments:
            shutil.rmtree(f"/opt/{name}", ignore_errors=True)
            shutil.rmtree(f"/var/log/{name}", ignore_errors=True)
        for name in self.deployments:
            if name not in self.users_existing:
                run(f"userdel {name}")
                run(f"groupdel {name}")


def _wait_gone(pidfile: str, timeout: float = 30) -> None:
    """Wait until the process of a pid file has exited (bounded)."""
    try:
        pid = int(Path(pidfile).read_text().strip())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def deploy_toml(
    ssh: str,
    listen: str,
    first_port: int,
    secrets: Path | None = None,
    workers: int = 2,
    local_port: int = 8000,
) -> str:
    """myproduct/deploy.toml with this machine's sshd, free ports and a secrets file."""
    text = (CHECKOUT / "myproduct" / "deploy.toml").read_text()
    replacements = {
        'ssh = "root@203.0.113.10"': f'ssh = "{ssh}"',
        'listen = "80"': f'listen = "{listen}"\nlocal_port = {local_port}',
        "first_port = 8001": f"first_port = {first_port}",
        "workers = 2 ": f"workers = {workers} ",
    }
    if secrets is not None:
        replacements['# secrets = "~/.config/apiphant/myproduct.secrets.env"'] = (
            f'secrets = "{secrets}"'
        )
    for old, new in replacements.items():
        assert old in text, f"myproduct/deploy.toml no longer has {old!r}"
        text = text.replace(old, new)
    return text


def private_nginx(main: str, folder: Path, site: Path) -> str:
    """The deploy's rendered nginx-main.conf for a private nginx run by a test: its process
    sizing, http settings and catch-all kept, its system paths moved into ``folder``, this
    machine's user instead of www-data, and ``site`` the only site."""
    user = pwd.getpwuid(os.geteuid()).pw_name
    for old, new in (
        ("user www-data;", f"user {user};"),
        ("/run/nginx.pid", f"{folder}/nginx.pid"),
        ("/var/log/nginx/", f"{folder}/nginx-main-"),
        ("/etc/nginx/sites-enabled/*", str(site)),
        ("/etc/nginx/conf.d/*.conf", f"{folder}/none-*.conf"),
        ("http {\n", f"http {{\n    client_body_temp_path {folder}/body;\n"
                     f"    proxy_temp_path {folder}/proxy;\n"),
    ):  # fmt: skip
        assert old in main, f"the rendered nginx-main.conf no longer has {old!r}"
        main = main.replace(old, new)
    return main


def nginx_command(folder: Path, conf: Path) -> list[str]:
    """A private nginx in the foreground, its prefix and early error log in ``folder``."""
    return [NGINX, "-p", str(folder), "-e", str(folder / "nginx-main-error.log"),
            "-c", str(conf), "-g", "daemon off;"]  # fmt: skip
