"""The postgres role end to end, on separate test hosts (tests/testhosts.py): a front, an API
host and a database host, plus an outsider in no deploy.toml.

tests/products/notebook is deployed (its migration applied in the release phase), notes are
created through the front, a second deploy with a new migration runs under a bounded write
load (no create fails, every acknowledged one is in the table), the database refuses the
outsider's connection by its address and admits the API host's, the data outlives the
redeploy, and the password is in no output, history or log. The hosts' base tree has
Debian's postgresql (they have no route to a mirror): a tree of its own, cached like the
others. Every host, namespace, link and mount is removed at the end, also on failure.
"""

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tests import testhosts
from tests.deploy_helpers import CHECKOUT, fab

NAMES = ["front", "api", "db", "outsider"]
PACKAGES = (*testhosts.PACKAGES, "postgresql")
NEEDS = ("mmdebstrap", "unshare", "nsenter", "ip", "ssh-keygen")
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="builds network namespaces: needs root"),
    pytest.mark.skipif(not all(shutil.which(n) for n in NEEDS), reason=f"needs {', '.join(NEEDS)}"),
]
SERVER_NAME = "notes.example.com"
DATA = "/var/lib/apiphant/notebook"
#: The second deploy's migration.
SECOND = "ALTER TABLE notes ADD COLUMN created timestamptz NOT NULL DEFAULT now();\n"
#: How many creates the load sends at most, how many clients send them, and the pause
#: between two of one client's (the load lasts as long as the deploy, within these).
LOAD_MAX, CLIENTS, PAUSE = 30000, 3, 0.01


class Site:
    def __init__(self, hosts: testhosts.Hosts, folder: Path, key: Path) -> None:
        self.hosts, self.folder, self.key = hosts, folder, key
        self.product = folder / "notebook"
        shutil.copytree(CHECKOUT / "tests" / "products" / "notebook", self.product,
                        ignore=shutil.ignore_patterns("__pycache__", ".postgres"))  # fmt: skip
        h = hosts
        (self.product / "deploy.toml").write_text(f"""
product = "notebook"
server_names = ["{SERVER_NAME}"]

[nginx]
read_timeout = 10

[hosts.front]
ssh = "{h["front"].ssh}"
private_address = "{h["front"].address}"
roles = ["nginx"]

[hosts.api]
ssh = "{h["api"].ssh}"
private_address = "{h["api"].address}"
roles = ["api"]
workers = 2

[hosts.db]
ssh = "{h["db"].ssh}"
private_address = "{h["db"].address}"
roles = ["postgres"]
""")

    def fab(self, *args: str) -> subprocess.CompletedProcess:
        return fab(*args, f"--product={self.product}", key=self.key)

    def url(self, action: str) -> str:
        return f"http://{self.hosts['front'].address}/api/v0/notes/{action}"

    def create(self, token: str, session: requests.Session | None = None) -> requests.Response:
        return (session or requests).post(self.url("create"), json={"token": token},
                                          headers={"Host": SERVER_NAME}, timeout=15)  # fmt: skip

    def sql(self, query: str) -> str:
        """A query on the database host as its superuser, through the socket."""
        done = self.hosts["db"].exec(
            f"cd / && runuser -u postgres -- psql -h {DATA}/socket -d notebook -XAtc \"{query}\"")
        assert done.returncode == 0, done.stderr
        return done.stdout

    def database_pid(self) -> str:
        done = self.hosts["db"].exec("supervisorctl pid notebook-postgres")
        assert done.returncode == 0 and done.stdout.strip().isdigit(), done.stdout
        return done.stdout.strip()

    @property
    def password(self) -> str:
        return self.hosts["db"].read(f"{DATA}/password").strip()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("postgres-hosts")
    key = folder / "deployer_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    hosts = testhosts.Hosts(NAMES, (folder / "deployer_key.pub").read_text(), packages=PACKAGES)
    try:
        hosts.start()
        yield Site(hosts, folder, key)
    finally:
        problems = hosts.close()
        assert problems == [], f"test hosts left behind: {problems}"


def _no_secret(site: Site, *texts: str) -> None:
    password = site.password
    assert len(password) == 48
    for text in texts:
        assert password not in text


def test_a_dry_run_or_a_deploy_that_cannot_lock_changes_no_host(site: Site) -> None:
    """Before the first deploy: its dry run, and a deploy that finds the API host's lock held,
    leave no database folder (the password is made under the lock, not by the question
    asked before it)."""
    dry = site.fab("deploy", "--dry-run")
    assert dry.returncode == 0, dry.stdout[-3000:]
    absent = "test ! -e /var/lib/apiphant"
    assert all(site.hosts[n].exec(absent).returncode == 0 for n in NAMES)
    api = site.hosts["api"]
    taken = api.exec("mkdir -p /opt/notebook/deploy.lock && "
                     "echo 'another deploy' > /opt/notebook/deploy.lock/holder")  # fmt: skip
    assert taken.returncode == 0, taken.stderr
    try:
        held = site.fab("deploy")
    finally:
        api.exec("rm -rf /opt/notebook/deploy.lock")
    assert held.returncode == 1
    assert "api: the deploy lock is held by another deploy" in held.stdout
    assert [n for n in NAMES if site.hosts[n].exec(absent).returncode != 0] == []


