"""End to end: `fab deploy --product=myproduct` over SSH to this machine, for real.

sshd runs on 127.0.0.1 with a generated key; the deploy brings up the
system's nginx and supervisord; myproduct's own test.sh passes through
Nginx. A release with a broken handler fails its smoke test and is rolled
back by itself; `fab rollback` goes back past a failed release; a repeated
deploy leaves the same state. Each release runs with the secrets it was
deployed with, so a rollback goes back to them too. The test leaves the
machine as it found it.
"""

import http.client
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deploy_helpers import (
    CHECKOUT,
    DEBIAN_SITE,
    NGINX_CONF,
    SERVER_NAME,
    HostCleanup,
    Sshd,
    deploy_toml,
    fab,
    run,
)
from tests.support.load import Load
from tests.support.ports import free_port, service_ports

PRODUCT = "myproduct"
ROOT = Path("/opt/myproduct")
SECRET = "s3cret-value-4711"
#: The secret after a rotation: the releases deployed since have it, the older ones not.
ROTATED = "r0tated-value-0815"

NEEDS = ("/usr/sbin/sshd", "/usr/sbin/nginx", "/usr/bin/supervisord", "/usr/bin/python3")
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="deploys to this machine as root"),
    pytest.mark.skipif(
        not all(Path(p).exists() for p in NEEDS), reason="needs sshd, nginx, supervisor"
    ),
]


class Host:
    """This machine as a deploy target: sshd, ports, a deploy.toml for them."""

    def __init__(self, folder: Path, sshd: Sshd) -> None:
        self.folder = folder
        self.sshd = sshd
        self.nginx_port = free_port()
        self.local_port = free_port()
        self.first_port = service_ports(2)
        self.secrets = folder / "myproduct.secrets.env"
        # A whitespace-only line, as an editor leaves one: skipped, on every side.
        self.secrets.write_text(f"# for the e2e test\n   \nMYPRODUCT_TOKEN={SECRET}\n")
        self.secrets.chmod(0o600)
        self.config = folder / "deploy.toml"
        text = deploy_toml(
            sshd.target,
            f"127.0.0.1:{self.nginx_port}",
            self.first_port,
            self.secrets,
            local_port=self.local_port,
        )
        # Two good releases kept: proves a failed release does not push a good one out.
        self.config.write_text(text.replace("keep_releases = 5", "keep_releases = 2"))

    @property
    def url(self) -> str:
        """Nginx's loopback listener: the host's own way in, any Host (the smoke test's)."""
        return f"http://127.0.0.1:{self.local_port}"

    def fab(self, *args: str, product: str = PRODUCT) -> subprocess.CompletedProcess:
        return fab(*args, f"--product={product}", "--config", str(self.config), key=self.sshd.key)

    def worker_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in (self.first_port, self.first_port + 1)]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory):
    cleanup = HostCleanup(PRODUCT)
    clash = cleanup.clashes()
    if clash:
        pytest.skip(clash)
    folder = tmp_path_factory.mktemp("e2e")
    try:
        with Sshd(folder / "ssh") as sshd:
            yield Host(folder, sshd)
    finally:
        cleanup()


def health(url: str) -> dict:
    import json
    import urllib.request

    with urllib.request.urlopen(url + "/health", timeout=5) as response:
        return json.loads(response.read())


FIGURES: dict[str, int] = {}


#: What the load sends through Nginx, in turn: a read, and a write (users/settings/update),
#: which matters most: Nginx retries a failed read on the other worker, never a write, so
#: only writes show a request the drain dropped.
REQUESTS = (
    ("echo", "/api/v0/echo/read", {"hello": "world"},
     lambda answer: answer == {"hello": "world", "server": PRODUCT}),
    ("update", "/api/v0/users/settings/update", {"user_id": 1, "settings": {"theme": "dark"}},
     lambda answer: answer == {"user_id": 1, "settings": {"theme": "dark", "language": "en"}}),
)  # fmt: skip


def load_through_nginx(port: int, threads: int = 4) -> Load:
    """Threads posting through Nginx on keep-alive connections, reads and writes in turn,
    counting every answer that is not the expected 200 and every connection error
    (bounded: the longest a deploy may take)."""
    return Load(lambda: http.client.HTTPConnection("127.0.0.1", port, timeout=10),
                lambda thread, n: REQUESTS[n % 2], threads=threads,
                headers={"Host": SERVER_NAME}, limit=600, max_requests=10**6)  # fmt: skip


