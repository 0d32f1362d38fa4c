"""The postgres role end to end, on separate test hosts (tests/testhosts.py): a front, an API
host and a database host, plus an outsider in no deploy.toml.

Then its backups: the loop takes one by itself and copies it to the API host, whose key for
the copies refuses a shell (and anyone but the database host); ``fab db backup``, rows
deleted, ``fab db restore`` refused without --yes (nothing changes) and done with it (the
rows are back, maintenance off again); ``fab db backups``, ``fab db psql``, ``fab status``.

tests/products/notebook is deployed (its migration applied in the release phase), notes are
created through the front, a second deploy with a new migration runs under a bounded write
load (no create fails, every acknowledged one is in the table), the database refuses the
outsider's connection by its address and admits the API host's, the data outlives the
redeploy, and the password is in no output, history or log. The hosts' base tree has
Debian's postgresql (they have no route to a mirror): a tree of its own, cached like the
others. Every host, namespace, link and mount is removed at the end, also on failure.
"""

import os
import re
import shutil
import subprocess
import sys
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
#: The backup loop's test schedule: its first backup comes at its start, the next ones
#: this many seconds apart; enough are kept that none a test takes goes meanwhile.
BACKUP_EVERY, KEEP = 30, 20
BACKUPS = f"{DATA}/backups"
#: How long a test waits for what the loop does by itself (a generous bound, not a timing).
LOOP_WAIT = 90


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

[database]
backup_every = {BACKUP_EVERY}
keep_backups = {KEEP}
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
    _no_secret(site, done.stdout, done.stderr,
               site.hosts["db"].read("/var/log/notebook/notebook-postgres.log"))  # fmt: skip


def _dumps(host: testhosts.Host) -> list[str]:
    done = host.exec(f"ls -1 {BACKUPS} 2>/dev/null | grep -E '[.]dump$' || true")
    return sorted(done.stdout.split())


def _wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + LOOP_WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"not within {LOOP_WAIT}s: {what}"
        time.sleep(0.5)


def test_the_loop_backs_up_by_itself_and_copies_each_to_the_api_host(site: Site) -> None:
    db, api = site.hosts["db"], site.hosts["api"]
    _wait_for(lambda: _dumps(db), "the loop's first backup")
    first = _dumps(db)[0]
    assert db.exec(f"stat -c '%U %a' {BACKUPS}").stdout == "root 700\n"
    assert db.exec(f"cd {BACKUPS} && sha256sum -c {first}.sha256").returncode == 0
    _wait_for(lambda: first in _dumps(api), "its copy on the API host")
    assert api.exec(f"stat -c '%U %a' {BACKUPS}").stdout == "notebook-backup 700\n"
    assert (api.read(f"{BACKUPS}/{first}.sha256") == db.read(f"{BACKUPS}/{first}.sha256"))
    assert api.exec(f"cd {BACKUPS} && sha256sum -c {first}.sha256").returncode == 0
    log = db.read("/var/log/notebook/notebook-backup.log")
    assert f"backup: {first} " in log and f"backup: {first} copied to api" in log
    # it started once the database and both ends of the copies were there
    assert "FAILED" not in log and "NOT copied" not in log, log
    status = site.fab("status", "db")
    assert status.returncode == 0
    assert "  last backup: notebook-" in status.stdout and " bytes " in status.stdout


def test_the_copy_key_stores_backups_and_refuses_a_shell(site: Site) -> None:
    """The database host's key, used by hand: a shell command, a pty, a name outside the
    folder are refused; from another address (the outsider, with the same key) sshd refuses
    it before anything runs."""
    db, api = site.hosts["db"], site.hosts["api"]
    ssh = (f"ssh -i {DATA}/backup_key -o IdentitiesOnly=yes -o BatchMode=yes "
           f"-o UserKnownHostsFile={DATA}/known_hosts notebook-backup@{api.address}")
    for command in ("id", "sh -c id", f"put ../../../tmp/x.dump {'0' * 64}",
                    f"put notebook-20260101T000000Z.dump {'0' * 64}; id"):
        done = db.exec(f"{ssh} {command!r} </dev/null")
        assert done.returncode != 0 and "uid=" not in done.stdout, (command, done.stdout)
        assert "refused: this key only stores notebook's backups" in done.stderr, done.stderr
    tty = db.exec(f"{ssh} -tt id </dev/null")
    assert tty.returncode != 0 and "uid=" not in tty.stdout
    assert "/tmp/x.dump" not in api.exec("ls /tmp").stdout
    outsider = site.hosts["outsider"]
    outsider.exec("mkdir -p /tmp/k && chmod 700 /tmp/k")
    outsider.path("/tmp/k/key").write_text(db.read(f"{DATA}/backup_key"))
    outsider.exec("chmod 600 /tmp/k/key")
    done = outsider.exec(f"ssh -i /tmp/k/key -o IdentitiesOnly=yes -o BatchMode=yes "
                         f"-o StrictHostKeyChecking=no notebook-backup@{api.address} id")
    assert done.returncode == 255 and "Permission denied" in done.stderr, done.stderr


