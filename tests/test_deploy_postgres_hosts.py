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
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import requests

from apiphant.deploy.host import backups
from apiphant.deploy.host.shell import join
from apiphant.deploy.layout import Layout
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
#: A test target whose create is a new row each time it runs (no unique key): a create run
#: twice shows as two rows. With its table, added to the product before the first deploy.
ENTRIES = '''\
"""Test target: each create that runs is a new row, so one run twice shows."""

from apiphant import db, field


def create(request):
    token = field(request, "token", is_required=True, valid_type=str, max_length=200)
    with db.transaction() as conn:
        row = conn.execute(
            "INSERT INTO entries (token) VALUES (%s) RETURNING id", (token,)
        ).fetchone()
    return {"id": row[0], "token": token}
'''
ENTRIES_TABLE = "CREATE TABLE entries (id bigserial PRIMARY KEY, token text NOT NULL);\n"
#: The cut link with Idempotency-Key: clients, how long the link is down (longer than the
#: front's read_timeout, so a create sent before the cut gets no answer), and how long one
#: logical create may take with its retries.
KEYED_CLIENTS, CUT_SECONDS, CREATE_DEADLINE = 6, 12, 90
#: The database killed under writes: clients, and how long the service may take to return.
KILL_CLIENTS, RETURN_WITHIN = 4, 60
#: PostgreSQL answers on the database host itself (its socket, as its superuser).
ASK = f"cd / && runuser -u postgres -- psql -h {DATA}/socket -d notebook -XAtc 'SELECT 1'"
#: What each scenario measured, printed at the module's end.
FIGURES: dict = {}
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
        (self.product / "api" / "v0" / "entries.py").write_text(ENTRIES)
        (self.product / "migrations" / "0002_create_entries.sql").write_text(ENTRIES_TABLE)
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

    def url(self, action: str, target: str = "notes") -> str:
        return f"http://{self.hosts['front'].address}/api/v0/{target}/{action}"

    def create(self, token: str, session: requests.Session | None = None) -> requests.Response:
        return (session or requests).post(self.url("create"), json={"token": token},
                                          headers={"Host": SERVER_NAME}, timeout=15)  # fmt: skip

    def sql(self, query: str) -> str:
        """A query on the database host as its superuser, through the socket."""
        done = self.hosts["db"].exec(
            f"cd / && runuser -u postgres -- psql -h {DATA}/socket -d notebook -XAtc \"{query}\"")
        assert done.returncode == 0, done.stderr
        return done.stdout

    def worker_pids(self) -> dict[str, str]:
        done = self.hosts["api"].exec("supervisorctl status")
        return {line.split()[0]: line.split()[3].rstrip(",") for line in done.stdout.splitlines()
                if line.startswith("notebook-api-") and "RUNNING" in line}  # fmt: skip

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
    # the backups' key, made under the lock, and its public half in the copy host's one line
    assert db.exec(f"stat -c '%U %a' {DATA}/backup_key").stdout == "root 600\n"
    push = " ".join(db.read(f"{DATA}/backup_key.pub").split()[:2])
    line = site.hosts["api"].read(f"{DATA}/receiver/.ssh/authorized_keys")
    assert line == (f'restrict,from="{db.address}",command="{DATA}/receive" {push}\n')
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
    (site.product / "migrations" / "0003_notes_created.sql").write_text(SECOND)
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
    assert "applied 0003_notes_created.sql" in done.stdout
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
    assert "[db]   postgres: restarting" not in done.stdout and site.database_pid() == pid
    _no_secret(site, done.stdout, done.stderr,
               site.hosts["db"].read("/var/log/notebook/notebook-postgres.log"))  # fmt: skip


def test_a_deploy_that_changes_max_connections_restarts_the_database_and_says_so(site) -> None:
    """pool_size 50 for two workers: max_connections 120, which takes a restart."""
    pid = site.database_pid()
    toml = site.product / "deploy.toml"
    text = toml.read_text()
    assert text.count("\n[database]\n") == 1
    toml.write_text(text.replace("\n[database]\n", "\n[database]\npool_size = 50\n"))
    done = site.fab("deploy")
    assert done.returncode == 0, done.stdout[-5000:]
    said = [line for line in done.stdout.splitlines()
            if line.startswith("[db]   postgres: restart")]
    assert said == ["[db]   postgres: restarting notebook-postgres: max_connections changed, "
                    "which takes a restart (the programs' connections are cut and their pools "
                    "reconnect)"]  # fmt: skip
    assert site.database_pid() != pid
    assert site.sql("SHOW max_connections").strip() == "120"
    made = site.create("after-restart")
    assert made.status_code == 200, made.text
    assert "after-restart" in site.sql("SELECT token FROM notes").split()


