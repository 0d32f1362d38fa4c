"""The multi-host deploy on real separate hosts: a front and two API hosts (tests/testhosts.py).

Each host is its own network, mount, PID, UTS and IPC namespace with its own
root (overlayfs over one Debian bookworm tree), its own sshd; `fab deploy`
runs here, in the root namespace, and reaches them by SSH on their private
addresses, and the deploy starts their supervisord and Nginx as on a real
host. The product is myproduct (deploy.multihost.toml.example, with this
run's addresses) plus two test targets: ``ledger`` (a create is recorded
once per request id in the host's /tmp/ledger.txt, so a create sent twice
shows) and ``reports/where`` (its pool holds api2 only). Pools: ``main``
(api1 with 3 workers, api2 with 2) gets everything else; ``reports`` gets
v0/reports. The background runner is on api1.

The hosts have no route out: they install from the wheels the deploy uploads
(``pip install --no-index``). The hosts are shared by the module's tests, in
order; every host, namespace, link and mount is removed at the end, also on
failure, and that is checked.
"""

import gzip
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from apiphant.deploy.config import load
from apiphant.deploy.layout import NGINX_PIDFILE
from tests import testhosts
from tests.deploy_helpers import CHECKOUT, SERVER_NAME, fab
from tests.fault_helpers import LEDGER, Load, listeners
from tests.support.processes import stop

PRODUCT = "myproduct"
NAMES = ["front", "api1", "api2"]
WORKERS = {"api1": 3, "api2": 2}
NEEDS = ("mmdebstrap", "unshare", "nsenter", "ip", "ssh-keygen")
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="builds network namespaces: needs root"),
    pytest.mark.skipif(not all(shutil.which(n) for n in NEEDS), reason=f"needs {', '.join(NEEDS)}"),
]

#: The ledger target, answering which host and process served it (each host has its own
#: PID namespace, so a PID alone does not say which host).
HOST_LEDGER = LEDGER.replace("import os\n", "import os\nimport socket\n", 1).replace(
    '"pid": os.getpid()', '"pid": f"{socket.gethostname()}:{os.getpid()}"'
)
WHERE = '''\
"""Test target of the reports pool: says which host answered."""

import socket


def read(request):
    return {"host": socket.gethostname()}
'''
LEDGER_FILE = "/tmp/ledger.txt"  # the host's own /tmp, writable by the product's user

#: What the module measured, printed at its end (and written into RELIABILITY.md by hand).
FIGURES: dict = {}