def test_backup_delete_and_restore_gives_the_rows_back(site: Site) -> None:
    rows = "SELECT id, token FROM notes ORDER BY id"
    before = site.sql(rows)
    assert before.count("\n") >= 20
    done = site.fab("db", "backup")
    assert done.returncode == 0, done.stdout[-3000:]
    name = next(w for w in done.stdout.split() if w.startswith("notebook-") and
                w.endswith(".dump"))  # fmt: skip
    assert f"backup: {name} " in done.stdout and " bytes" in done.stdout
    site.sql("DELETE FROM notes WHERE id % 2 = 0")
    deleted = site.sql(rows)
    assert deleted != before
    refused = site.fab("db", "restore", name)
    assert refused.returncode == 2
    assert refused.stdout.strip().splitlines() == [
        f"error: fab db restore: replaces every table of database notebook with {name}: "
        "add --yes"]
    assert site.sql(rows) == deleted
    assert not site.hosts["front"].exec("ls /opt/notebook/shared/maintenance").returncode == 0
    restored = site.fab("db", "restore", name, "--yes")
    assert restored.returncode == 0, restored.stdout[-3000:]
    assert "maintenance: on" in restored.stdout and "maintenance: off" in restored.stdout
    assert site.sql(rows) == before
    assert site.create("after-restore").status_code == 200
    listed = site.fab("db", "backups")
    assert listed.returncode == 0
    assert listed.stdout.count(name) == 2  # on the database host, and its copy on api
    _no_secret(site, done.stdout, restored.stdout, listed.stdout)


def test_a_restore_of_a_broken_backup_leaves_maintenance_on_and_the_data_as_it_was(site: Site):
    db = site.hosts["db"]
    name = "notebook-20200101T000000Z.dump"
    db.exec(f"cd {BACKUPS} && printf 'not a dump' > {name} && sha256sum {name} > {name}.sha256")
    before = site.sql("SELECT count(*) FROM notes")
    try:
        done = site.fab("db", "restore", name, "--yes")
        assert done.returncode == 1
        assert "maintenance stays ON" in done.stdout
        assert site.hosts["front"].exec("ls /opt/notebook/shared/maintenance").returncode == 0
        assert site.sql("SELECT count(*) FROM notes") == before
    finally:
        db.exec(f"rm -f {BACKUPS}/{name} {BACKUPS}/{name}.sha256")
        assert site.fab("maintenance", "--off").returncode == 0


def test_a_restore_leaves_maintenance_on_when_it_was_on_before(site: Site) -> None:
    front = site.hosts["front"]
    name = _dumps(site.hosts["db"])[-1]
    assert site.fab("maintenance", "--on").returncode == 0
    try:
        done = site.fab("db", "restore", name, "--yes")
        assert done.returncode == 0, done.stdout[-3000:]
        assert "maintenance was on already on front: it stays on" in done.stdout
        assert front.exec("ls /opt/notebook/shared/maintenance").returncode == 0
    finally:
        assert site.fab("maintenance", "--off").returncode == 0


def test_psql_opens_a_session_as_the_products_role(site: Site) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fabric", "-i", str(site.key), "db", "psql",
         f"--product={site.product}"], cwd=CHECKOUT, capture_output=True, text=True,
        input="SELECT current_user, count(*) > 0 FROM notes;\n\\q\n", timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert re.search(r"\bnotebook +\| t\b", done.stdout), done.stdout[-2000:]