def test_a_host_that_keeps_no_copies_any_more_loses_the_receiving_account(site) -> None:
    """The front as an earlier deploy.toml's copy host left it (the kit's receiving account,
    the database host's key, a copy): deploying it removes the account and its key, and
    keeps the copy, root's. The API host, which keeps the copies, keeps its account."""
    front, db = site.hosts["front"], site.hosts["db"]
    old = "notebook-20200101T000000Z.dump"
    line = site.hosts["api"].read(f"{DATA}/receiver/.ssh/authorized_keys")
    made = front.exec(join(
        backups.receiver(Layout("notebook"), KEEP, db.address),
        f"printf %s {shlex.quote(line)} > {DATA}/receiver/.ssh/authorized_keys",
        f"printf dump > {BACKUPS}/{old} && chown notebook-backup {BACKUPS}/{old}"))
    assert made.returncode == 0, made.stderr
    done = site.fab("deploy", "front")
    assert done.returncode == 0, done.stdout[-5000:]
    assert ("[front]   backups: notebook-backup removed: this host keeps no copies any more "
            f"(those it kept stay, root's, in {BACKUPS})") in done.stdout
    assert front.exec("getent passwd notebook-backup").returncode == 2
    assert front.exec(f"test -e {DATA}/receiver || test -e {DATA}/receive").returncode != 0
    assert front.exec(f"stat -c '%U %a' {BACKUPS} {BACKUPS}/{old}").stdout == (
        "root 700\nroot 644\n")  # fmt: skip
    assert site.hosts["api"].exec("getent passwd notebook-backup").returncode == 0


def test_a_cut_link_with_idempotency_keys_duplicates_and_loses_no_create(site: Site) -> None:
    """The API host's link is cut under creates, as in the multi-host test's "cut link"
    (which counts the creates done whose answer was lost). Here each logical create has an
    Idempotency-Key, and the client retries it with that key until it gets an answer (a
    timeout, a 502/504 from the front, a 409 while the first still runs): every logical
    create ends with exactly one row and one answer, the lost answers replayed."""
    for n in range(50):  # the front reaches the API host (the restart before may be recent)
        if site.create(f"ready-{n}").status_code == 200:
            break
        time.sleep(0.2)
    stop = threading.Event()
    tally: Counter = Counter()
    answered: dict[str, int] = {}
    unanswered: list[str] = []
    lock = threading.Lock()

    def logical_create(session: requests.Session, token: str) -> None:
        key = str(uuid.uuid4())
        deadline = time.monotonic() + CREATE_DEADLINE
        tries = 0
        while time.monotonic() < deadline:
            tries += 1
            try:
                answer = session.post(site.url("create", "entries"), json={"token": token},
                                      headers={"Host": SERVER_NAME, "Idempotency-Key": key},
                                      timeout=15)  # fmt: skip
            except requests.RequestException:
                with lock:
                    tally["retried after no answer"] += 1
                session.close()
                time.sleep(0.2)
                continue
            if answer.status_code == 200 and answer.json().get("token") == token:
                with lock:
                    answered[token] = answer.json()["id"]
                    tally["tries"] += tries
                    if answer.headers.get("Idempotent-Replayed") == "true":
                        tally["answers replayed"] += 1
                return
            with lock:
                tally[f"retried after {answer.status_code}"] += 1
            time.sleep(float(answer.headers.get("Retry-After", "0.2")))
        with lock:
            unanswered.append(token)

    def client(n: int) -> None:
        with requests.Session() as session:
            for i in range(2000):
                if stop.is_set():
                    return
                logical_create(session, f"keyed-{n}-{i}")
                time.sleep(0.01)

    clients = [threading.Thread(target=client, args=(n,)) for n in range(KEYED_CLIENTS)]
    for each in clients:
        each.start()
    api = site.hosts["api"]
    try:
        time.sleep(2)
        api.cut()
        try:
            time.sleep(CUT_SECONDS)
        finally:
            api.restore()
        time.sleep(5)
    finally:
        stop.set()
        for each in clients:
            each.join(CREATE_DEADLINE + 30)
    sent = len(answered) + len(unanswered)
    rows = Counter(site.sql("SELECT token FROM entries WHERE token LIKE 'keyed-%'").split())
    figures = {
        "clients": KEYED_CLIENTS, "link down (s)": CUT_SECONDS, "logical creates": sent,
        "requests": tally["tries"] + sum(v for k, v in tally.items() if k.startswith("retried")),
        **{k: v for k, v in tally.items() if k != "tries"},
        "duplicated": sum(1 for c in rows.values() if c > 1),
        "lost": len(unanswered) + sum(1 for t in answered if t not in rows),
    }  # fmt: skip
    FIGURES["cut link, Idempotency-Key and retries"] = figures
    print(f"cut link with keys: {figures}")
    assert unanswered == []
    assert figures["duplicated"] == 0 and figures["lost"] == 0
    assert set(rows) == set(answered) and all(c == 1 for c in rows.values())
    assert sum(v for k, v in tally.items() if k.startswith("retried")) > 0  # the cut was felt:
    # a create in flight when it began waited longer than the front's read_timeout