def released(output: str) -> str:
    match = re.search(r"release (\d{14}) is live", output)
    assert match, output[-3000:]
    return match.group(1)


def snapshot() -> dict:
    """What a repeated deploy must leave the same: links, their files, processes, user."""
    links = {}
    for link in (
        f"/etc/supervisor/conf.d/{PRODUCT}.conf",
        f"/etc/nginx/sites-enabled/{PRODUCT}.conf",
        str(NGINX_CONF),
    ):
        links[link] = (os.readlink(link), Path(link).read_text())
    # Not given to the system's logrotate: the deployment's own program rotates its logs.
    links[f"/etc/logrotate.d/{PRODUCT}"] = os.path.lexists(f"/etc/logrotate.d/{PRODUCT}")
    status = run("supervisorctl status").stdout
    programs = sorted(
        (line.split()[0], line.split()[1])
        for line in status.splitlines()
        if line.startswith(PRODUCT)
    )
    secrets = ROOT / "current" / "config" / "secrets.env"
    info = secrets.stat()
    return {
        "links": links,
        "programs": programs,
        "user": run(f"id {PRODUCT}").stdout,
        "secrets": (stat.S_IMODE(info.st_mode), info.st_uid, secrets.read_text()),
    }


def token_of(program: str) -> str:
    """The secret in the environment a running program started with."""
    pid = run(f"supervisorctl pid {program}").stdout.strip()
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next(v for v in environ if v.startswith(b"MYPRODUCT_TOKEN=")).decode().split("=")[1]


def releases() -> dict[str, bool]:
    return {
        p.name: (p / ".good").exists()
        for p in (ROOT / "releases").iterdir()
        if re.fullmatch(r"\d{14}", p.name)
    }