class Site:
    """The hosts, the product's copy and its deploy.toml, and `fab` against them."""

    def __init__(
        self, hosts: testhosts.Hosts, folder: Path, key: Path, watch: "BackgroundWatch"
    ) -> None:
        self.hosts = hosts
        self.watch = watch
        self.folder = folder
        self.key = key
        self.product = folder / "work" / PRODUCT
        shutil.copytree(
            CHECKOUT / PRODUCT, self.product, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        api = self.product / "api" / "v0"
        (api / "ledger.py").write_text(HOST_LEDGER)
        (api / "reports").mkdir()
        (api / "reports" / "__init__.py").write_text("")
        (api / "reports" / "where.py").write_text(WHERE)
        self.secrets = folder / "myproduct.secrets.env"
        self.secrets.write_text("MYPRODUCT_TOKEN=multihost\n")
        self.secrets.chmod(0o600)
        self.config_path = self.product / "deploy.toml"
        self.config_path.write_text(self.deploy_toml())
        self.config = load(self.config_path)
        self.layout = self.config.layout

    def deploy_toml(self) -> str:
        """myproduct/deploy.multihost.toml.example with this run's hosts."""
        text = (CHECKOUT / PRODUCT / "deploy.multihost.toml.example").read_text()
        h = self.hosts
        replacements = {
            'ssh = "root@203.0.113.10"': f'ssh = "{h["front"].ssh}"',
            'ssh = "root@203.0.113.11"': f'ssh = "{h["api1"].ssh}"',
            'ssh = "root@203.0.113.12"': f'ssh = "{h["api2"].ssh}"',
            'private_address = "10.0.0.11"': f'private_address = "{h["api1"].address}"',
            'private_address = "10.0.0.12"': f'private_address = "{h["api2"].address}"',
            "workers = 4": f"workers = {WORKERS['api1']}",
            "workers = 2": f"workers = {WORKERS['api2']}",
            'secrets = "~/.config/apiphant/myproduct.secrets.env"': f'secrets = "{self.secrets}"',
            'SENTRY_ENVIRONMENT = "production"': f'FAULTS_LEDGER = "{LEDGER_FILE}"',
            "drain_timeout = 10": "drain_timeout = 10\naccess_log = true",
            # A request sent to a host that vanished is given up after 5 s: a read is then
            # tried on the pool's other host, within the clients' 10 s.
            'listen = "80"': 'listen = "80"\nread_timeout = 5',
            "[pools.main]                          # no targets: the default pool, everything "
            'else\nhosts = ["api1"]': '[pools.main]\nhosts = ["api1", "api2"]',
        }
        for old, new in replacements.items():
            assert old in text, f"deploy.multihost.toml.example no longer has {old!r}"
            text = text.replace(old, new)
        return text

    def fab(self, *args: str, product: Path | None = None) -> subprocess.CompletedProcess:
        return fab(*args, f"--product={product or self.product}", "--config",
                   str(self.config_path), key=self.key)  # fmt: skip

    def fab_until(
        self, args: tuple[str, ...], when: str, then, timeout: float = 300
    ) -> tuple[int, str]:
        """`fab ARGS` whose output is read as it comes; ``then()`` runs once a line matches
        the regex ``when``. Returns the exit status and the whole output. Its temporary
        files go to a folder of the test's, removed after: a deployer that ``then()`` kills
        cannot remove its own."""
        command = [sys.executable, "-m", "fabric", "-i", str(self.key), *args,
                   f"--product={self.product}", "--config", str(self.config_path)]  # fmt: skip
        scratch = Path(tempfile.mkdtemp(prefix="fab-until-", dir=self.folder))
        proc = subprocess.Popen(
            command, cwd=CHECKOUT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1", TMPDIR=str(scratch)),
            start_new_session=True,
        )  # fmt: skip
        lines, fired = [], False
        timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if not fired and re.search(when, line):
                    fired = True
                    then(proc)
            proc.wait(30)
        finally:
            timer.cancel()
            stop(proc, signal.SIGKILL, timeout=10, group=True)
            shutil.rmtree(scratch, ignore_errors=True)
        output = "".join(lines)
        print(f"$ fab {' '.join(args)}\n{output}\n(exit {proc.returncode})")
        assert fired, f"never saw {when!r}:\n{output[-3000:]}"
        return proc.returncode, output

    # Reading the hosts (from the root namespace: their /proc, their files)

    def current(self, name: str) -> str:
        return os.path.basename(os.readlink(self.hosts[name].path(self.layout.current)))

    def workers(self, name: str) -> list:
        return self.config.workers(self.config.host(name))

    def health(self, address: str, timeout: float = 3) -> dict | None:
        host, _, port = address.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        try:
            conn.request("GET", "/health")
            return json.loads(conn.getresponse().read())
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            conn.close()

    def release(self, name: str, address: str) -> str | None:
        """The release the worker at ``address`` answers /health with, asked on its host
        ``name`` as the deploy asks: /health names it only to the deployment itself."""
        asked = self.hosts[name].exec(f"curl -sS --max-time 3 http://{address}/health")
        try:
            return json.loads(asked.stdout).get("release")
        except ValueError:
            return None

    def post(self, path: str, body: dict, timeout: float = 10) -> tuple[int, dict]:
        conn = http.client.HTTPConnection(self.hosts["front"].address, 80, timeout=timeout)
        try:
            headers = {"Content-Type": "application/json", "Host": SERVER_NAME}
            conn.request("POST", path, json.dumps(body), headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def log(self, name: str, program: str) -> str:
        path = self.hosts[name].path(self.layout.log(program))
        return path.read_text(errors="replace") if path.exists() else ""

    def generations(self, name: str, log: str) -> dict[str, str]:
        """A log on a host and its rotated files (``.1``, ``.2.gz``...), by file name, as text."""
        path = self.hosts[name].path(log)
        found = {}
        for file in sorted(path.parent.glob(path.name + "*")):
            if re.fullmatch(re.escape(path.name) + r"(\.[0-9]+)?(\.gz)?", file.name):
                data = file.read_bytes()
                data = gzip.decompress(data) if file.name.endswith(".gz") else data
                found[file.name] = data.decode(errors="replace")
        return found

    def ledger(self) -> Counter:
        """Creates recorded, by request id, over every API host."""
        counts: Counter = Counter()
        for name in WORKERS:
            path = self.hosts[name].path(LEDGER_FILE)
            if path.exists():
                counts.update(line.split()[0] for line in path.read_text().splitlines() if line)
        return counts

    def programs(self, name: str) -> dict[str, str]:
        """The deployment's Supervisor programs on a host and their states ({} when none)."""
        done = self.hosts[name].exec("supervisorctl status")
        return {
            line.split()[0]: line.split()[1]
            for line in done.stdout.splitlines()
            if line.startswith(PRODUCT)
        }

    def retried_reads(self) -> int:
        """Requests the front's Nginx sent to more than one worker (its access log's
        $upstream_addr lists each one it tried)."""
        log = self.hosts["front"].path(self.layout.logs + "/nginx-access.log")
        text = log.read_text(errors="replace") if log.exists() else ""
        return sum(
            1 for line in text.splitlines() if "/read HTTP" in line and re.search(r":\d+, ", line)
        )

    def front_log_lines(self, name: str, pattern: str) -> list[str]:
        """Lines of the front's Nginx log ``name`` (access, error) matching ``pattern``:
        what a failed request was, and which worker Nginx had tried."""
        log = self.hosts["front"].path(f"{self.layout.logs}/nginx-{name}.log")
        text = log.read_text(errors="replace") if log.exists() else ""
        return [line for line in text.splitlines() if re.search(pattern, line)]

    def settle(self, timeout: float = 30) -> None:
        """Wait (bounded) until the front reaches every worker of the main pool again."""
        wanted = {name for name in WORKERS}
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        n = 0
        while seen != wanted:
            assert time.monotonic() < deadline, f"the front reached only {seen}"
            try:
                status, answer = self.post("/api/v0/ledger/read", {"id": f"settle-{n}"}, 5)
                if status == 200:
                    seen.add(answer["pid"].partition(":")[0])
            except (OSError, http.client.HTTPException, ValueError):
                pass
            n += 1
            time.sleep(0.05)


class BackgroundWatch(threading.Thread):
    """Counts apiphant-background processes on every host, all the module long, from the
    root namespace (each host's processes are those of its PID namespace)."""

    def __init__(self, hosts: testhosts.Hosts) -> None:
        super().__init__(daemon=True)
        self.hosts = hosts
        self.stopping = threading.Event()
        self.samples = 0
        self.most = 0
        self.where: Counter = Counter()

    def count(self) -> dict[str, int]:
        found = {}
        for host in self.hosts.all:
            n = 0
            for pid in testhosts.in_namespace(host.pid_ns) if host.pid_ns else ():
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if any(a.endswith(b"apiphant-background") for a in argv[:2]):
                    n += 1
            found[host.name] = n
        return found

    def run(self) -> None:
        while not self.stopping.wait(0.05):
            counts = self.count()
            self.samples += 1
            self.most = max(self.most, sum(counts.values()))
            self.where.update(name for name, n in counts.items() if n)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


class PoolWatch(threading.Thread):
    """Asks each pool, round after round, whether one of its workers answers /health;
    records every round in which none did."""

    def __init__(self, site: Site) -> None:
        super().__init__(daemon=True)
        self.site = site
        self.pools = {p.name: [w.address for w in site.config.pool_workers(p)]
                      for p in site.config.pools}  # fmt: skip
        self.stopping = threading.Event()
        self.rounds = 0
        self.empty: list[str] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            for pool, addresses in self.pools.items():
                if not any(self.site.health(a, timeout=5) for a in addresses):
                    self.empty.append(pool)
            self.rounds += 1
            self.stopping.wait(0.1)

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    started = time.monotonic()
    folder = tmp_path_factory.mktemp("multihost")
    key = folder / "deployer_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    hosts = testhosts.Hosts(NAMES, (folder / "deployer_key.pub").read_text())
    watch = BackgroundWatch(hosts)
    try:
        hosts.start()
        FIGURES["hosts"] = len(hosts.all)
        FIGURES["hosts up (s, base tree included)"] = round(time.monotonic() - started, 1)
        watch.start()
        yield Site(hosts, folder, key, watch)
    finally:
        if watch.is_alive():
            watch.stop()
        FIGURES["background runners at once, at most"] = watch.most
        FIGURES["background seen on"] = dict(watch.where)
        FIGURES["background samples"] = watch.samples
        problems = hosts.close()
        FIGURES["seconds"] = round(time.monotonic() - started, 1)
        print(f"\nmulti-host figures: {json.dumps(FIGURES)}", file=sys.stderr)
        assert problems == [], f"test hosts left behind: {problems}"


def released(output: str) -> str:
    match = re.search(r"release (\d{14}) is live", output)
    assert match, output[-3000:]
    return match.group(1)


def test_three_host_deploy_roles_addresses_and_pools(site: Site) -> None:
    """Each host gets only its roles' programs; workers listen on their host's private
    address; the front routes v0/reports to the reports pool (api2) only."""
    for name in NAMES:  # separate hosts: their own name, and no route but their network's
        host = site.hosts[name]
        assert host.exec("hostname").stdout.strip() == name
        assert "default" not in host.exec("ip route").stdout
    done = site.fab("deploy")
    assert done.returncode == 0, done.stdout[-4000:]
    release = released(done.stdout)
    for name in NAMES:
        assert site.current(name) == release
    # Programs: api1 its 3 workers and the one background runner, api2 its 2, the front none
    # of the product's; every host its logs' rotation.
    layout = site.layout
    assert site.programs("api1") == {
        **{w.program: "RUNNING" for w in site.workers("api1")},
        layout.background: "RUNNING",
        layout.rotator: "RUNNING",
    }
    assert site.programs("api2") == {
        **{w.program: "RUNNING" for w in site.workers("api2")},
        layout.rotator: "RUNNING",
    }
    assert site.programs("front") == {layout.rotator: "RUNNING"}
    assert site.hosts["front"].exec(f'kill -0 "$(cat {NGINX_PIDFILE})"').returncode == 0
    for name in WORKERS:  # Nginx on the front only
        assert site.hosts[name].exec(f"test -e {NGINX_PIDFILE}").returncode != 0
    # Workers: on the host's private address only, answering with the release.
    for name in WORKERS:
        host = site.hosts[name]
        net = Path(f"/proc/{host.init_pid}/net")
        assert len(site.workers(name)) == WORKERS[name]
        for worker in site.workers(name):
            port = int(worker.address.rpartition(":")[2])
            assert worker.address.startswith(host.address + ":")
            assert listeners(port, net) == {host.address}, (name, port)
            assert site.release(name, worker.address) == release
            # From another host of the private network (this one): status only.
            assert site.health(worker.address) == {"status": "ok"}
    # Routing: 30 reports through the front, all answered by api2; the main pool's reads
    # reach both hosts. Shown from the workers' own access logs.
    for n in range(30):
        status, answer = site.post("/api/v0/reports/where/read", {"n": n})
        assert (status, answer) == (200, {"host": "api2"})
    site.settle()
    logs = {name: "".join(site.log(name, w.program) for w in site.workers(name))
            for name in WORKERS}  # fmt: skip
    assert logs["api1"].count("/api/v0/reports/") == 0
    assert logs["api2"].count("POST /api/v0/reports/where/read") == 30
    assert all(logs[name].count("POST /api/v0/ledger/read") > 0 for name in WORKERS)


def test_rolling_restart_across_hosts_under_load(site: Site) -> None:
    """A deploy under 50 clients through the front for at least 20 s: no request fails,
    no create is done twice, and every pool has a live worker all along."""
    site.settle()
    before = site.current("api1")
    watch = PoolWatch(site)
    started = time.monotonic()
    with Load(80, tag="rolling", threads=50, limit=240, host=site.hosts["front"].address) as load:
        watch.start()
        load.wait_sent(500, timeout=60)
        done = site.fab("deploy")
        while time.monotonic() - started < 20:
            time.sleep(0.5)
    watch.stop()
    seconds = round(time.monotonic() - started, 1)
    figures = load.figures(site.ledger())
    print(f"rolling restart under load: {figures}, pool rounds {watch.rounds}, {seconds}s")
    why = (
        site.front_log_lines("error", "upstream")[-20:]
        + site.front_log_lines("access", r'" 50\d ')[-20:]
    )
    print("\n".join(why))
    assert done.returncode == 0, done.stdout[-4000:]
    release = released(done.stdout)
    assert release != before and all(site.current(n) == release for n in NAMES)
    restarts = re.findall(r"\[(api\d)\] restart (myproduct-api-\d+);", done.stdout)
    assert len(restarts) == sum(WORKERS.values()), restarts
    FIGURES["rolling restart"] = {
        "seconds": seconds, "clients": 50, "requests": figures["requests"],
        "failed": sum(figures["failed"].values()),
        "duplicated writes": figures["creates recorded twice"],
        "pool rounds without a live worker": len(watch.empty), "pool rounds": watch.rounds,
    }  # fmt: skip
    assert figures["requests"] > 1000
    assert figures["failed"] == {"read": 0, "create": 0, "update": 0}, (figures["causes"], why)
    assert figures["creates recorded twice"] == 0
    assert figures["creates answered 200 but not recorded"] == 0
    assert watch.rounds > 10 and watch.empty == []


def test_cut_api_host_under_load(site: Site) -> None:
    """api1's link is cut under load: reads keep succeeding (Nginx tries them on api2),
    no create is done twice; with the link back, api1 serves again without a deploy."""
    site.settle()
    api1 = site.hosts["api1"]
    retried_before = site.retried_reads()
    started = time.monotonic()
    with Load(80, tag="cut", threads=50, limit=120, host=site.hosts["front"].address) as load:
        load.wait_sent(500, timeout=60)
        api1.cut()
        cut_at = time.monotonic()
        try:
            time.sleep(10)
        finally:
            api1.restore()
        restored_at = time.monotonic()
        # Back without a deploy: reads through the front reach api1 again (bounded wait).
        seen = None
        for n in range(600):
            status, answer = site.post("/api/v0/ledger/read", {"id": f"back-{n}"})
            if status == 200 and answer["pid"].startswith("api1:"):
                seen = time.monotonic() - restored_at
                break
            time.sleep(0.05)
        assert seen is not None, "api1 does not serve again after its link is back"
        time.sleep(2)
    seconds = round(time.monotonic() - started, 1)
    figures = load.figures(site.ledger())
    during = Counter(f"{kind} {why}" for t, kind, why in load.failures if t >= cut_at)
    print(f"cut api1 under load: {figures}; failures after the cut: {dict(during)}")
    FIGURES["cut link"] = {
        "seconds": seconds, "clients": 50, "link down (s)": round(restored_at - cut_at, 1),
        "requests": figures["requests"], "failed": figures["failed"],
        "failed kinds": figures["causes"], "retried reads": site.retried_reads() - retried_before,
        "duplicated writes": figures["creates recorded twice"],
        "creates done whose answer was lost": figures["creates failed but done"],
        "serves again after (s)": round(seen, 1),
    }  # fmt: skip
    assert figures["failed"]["read"] == 0, figures["causes"]
    assert figures["creates recorded twice"] == 0
    assert figures["creates answered 200 but not recorded"] == 0
    assert site.retried_reads() > retried_before  # Nginx did try reads again elsewhere


def test_failed_smoke_test_rolls_every_host_back(site: Site) -> None:
    """A release whose smoke test (through the front) fails: every host serves the release
    from before the deploy again."""
    before = {name: site.current(name) for name in NAMES}
    broken = site.folder / "broken" / PRODUCT
    shutil.copytree(site.product, broken)
    echo = broken / "api" / "v0" / "echo.py"
    echo.write_text(echo.read_text() + "\n\ndef read(request):\n    raise RuntimeError('broken')\n")
    done = site.fab("deploy", product=broken)
    assert done.returncode == 1
    assert "smoke test through Nginx" in done.stdout and "ROLLED BACK" in done.stdout
    for name in NAMES:
        assert site.current(name) == before[name]
        assert f"{name} serves {before[name]} again" in done.stdout
    for name in WORKERS:
        for worker in site.workers(name):
            assert site.release(name, worker.address) == before[name]
    assert site.post("/api/v0/echo/read", {"a": 1}) == (200, {"a": 1, "server": PRODUCT})
    for name in NAMES:
        assert not site.hosts[name].path(site.layout.lock).exists()


def test_killed_deployer_leaves_the_lock_unlock_recovers(site: Site) -> None:
    """The deployer killed mid-deploy: the lock stays on every host, a new deploy is refused
    naming its holder; `fab unlock` and a new deploy recover."""
    before = site.current("api1")

    def kill(proc: subprocess.Popen) -> None:
        os.killpg(proc.pid, signal.SIGKILL)

    code, _ = site.fab_until(("deploy",), r"^==> prepare release", kill)
    assert code == -signal.SIGKILL
    for name in NAMES:
        assert site.hosts[name].path(site.layout.holder).is_file(), f"{name}: no lock left"
        assert site.current(name) == before
    refused = site.fab("deploy")
    assert refused.returncode == 1 and "deploy lock is held by" in refused.stdout
    unlocked = site.fab("unlock")
    assert unlocked.returncode == 0, unlocked.stdout[-2000:]
    removed = re.findall(r"^\[(\w+)\]   removed the lock of ", unlocked.stdout, re.M)
    assert sorted(removed) == sorted(NAMES), unlocked.stdout[-2000:]
    done = site.fab("deploy")
    assert done.returncode == 0, done.stdout[-4000:]
    release = released(done.stdout)
    assert all(site.current(n) == release for n in NAMES)


def test_host_lost_mid_deploy_stops_it_others_serve(site: Site) -> None:
    """api2 loses its link while the deploy prepares it (as its virtualenv step begins):
    the deploy stops, in one line naming api2 and the step, and the other hosts serve
    their release as before."""
    before = {name: site.current(name) for name in NAMES}
    api2 = site.hosts["api2"]

    def cut(proc: subprocess.Popen) -> None:
        api2.cut()

    started = time.monotonic()
    try:
        code, output = site.fab_until(("deploy",), r"^\[api2\] virtualenv with apiphant",
                                      cut, timeout=240)  # fmt: skip
        took = round(time.monotonic() - started, 1)
        assert code == 1
        last = output.strip().splitlines()[-1]
        print(f"lost host: exit {code} after {took}s: {last}")
        # One line: which host, which step (the one running when the link went), and that
        # nothing live had changed anywhere.
        assert re.search(r"nothing live was touched: api2: connection lost.* during the step ",
                         last), last  # fmt: skip
        FIGURES["host lost mid-deploy: stopped after (s)"] = took
        for name in ("front", "api1"):
            assert site.current(name) == before[name]
            assert not site.hosts[name].path(site.layout.lock).exists()
        for worker in site.workers("api1"):
            assert site.release("api1", worker.address) == before["api1"]
        for n in range(10):
            status, answer = site.post("/api/v0/echo/read", {"n": n})
            assert (status, answer) == (200, {"n": n, "server": PRODUCT})
    finally:
        api2.restore()
    # Its lock stays (nobody could take it away); unlock it, and api2 serves as before.
    assert site.current("api2") == before["api2"]
    unlocked = site.fab("unlock", "api2")
    assert unlocked.returncode == 0
    for worker in site.workers("api2"):
        assert site.release("api2", worker.address) == before["api2"]


def test_host_lost_after_the_switch_the_others_roll_back_and_fab_rollback_converges(
    site: Site,
) -> None:
    """api2 loses its link after its switch, as its workers restart: the deploy rolls the
    front and api1 back all the same (before, api2's failed rollback stopped them on the new
    release), says api2's "connection lost" in words, and which host serves which release.
    With the link back, ``fab status`` says loudly that the hosts differ, and ``fab
    rollback`` brings every host to one release again."""
    before = {name: site.current(name) for name in NAMES}
    assert len(set(before.values())) == 1, before
    api2 = site.hosts["api2"]

    def cut(proc: subprocess.Popen) -> None:
        api2.cut()

    started = time.monotonic()
    try:
        code, output = site.fab_until(("deploy",), r"^\[api2\] restart myproduct-api-", cut,
                                      timeout=300)  # fmt: skip
        FIGURES["host lost after the switch: deploy ended after (s)"] = round(
            time.monotonic() - started, 1)  # fmt: skip
        assert code == 1
        new = re.search(r"release (\d{14}) to front", output).group(1)
        for name in ("front", "api1"):
            assert site.current(name) == before[name]
        for worker in site.workers("api1"):
            assert site.release("api1", worker.address) == before["api1"]
        for n in range(10):
            status, answer = site.post("/api/v0/echo/read", {"n": n})
            assert (status, answer) == (200, {"n": n, "server": PRODUCT})
        # Who serves what, api2 by name and in words; the last line says what was not done.
        table = output[output.rindex("==> HOSTS SERVE DIFFERENT RELEASES"):]
        assert re.search(rf"^  front +{before['front']}$", table, re.M), table
        assert re.search(rf"^  api1 +{before['api1']}$", table, re.M), table
        assert re.search(r"^  api2 +unknown: connection lost", table, re.M), table
        last = output.strip().splitlines()[-1]
        assert "api2: connection lost" in last and "NOT ROLLED BACK: api2" in last, last
        assert "ROLLED BACK: api1 serves" in last, last
        assert "EOFError" not in output and "SSHException" not in output
    finally:
        api2.restore()
    assert site.current("api2") == new  # it had switched when its link went
    status = site.fab("status")
    assert status.returncode == 1, status.stdout[-3000:]
    assert "HOSTS SERVE DIFFERENT RELEASES" in status.stdout
    assert re.search(rf"^  api2 +{new} \(failed", status.stdout, re.M), status.stdout[-3000:]
    # api2's lock stays (the deploy could not reach it to release it): unlock, roll back.
    assert site.fab("unlock", "api2").returncode == 0
    back = site.fab("rollback")
    assert back.returncode == 0, back.stdout[-4000:]
    assert f"front already serves {before['front']}" in back.stdout
    for name in NAMES:
        assert site.current(name) == before[name]
    for name in WORKERS:
        for worker in site.workers(name):
            assert site.release(name, worker.address) == before[name]
    status = site.fab("status")
    assert status.returncode == 0 and "every host serves one release" in status.stdout


def test_a_deploy_brings_hosts_on_different_releases_to_one(site: Site) -> None:
    """api1 alone rolled back leaves the hosts on two releases; the next deploy ends with
    every host on its release."""
    alone = site.fab("rollback", "api1")
    assert alone.returncode == 0, alone.stdout[-3000:]
    assert site.current("api1") != site.current("api2")
    assert site.fab("status").returncode == 1
    done = site.fab("deploy")
    assert done.returncode == 0, done.stdout[-4000:]
    release = released(done.stdout)
    assert all(site.current(n) == release for n in NAMES)
    # Every API host's own smoke test, besides the front's through Nginx.
    for name in WORKERS:
        assert f"[{name}] smoke test of this API host, on its first worker" in done.stdout


#: [logs] for the rotation test: a check every second, a log rotated past 64 KiB. The test
#: writes at most about 8 x 64 KiB to one log (300 lines and at most 100 more), under
#: logrotate's 14 rotated files kept, so no rotated file it reads is deleted by a later one.
LOGS = '\n[logs]\nmax_size = "64K"\ncheck_every = 1\n'
#: Each line the test writes is about 1.1 KB: its mark, and this in the request's query.
PAD = "x" * 1000


def test_every_host_rotates_its_logs_daemons_reopen_no_line_lost(site: Site) -> None:
    """No cron and no systemd on the hosts: each one's rotation program (Supervisor's) runs
    logrotate every [logs] check_every. Numbered requests grow the front's Nginx access log
    and an API worker's log past [logs] max_size, through the front and straight to the
    worker: both logs are rotated, Nginx (USR1) and supervisord (USR2) write to new files
    afterwards, and every numbered line is found exactly once across the current and rotated
    files. The system's own logrotate (cron's, systemd's) is not given the deployment's logs,
    so nothing rotates them twice."""
    site.config_path.write_text(site.deploy_toml() + LOGS)
    done = site.fab("deploy")
    assert done.returncode == 0, done.stdout[-4000:]
    layout = site.layout
    for name in NAMES:
        host = site.hosts[name]
        for _ in range(100):  # restarted by the deploy's sync: RUNNING after its startsecs
            if site.programs(name).get(layout.rotator) == "RUNNING":
                break
            time.sleep(0.1)
        assert site.programs(name).get(layout.rotator) == "RUNNING", name
        # One loop (the one of check_every = 300 is gone), with the new interval.
        loop = host.exec("pgrep -af '[c]onfig/rotate --loop'").stdout.strip().splitlines()
        assert len(loop) == 1 and loop[0].endswith("/config/rotate --loop 1"), (name, loop)
        # The system's logrotate (Debian's cron job or systemd timer) reads /etc/logrotate.d,
        # which no longer names the deployment's logs.
        assert not host.path(layout.logrotate).is_symlink(), name
        system = host.exec("logrotate -d /etc/logrotate.conf 2>&1").stdout
        assert "rotating pattern: /var/log/nginx/*.log" in system, system
        assert layout.logs + "/" not in system, system
    # Nginx's workers reopen their logs by name: the folder is open to them (only) on the front.
    for name, group in (("front", "www-data"), ("api1", "adm"), ("api2", "adm")):
        folder = site.hosts[name].exec(f"stat -c '%a %U %G' {layout.logs}").stdout.split()
        assert folder == ["750", "root", group], (name, folder)
    worker = site.workers("api1")[0]
    access = layout.logs + "/nginx-access.log"
    program = layout.log(worker.program)

    def send(mark: str) -> None:
        """One line in the front's access log (and some worker's), one in ``worker``'s."""
        path = f"/api/v0/echo/read?mark={mark}&pad={PAD}"
        status, _ = site.post(path, {"mark": mark})
        assert status == 200, mark
        host, _, port = worker.address.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("POST", path.replace("mark=", "mark=w"), json.dumps({}),
                         {"Content-Type": "application/json"})  # fmt: skip
            assert conn.getresponse().status == 200, mark
        finally:
            conn.close()

    def rotated(name: str, log: str, mark: str) -> bool:
        """``mark`` is in a rotated file of ``log``."""
        return any(mark in text for file, text in site.generations(name, log).items()
                   if file != log.rpartition("/")[2])  # fmt: skip

    def current(name: str, log: str) -> str:
        return site.generations(name, log).get(log.rpartition("/")[2], "")

    # Before and during rotations: 300 numbered requests, one every 20 ms or so, about 330 KB
    # in each log; the rotation program checks every second meanwhile. More than max_size is
    # written after the first of them, so a rotation takes it.
    marks: list[str] = []
    failures: list[str] = []

    def stream() -> None:
        for n in range(300):
            mark = f"rot-{n:04d}-"
            try:
                send(mark)
            except (AssertionError, OSError, http.client.HTTPException) as error:
                failures.append(f"{mark}: {error!r}")
                return
            marks.append(mark)
            time.sleep(0.02)

    sender = threading.Thread(target=stream, daemon=True)
    sender.start()
    sender.join(120)
    assert not sender.is_alive() and failures == [] and len(marks) == 300, failures
    deadline = time.monotonic() + 30
    while not (rotated("front", access, marks[0]) and rotated("api1", program, "w" + marks[0])):
        assert time.monotonic() < deadline, "the logs were not rotated within 30 s"
        time.sleep(0.2)
    # After: the daemons reopened their logs, so a new line lands in the current file.
    after = []
    for n in range(100):
        after.append(f"after-{n:04d}-")
        send(after[-1])
        if after[-1] in current("front", access) and "w" + after[-1] in current("api1", program):
            break
        time.sleep(0.1)
    else:
        where = {f"{name}:{file}": (len(text), after[-1] in text, "w" + after[-1] in text)
                 for name, log in (("front", access), ("api1", program))
                 for file, text in site.generations(name, log).items()}  # fmt: skip
        errors = site.hosts["front"].read(layout.logs + "/nginx-error.log")[-2000:]
        raise AssertionError(f"no line in the current logs after their rotation: not reopened; "
                             f"{where}; Nginx's errors: {errors}")  # fmt: skip
    # Every line, exactly once, across the current and rotated files; read with the rotation
    # program stopped (its stop waits for a run under way), so no file moves while read.
    for name in NAMES:
        stopped = site.hosts[name].exec(f"supervisorctl stop {layout.rotator}")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    try:
        front = site.generations("front", access)
        mine = site.generations("api1", program)
        print(f"rotated: front {sorted(front)}; api1 {sorted(mine)}")
        assert len(front) > 1 and len(mine) > 1
        wanted = Counter(marks + after)

        def found(texts, prefix: str = "") -> Counter:
            return Counter(re.findall(rf"[?&]mark={prefix}((?:rot|after)-[0-9]{{4}}-)",
                                      "".join(texts)))  # fmt: skip

        assert found(front.values()) == wanted
        assert found(mine.values(), "w") == wanted
        # The front's requests reached the main pool's workers: each line in one of their logs.
        workers = found(text for name in WORKERS for w in site.workers(name)
                        for text in site.generations(name, layout.log(w.program)).values())
        assert set(workers) == set(wanted), sorted(set(wanted) - set(workers))[:20]
        for name in NAMES:  # logrotate said nothing: no error, no skipped log
            rotator = "".join(site.generations(name, layout.log(layout.rotator)).values())
            assert rotator == "", (name, rotator[-2000:])
    finally:
        for name in NAMES:
            site.hosts[name].exec(f"supervisorctl start {layout.rotator}")
    FIGURES["log rotation"] = {"front access log files": len(front), "worker log files": len(mine)}


def test_background_runs_on_exactly_one_host(site: Site) -> None:
    """All the module long (deploys, rollbacks, a killed deployer, lost hosts):
    the background runner ran on api1 only, never twice at once."""
    assert site.watch.count() == {"front": 0, "api1": 1, "api2": 0}
    assert site.watch.samples > 100
    assert site.watch.most == 1, f"{site.watch.most} background runners at once"
    assert set(site.watch.where) == {"api1"}, site.watch.where


def test_figures(site: Site) -> None:
    """Print what the module measured (the fixture adds the totals at teardown)."""
    print(f"multi-host figures so far: {json.dumps(FIGURES)}", file=sys.stderr)