def test_kill_9_of_the_database_under_writes_answers_json_and_service_returns(site) -> None:
    """PostgreSQL's postmaster killed with SIGKILL while clients create: each write that
    fails is a 503 or 500 JSON answer, no worker dies, and once Supervisor has restarted
    PostgreSQL the writes succeed again."""
    workers = site.worker_pids()
    assert len(workers) == 2
    pid = site.database_pid()
    stop = threading.Event()
    outcomes: Counter = Counter()
    others: list[str] = []
    acknowledged: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with requests.Session() as session:
            for i in range(20000):
                if stop.is_set():
                    return
                token = f"kill-{n}-{i}"
                try:
                    answer = session.post(site.url("create", "entries"), json={"token": token},
                                          headers={"Host": SERVER_NAME}, timeout=15)  # fmt: skip
                    body = answer.json()
                except (requests.RequestException, ValueError) as error:
                    with lock:
                        others.append(f"{token}: {error}")
                    continue
                with lock:
                    if answer.status_code == 200 and body.get("token") == token:
                        acknowledged.append(token)
                        outcomes["200"] += 1
                    elif answer.status_code in (500, 503) and "error" in body:
                        outcomes[str(answer.status_code)] += 1
                    else:
                        others.append(f"{token}: {answer.status_code} {answer.text[:200]}")
                time.sleep(0.01)

    clients = [threading.Thread(target=client, args=(n,)) for n in range(KILL_CLIENTS)]
    for each in clients:
        each.start()
    try:
        time.sleep(2)
        before = outcomes["200"]
        killed = site.hosts["db"].exec(f"kill -9 {pid}")
        assert killed.returncode == 0, killed.stderr
        started = time.monotonic()
        back = answers = None
        while time.monotonic() - started < RETURN_WITHIN:
            time.sleep(0.25)
            if answers is None and site.hosts["db"].exec(ASK).returncode == 0:
                answers = round(time.monotonic() - started, 1)
            now = site.hosts["db"].exec("supervisorctl pid notebook-postgres").stdout.strip()
            if now.isdigit() and now not in ("0", pid) and outcomes["200"] > before + 10:
                last = len(acknowledged)
                time.sleep(1)
                if len(acknowledged) > last:  # writes succeed again, one second long
                    back = round(time.monotonic() - started, 1)
                    break
    finally:
        stop.set()
        for each in clients:
            each.join(60)
    figures = {"clients": KILL_CLIENTS, **dict(outcomes), "other answers": len(others),
               "PostgreSQL answers after (s)": answers,
               "writes succeed after (s)": back}  # fmt: skip
    FIGURES["kill -9 of PostgreSQL under writes"] = figures
    print(f"kill -9 of the database: {figures}")
    # What the database and the workers said meanwhile, for the log of the run.
    print(site.hosts["db"].exec("tail -n 40 /var/log/notebook/notebook-postgres.log").stdout)
    pools = ("grep -h -E 'error connecting|reconnection|new connection' "
             "/var/log/notebook/notebook-api-*.log | tail -n 60")
    print(site.hosts["api"].exec(pools).stdout)
    assert back is not None, f"writes do not succeed again within {RETURN_WITHIN} s"
    assert others == []
    assert site.database_pid() != pid  # Supervisor started PostgreSQL again
    assert site.worker_pids() == workers  # no worker died
    stored = set(site.sql("SELECT token FROM entries WHERE token LIKE 'kill-%'").split())
    assert set(acknowledged) <= stored