def broken_copy(folder: Path) -> Path:
    """myproduct with a handler that fails: its smoke test cannot pass."""
    product = folder / "broken" / PRODUCT
    shutil.copytree(
        CHECKOUT / PRODUCT, product, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    echo = product / "api" / "v0" / "echo.py"
    echo.write_text(echo.read_text() + "\n\ndef read(request):\n    raise RuntimeError('broken')\n")
    return product


def test_deploy_rollback_and_redeploy(host: Host) -> None:
    started = time.monotonic()

    # 1. A first deploy to a bare host: user, release, venv, configs, supervisord, nginx.
    first = host.fab("deploy", "web1")
    assert first.returncode == 0, first.stdout[-4000:]
    r1 = released(first.stdout)
    assert re.search(r"OK: \d+ passed", first.stdout), "the smoke test did not run"
    assert health(host.url)["release"] == r1
    for url in host.worker_urls():
        assert health(url) == {"status": "ok", "product": PRODUCT, "release": r1}
    # The product's own test.sh, from this machine, through Nginx.
    smoke = subprocess.run(
        [str(CHECKOUT / "test.sh"), host.url], capture_output=True, text=True, timeout=120
    )
    assert smoke.returncode == 0, smoke.stdout[-2000:] + smoke.stderr[-2000:]
    # Secrets: the release's own copy, the parsed lines alone; 0640, root's, readable by the
    # product's group (its programs cannot change them), in the workers' environment, never
    # printed. Nothing is shared between releases.
    state = snapshot()
    assert state["secrets"] == (0o640, 0, f"MYPRODUCT_TOKEN={SECRET}\n")
    own = ROOT / "releases" / r1 / "config" / "secrets.env"
    assert own.stat().st_gid == int(run(f"id -g {PRODUCT}").stdout)
    refused = run(f"runuser -u {PRODUCT} -- sh -c 'echo X=1 >> {own}'")
    assert refused.returncode != 0, "the product user can write its secrets"
    assert not (ROOT / "shared" / "secrets.env").exists()
    # Logs may hold what clients sent: root's and adm's only, not every local user's.
    logs = Path(f"/var/log/{PRODUCT}").stat()
    assert (stat.S_IMODE(logs.st_mode), logs.st_uid) == (0o750, 0)
    peek = run(f"runuser -u {PRODUCT} -- cat /var/log/{PRODUCT}/nginx-access.log")
    assert peek.returncode != 0, "a local user can read the product's logs"
    # Nginx: the kit's main config (Debian's kept beside it), Debian's default site gone;
    # a stranger's Host, or none, gets the catch-all's JSON 404 on the public listener.
    assert os.readlink(NGINX_CONF) == f"{ROOT}/current/config/nginx-main.conf"
    assert NGINX_CONF.with_name("nginx.conf.before-apiphant").is_file()
    assert not DEBIAN_SITE.exists()
    conn = http.client.HTTPConnection("127.0.0.1", host.nginx_port, timeout=5)
    conn.request("POST", "/api/v0/echo/read", b"{}", {"Host": "203.0.113.10"})
    stranger = conn.getresponse()
    assert (stranger.status, stranger.read()) == (404, b'{"error": "404 Not Found"}')
    assert stranger.getheader("Server") == "nginx"
    conn.request("POST", "/api/v0/echo/read", b"{}", {"Host": SERVER_NAME})
    assert conn.getresponse().read() == b'{"server": "myproduct"}'
    conn.close()
    assert SECRET not in first.stdout + first.stderr
    pid = run(f"supervisorctl pid {PRODUCT}-api-{host.first_port}").stdout.strip()
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"MYPRODUCT_TOKEN={SECRET}".encode() in environ
    assert f"APIPHANT_RELEASE={r1}".encode() in environ
    assert run(f"ps -o user= -p {pid}").stdout.strip() == PRODUCT
    assert [name for name, state in state["programs"]] == [
        f"{PRODUCT}-api-{host.first_port}",
        f"{PRODUCT}-api-{host.first_port + 1}",
        f"{PRODUCT}-background",
        f"{PRODUCT}-logrotate",
    ]
    assert all(s == "RUNNING" for _, s in state["programs"])
    assert state["links"][f"/etc/logrotate.d/{PRODUCT}"] is False
    runner = run(f"supervisorctl pid {PRODUCT}-background").stdout.strip()
    assert f"APIPHANT_RELEASE={r1}".encode() in Path(f"/proc/{runner}/environ").read_bytes()

    # 2. A broken release, with a rotated secret: the smoke test fails after the switch, the
    #    rollback is automatic, and the release gone back to has its own secret again.
    host.secrets.write_text(f"MYPRODUCT_TOKEN={ROTATED}\n")
    broken = host.fab("deploy", "web1", product=str(broken_copy(host.folder)))
    assert broken.returncode == 1
    assert "ROLLED BACK" in broken.stdout and f"web1 serves {r1} again" in broken.stdout
    assert "smoke test through Nginx" in broken.stdout
    assert health(host.url)["release"] == r1
    for url in host.worker_urls():
        assert health(url)["release"] == r1
    workers = [f"{PRODUCT}-api-{host.first_port + n}" for n in (0, 1)]
    assert [token_of(w) for w in [*workers, f"{PRODUCT}-background"]] == [SECRET] * 3
    assert ROTATED not in broken.stdout + broken.stderr
    assert os.readlink(ROOT / "current").endswith(r1)
    r2 = [r for r, good in releases().items() if not good]
    assert len(r2) == 1, releases()
    assert not (ROOT / "deploy.lock").exists()

    # 3. A good deploy again; the failed release goes, the good ones stay (keep 2).
    third = host.fab("deploy", "web1")
    assert third.returncode == 0, third.stdout[-4000:]
    r3 = released(third.stdout)
    assert releases() == {r1: True, r3: True}
    assert [token_of(w) for w in workers] == [ROTATED] * 2
    # The same packages as r1's: its virtualenv is reused, nothing is installed.
    reused = "[web1]   virtualenv: same packages as an earlier release, reused"
    assert reused not in first.stdout and reused in third.stdout
    venvs = sorted((ROOT / "venvs").iterdir())
    assert len(venvs) == 1
    for release in (r1, r3):
        assert (ROOT / "releases" / release / "venv").resolve() == venvs[0]
    stale = ROOT / "venvs" / "0123456789abcdef"  # as a release removed since would leave
    (stale / "bin").mkdir(parents=True)
    after_third = snapshot()

    # 4. fab rollback: to the previous good release, past the failed one.
    back = host.fab("rollback", "web1")
    assert back.returncode == 0, back.stdout[-4000:]
    assert f"web1 serves {r1}" in back.stdout
    assert health(host.url)["release"] == r1
    assert all(health(url)["release"] == r1 for url in host.worker_urls())
    assert [token_of(w) for w in workers] == [SECRET] * 2  # r1's, not the rotated one

    # 5. A repeated deploy of the same code leaves the same state, with a new release,
    #    and not one request through Nginx fails while it restarts the workers.
    worker = f"{PRODUCT}-api-{host.first_port}"
    pid_before = run(f"supervisorctl pid {worker}").stdout.strip()
    with load_through_nginx(host.nginx_port) as load:  # clients keep posting meanwhile
        fourth = host.fab("deploy", "web1")
    writes = load.sent["update"]
    FIGURES.update(requests=load.total, writes=writes, failed=len(load.failures))
    assert writes > 50 and load.failures == [], (load.sent, load.failures[:5])
    assert fourth.returncode == 0, fourth.stdout[-4000:]
    r4 = released(fourth.stdout)
    assert snapshot() == after_third
    assert sorted((ROOT / "venvs").iterdir()) == venvs  # no kept release links to the stale one
    assert "removing virtualenv 0123456789abcdef" in fourth.stdout
    assert releases() == {r3: True, r4: True}  # keep 2: r1 goes, current is r4
    assert health(host.url)["release"] == r4
    assert run(f"supervisorctl pid {worker}").stdout.strip() != pid_before
    # The workers were restarted one at a time, each healthy before the next restarted.
    lines = fourth.stdout.splitlines()
    order = [
        i
        for i, line in enumerate(lines)
        if re.match(r"\[web1\] restart myproduct-api-\d+;", line)
        or re.match(r"\[web1\]   myproduct-api-\d+: /health answers release", line)
    ]
    assert len(order) == 4
    assert "restart" in lines[order[0]] and "answers" in lines[order[1]]
    assert "restart" in lines[order[2]] and "answers" in lines[order[3]]

    status = host.fab("status", "web1")
    assert status.returncode == 0
    assert f"release: {r4}" in status.stdout and "lock: free" in status.stdout
    assert status.stdout.count('"status": "ok"') == 2

    logs = host.fab("logs", "web1", "--lines", "5")
    assert logs.returncode == 0 and "nginx-access.log" in logs.stdout

    print(f"e2e deploy cycle took {time.monotonic() - started:.1f}s", file=sys.stderr)


def test_lock_held_refuses_with_holder(host: Host) -> None:
    lock = ROOT / "deploy.lock"
    lock.mkdir(parents=True)
    (lock / "holder").write_text(
        "alice@laptop since 2026-01-02T03:04:05Z (release 20260102030405)\n"
    )
    try:
        refused = host.fab("deploy", "web1")
        assert refused.returncode == 1
        line = next(line for line in refused.stdout.splitlines() if "deploy lock is held" in line)
        assert "alice@laptop since 2026-01-02T03:04:05Z" in line
        assert "fab unlock --product=myproduct web1" in line
        assert lock.is_dir(), "a refused deploy must not take the lock away"
        unlocked = host.fab("unlock", "web1")
        assert unlocked.returncode == 0 and "alice@laptop" in unlocked.stdout
        assert not lock.exists()
    finally:
        shutil.rmtree(lock, ignore_errors=True)


# The deployment's system user

#: A product name no account on a test machine has; the tests make and remove the account.
ALIEN = "apiphantalien"


def _account(*args: str) -> None:
    done = run(" ".join(args))
    assert done.returncode == 0, done.stderr


def test_the_account_check_tells_the_deploys_own_accounts_from_others() -> None:
    """``account_check`` on this machine's real accounts: none yet, or one the deploy made
    (marked), passes; a service's or a person's account is refused in one line; one an
    earlier kit made (no comment, the deployment's folder as home) passes and gets marked."""
    from apiphant.deploy.host.system import account_check, system_user
    from apiphant.deploy.layout import Layout

    layout = Layout(ALIEN)
    if run(f"id -u {ALIEN}").returncode == 0:
        pytest.skip(f"user {ALIEN} exists, not touched")

    def check() -> subprocess.CompletedProcess:
        return run(account_check(layout))

    refusal = (f"user {ALIEN} exists and the deploy did not make it: its programs would run as "
               "that account; choose another product (or environment) name, or remove the "
               "account\n")  # fmt: skip
    root = run(account_check(Layout("root")))
    assert root.returncode == 1 and root.stderr.startswith("user root exists and the deploy")
    try:
        assert check().returncode == 0  # none: the deploy makes it
        _account("useradd --system --no-create-home --home-dir /var/lib/apiphantalien",
                 "--shell /usr/sbin/nologin --comment 'Alien service'", ALIEN)  # fmt: skip
        refused = check()
        assert (refused.returncode, refused.stdout, refused.stderr) == (1, "", refusal)
        # A deploy's useradd step refuses it as well, and leaves it as it was.
        again = run(system_user(layout))
        assert again.returncode == 1 and again.stderr == refusal
        assert pwd.getpwnam(ALIEN).pw_gecos == "Alien service"
        # As an earlier version of the kit made its users: no comment, its folder as home.
        _account(f"usermod --comment '' --home /opt/{ALIEN}", ALIEN)
        assert check().returncode == 0
        assert run(system_user(layout)).returncode == 0
        assert pwd.getpwnam(ALIEN).pw_gecos == f"apiphant deployment {ALIEN}"
        assert check().returncode == 0
        _account(f"usermod --comment 'apiphant deployment {ALIEN}x'", ALIEN)
        assert check().stderr == refusal
    finally:
        run(f"userdel {ALIEN}")
        run(f"groupdel {ALIEN}")
    # Made by the deploy: marked, and accepted by the next deploy.
    try:
        assert run(system_user(layout)).returncode == 0
        entry = pwd.getpwnam(ALIEN)
        assert (entry.pw_gecos, entry.pw_dir, entry.pw_shell) == (
            f"apiphant deployment {ALIEN}", f"/opt/{ALIEN}", "/usr/sbin/nologin")
        assert run(system_user(layout)).returncode == 0 and check().returncode == 0
    finally:
        run(f"userdel {ALIEN}")
        run(f"groupdel {ALIEN}")


def test_a_deploy_refuses_an_account_it_did_not_make_before_anything_changes(host: Host) -> None:
    """A product named like an account on the host that the deploy did not make (a service's,
    a person's): refused in one line naming the host and the user, before any host changes:
    no folder, no lock, the account as it was."""
    if run(f"id -u {ALIEN}").returncode == 0 or Path(f"/opt/{ALIEN}").exists():
        pytest.skip(f"user {ALIEN} or /opt/{ALIEN} exists, not touched")
    product = host.folder / "alien" / ALIEN
    shutil.copytree(CHECKOUT / PRODUCT, product, ignore=shutil.ignore_patterns("__pycache__"))
    text = deploy_toml(host.sshd.target, f"127.0.0.1:{free_port()}", service_ports(2),
                       local_port=free_port())  # fmt: skip
    (product / "deploy.toml").write_text(text.replace(f'product = "{PRODUCT}"',
                                                      f'product = "{ALIEN}"'))  # fmt: skip
    cleanup = HostCleanup(ALIEN)  # were the account taken, all the deploy made goes again
    try:
        _account("useradd --system --no-create-home --home-dir /var/lib/apiphantalien",
                 "--shell /usr/sbin/nologin --comment 'Alien service'", ALIEN)  # fmt: skip
        done = fab("deploy", f"--product={product}", key=host.sshd.key)
        errors = [line for line in done.stdout.splitlines() if line.startswith("error: ")]
        assert done.returncode == 1 and len(errors) == 1, done.stdout[-3000:]
        assert errors[0].startswith(f"error: web1: its system user {ALIEN}; ")
        assert f"user {ALIEN} exists and the deploy did not make it" in errors[0]
        assert errors[0].endswith("; nothing was changed on any host")
        assert not Path(f"/opt/{ALIEN}").exists() and not Path(f"/var/log/{ALIEN}").exists()
        assert pwd.getpwnam(ALIEN).pw_gecos == "Alien service"
    finally:
        if Path(f"/opt/{ALIEN}").exists():
            cleanup()  # all a deploy that took the account made, and the account
        run(f"userdel {ALIEN}")
        run(f"groupdel {ALIEN}")