def test_a_deploy_makes_the_database_migrates_it_and_serves_from_it(site: Site) -> None:
    done = site.fab("deploy")
    assert done.returncode == 0, done.stdout[-5000:]
    assert "[db]   postgres: cluster made in /var/lib/apiphant/notebook/data" in done.stdout
    assert "applied 0001_create_notes.sql" in done.stdout
    db = site.hosts["db"]
    assert db.exec(f"stat -c '%U %a' {DATA}/password").stdout == "root 600\n"
    assert db.exec(f"stat -c '%U %a' {DATA}/data").stdout == "postgres 700\n"
    made = [site.create(f"first-{n}") for n in range(20)]
    assert [r.status_code for r in made] == [200] * 20
    ids = [r.json()["id"] for r in made]
    read = requests.post(site.url("read"), json={"id": ids[3]}, headers={"Host": SERVER_NAME},
                         timeout=10)  # fmt: skip
    assert read.json() == {"id": ids[3], "token": "first-3"}
    status = site.fab("status", "db")
    assert status.returncode == 0 and "notebook-postgres" in status.stdout
    assert "RUNNING" in status.stdout.split("database:")[1]
    history = site.fab("history")
    logs = site.fab("logs", "db")
    _no_secret(site, done.stdout, done.stderr, status.stdout, history.stdout, logs.stdout,
               site.hosts["api"].read("/opt/notebook/history.log"))  # fmt: skip


def test_only_the_deployments_hosts_are_admitted_by_address(site: Site) -> None:
    """The outsider, with the right password, is refused by pg_hba; the API host is let in.
    Each tries with the network's own libpq (psql), the password in its environment."""
    db = site.hosts["db"].address
    connect = (f"PGPASSWORD={site.password} psql 'host={db} port=5432 dbname=notebook "
               "user=notebook connect_timeout=5' -XAtc 'SELECT 1'")  # fmt: skip
    inside = site.hosts["api"].exec(connect)
    assert inside.returncode == 0 and inside.stdout == "1\n", inside.stderr
    outside = site.hosts["outsider"].exec(connect)
    assert outside.returncode != 0
    assert "no pg_hba.conf entry for host" in outside.stderr, outside.stderr
    assert site.hosts["outsider"].address in outside.stderr


def test_a_redeploy_with_a_migration_under_writes_loses_nothing(site: Site) -> None:
    (site.product / "migrations" / "0002_notes_created.sql").write_text(SECOND)
    before = site.sql("SELECT count(*) FROM notes").strip()
    pid = site.database_pid()
    acknowledged: list[str] = []
    failed: list[str] = []
    stop = threading.Event()

    def client(n: int) -> None:
        with requests.Session() as session:
            for i in range(LOAD_MAX // CLIENTS):
                if stop.is_set():
                    return
                token = f"load-{n}-{i}"
                try:
                    answer = site.create(token, session)
                except requests.RequestException as error:
                    failed.append(f"{token}: {error}")
                    continue
                if answer.status_code == 200 and answer.json()["token"] == token:
                    acknowledged.append(token)
                else:
                    failed.append(f"{token}: {answer.status_code} {answer.text[:200]}")
                time.sleep(PAUSE)

    clients = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for each in clients:
        each.start()
    try:
        done = site.fab("deploy")
    finally:
        stop.set()
        for each in clients:
            each.join(60)
    assert done.returncode == 0, done.stdout[-5000:]
    assert "applied 0002_notes_created.sql" in done.stdout
    assert failed == []
    assert acknowledged, "the load sent nothing during the deploy"
    stored = set(site.sql("SELECT token FROM notes").split())
    assert set(acknowledged) <= stored
    assert {f"first-{n}" for n in range(20)} <= stored  # the first deploy's data stayed
    assert int(before) >= 20
    assert site.sql("SELECT count(*) FROM notes WHERE created IS NULL").strip() == "0"
    assert "cluster in /var/lib/apiphant/notebook/data (PostgreSQL" in done.stdout
    # No setting that takes a restart changed: the database was not restarted.
    assert "postgres: notebook-postgres answers, its configs read again" in done.stdout
    assert "restarting notebook-postgres" not in done.stdout and site.database_pid() == pid
    _no_secret(site, done.stdout, done.stderr,
               site.hosts["db"].read("/var/log/notebook/notebook-postgres.log"))  # fmt: skip


def test_a_deploy_that_changes_max_connections_restarts_the_database_and_says_so(site) -> None:
    """pool_size 50 for two workers: max_connections 120, which takes a restart."""
    pid = site.database_pid()
    toml = site.product / "deploy.toml"
    toml.write_text(toml.read_text() + "\n[database]\npool_size = 50\n")
    done = site.fab("deploy")
    assert done.returncode == 0, done.stdout[-5000:]
    said = [line for line in done.stdout.splitlines() if "restarting notebook-postgres" in line]
    assert said == ["[db]   postgres: restarting notebook-postgres: max_connections changed, "
                    "which takes a restart (the programs' connections are cut and their pools "
                    "reconnect)"]  # fmt: skip
    assert site.database_pid() != pid
    assert site.sql("SHOW max_connections").strip() == "120"
    made = site.create("after-restart")
    assert made.status_code == 200, made.text
    assert "after-restart" in site.sql("SELECT token FROM notes").split()