def test_figures() -> None:
    """What the scenarios measured, for RELIABILITY.md."""
    print(f"figures: {FIGURES}")


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


def test_a_backup_the_database_host_lost_is_restored_from_its_copy(site: Site) -> None:
    """The database host without the backup (as a new one after a loss would be): the restore
    finds the copy on the API host, brings it over through the deployer, checks its sha256
    and restores it. A copy that does not match its checksum is refused before maintenance
    goes on; a name neither host holds is refused before anything changes."""
    db, api, front = site.hosts["db"], site.hosts["api"], site.hosts["front"]
    rows = "SELECT id, token FROM notes ORDER BY id"
    done = site.fab("db", "backup")
    assert done.returncode == 0, done.stdout[-3000:]
    name = next(w for w in done.stdout.split() if w.startswith("notebook-") and
                w.endswith(".dump"))  # fmt: skip
    _wait_for(lambda: name in _dumps(api), "its copy on the API host")
    before = site.sql(rows)
    site.sql("DELETE FROM notes WHERE id % 3 = 0")
    deleted = site.sql(rows)
    assert deleted != before
    assert db.exec(f"rm {BACKUPS}/{name} {BACKUPS}/{name}.sha256").returncode == 0
    maintenance = "test -e /opt/notebook/shared/maintenance"
    # a copy that is not what its checksum says: never restored, maintenance never on
    bad = "notebook-20200101T000000Z.dump"
    api.exec(f"cd {BACKUPS} && printf 'one' > {bad} && sha256sum {bad} > {bad}.sha256 && "
             f"printf 'two' > {bad}")  # fmt: skip
    try:
        refused = site.fab("db", "restore", bad, "--yes")
    finally:
        api.exec(f"rm -f {BACKUPS}/{bad} {BACKUPS}/{bad}.sha256")
    assert refused.returncode == 1, refused.stdout[-3000:]
    assert (f"error: api: the copy of {bad} does not match its sha256: not used; the "
            "database was not touched") in refused.stdout
    assert "maintenance on" not in refused.stdout and front.exec(maintenance).returncode != 0
    assert bad not in _dumps(db) and api.exec(f"test -e {DATA}/outgoing").returncode != 0
    absent = site.fab("db", "restore", "notebook-20200102T000000Z.dump", "--yes")
    assert absent.returncode == 2
    assert absent.stdout.strip().splitlines()[-1] == (
        "error: fab db restore: no backup notebook-20200102T000000Z.dump on db, nor a copy "
        "on api (fab db backups lists them)")  # fmt: skip
    assert site.sql(rows) == deleted
    restored = site.fab("db", "restore", name, "--yes")
    assert restored.returncode == 0, restored.stdout[-3000:]
    assert (f"restore: {name} is not on db: brought from the copy on api, its sha256 "
            "checked\n") in restored.stdout
    assert f"OK: {name} restored from the copy on api; maintenance off" in restored.stdout
    assert site.sql(rows) == before
    assert db.exec(f"cd {BACKUPS} && sha256sum --quiet -c {name}.sha256").returncode == 0
    assert db.exec(f"stat -c '%U %a' {BACKUPS}/{name}").stdout == "root 600\n"
    assert api.exec(f"test -e {DATA}/outgoing").returncode != 0
    assert front.exec(maintenance).returncode != 0
    assert site.create("after-restore-from-copy").status_code == 200
    history = site.fab("history", "db")
    assert f"db restore {name} from the copy on api" in history.stdout
    _no_secret(site, restored.stdout, refused.stdout)


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
