"""The database's backups, pure (no host): deploy.toml's keys, the rendered script and its
program, who gets the copies and how their key is restricted, the plans of ``fab db``. On
test hosts: tests/test_deploy_postgres_hosts.py."""

import base64
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from apiphant.deploy import plan
from apiphant.deploy.host import backups, postgres
from apiphant.deploy.layout import Layout
from apiphant.deploy.plan.prepare import BackupKeys
from tests.deploy_helpers import CHECKOUT
from tests.test_deploy_postgres import ONE, RELEASE, THREE, config_of, error_of, files


def public_key(seed: bytes) -> str:
    """An ed25519 public key line of OpenSSH's form (any 32 bytes make one)."""
    kind = b"ssh-ed25519"
    blob = struct.pack(">I", len(kind)) + kind + struct.pack(">I", 32) + seed * (32 // len(seed))
    return "ssh-ed25519 " + base64.b64encode(blob).decode()


PUSH, HOST, MADE = public_key(b"push"), public_key(b"host"), public_key(b"made")
KEYS = BackupKeys(PUSH, HOST)


@pytest.fixture
def product(tmp_path: Path) -> Path:
    folder = tmp_path / "notebook"
    shutil.copytree(CHECKOUT / "tests" / "products" / "notebook", folder,
                    ignore=shutil.ignore_patterns("__pycache__", ".postgres"))  # fmt: skip
    (folder / "api" / "background.py").write_text("")
    return folder


def test_backup_every_and_keep_backups_have_defaults_and_say_what_is_wrong(product) -> None:
    config = config_of(THREE, product)
    assert (config.database.backup_every, config.database.keep_backups) == (86400.0, 7)
    config = config_of(THREE, product, '\n[database]\nbackup_every = "6h"\nkeep_backups = 3\n')
    assert (config.database.backup_every, config.database.keep_backups) == (21600.0, 3)
    seconds = config_of(THREE, product, "\n[database]\nbackup_every = 90\n")
    assert seconds.database.backup_every == 90
    for bad in ('"often"', "0", '"31d"', "true"):
        message = error_of(THREE + f"\n[database]\nbackup_every = {bad}\n", product)
        assert message.startswith("deploy.toml: database.backup_every: ")
    message = error_of(THREE + "\n[database]\nkeep_backups = 0\n", product)
    assert message.startswith("deploy.toml: database.keep_backups: ")


def test_the_loop_is_a_supervisor_program_of_the_database_with_its_schedule(product) -> None:
    config = config_of(THREE, product, '\n[database]\nbackup_every = "6h"\nkeep_backups = 3\n')
    rendered = files(config, "db")
    program = rendered["backup-program.conf"]
    assert "notebook-backup" not in rendered["postgres-program.conf"]
    assert "[program:notebook-backup]" in program
    assert "command=/var/lib/apiphant/notebook/backup --loop 21600 3\n" in program
    assert "user=root" in program.split("[program:notebook-backup]")[1]
    script = rendered["backup"]
    assert "dir=/var/lib/apiphant/notebook/backups\n" in script and "keep=3\n" in script
    assert "-Fc -d notebook" in script and "runuser -u postgres" in script
    # a temporary name, its checksum, then the rename; the oldest go only after a good one
    renamed = script.index('mv -f "$tmp" "$dir/$file"')
    assert script.index('> "$tmp"') < script.index("sha256sum") < renamed
    assert script.index("FAILED: pg_dump") > script.index('head -n -"$keep"')
    assert "notebook-backup@10.0.0.11" in script and "StrictHostKeyChecking=yes" in script
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    assert "backup" not in files(config, "api") and "backup" not in files(config, "front")


def test_the_copies_go_to_a_host_that_runs_programs_else_to_another(product):
    config = config_of(THREE, product)
    assert config.backup_copy_host().name == "api"
    one = config_of(ONE, product)
    assert one.backup_copy_host() is None
    assert "no other host of the deployment" in files(one, "web1")["backup"].lower()
    assert "ssh -i" not in files(one, "web1")["backup"]
    two = ONE.replace('roles = ["nginx", "api", "postgres"]',
                      'private_address = "10.0.0.10"\nroles = ["nginx", "api", "postgres"]')
    private = two + '\n[hosts.web2]\nssh = "root@203.0.113.11"\nroles = ["nginx"]\n'
    private += 'private_address = "10.0.0.11"\n'
    assert config_of(private, product).backup_copy_host().name == "web2"


def test_prepare_installs_the_script_and_the_restricted_key_on_the_copy_host(product) -> None:
    from apiphant.deploy import render

    config = config_of(THREE, product)
    rendered = render.render_all(config, config.hosts, RELEASE, "apiphant.whl")
    steps = plan.prepare_steps(config, list(config.hosts), RELEASE, Path("r.tar.gz"), rendered,
                               "KEY", secrets={"api": b"x\n"}, backup_keys=KEYS)  # fmt: skip
    loop = steps[-1]
    assert loop.host == "db" and loop.command == (
        "ln -sfn /var/lib/apiphant/notebook/backup.conf /etc/supervisor/conf.d/notebook-backup.conf"
        " && /usr/bin/python3 /opt/notebook/supervise.py -c /etc/supervisor/supervisord.conf "
        "sync '^notebook-backup$' notebook-backup")
    assert loop.stage > max(s.stage for s in steps[:-1] if s.why.startswith("backups: db"))
    db = [s for s in steps if s.host == "db"][-2].command
    assert "mv -f /var/lib/apiphant/notebook/backup.new /var/lib/apiphant/notebook/backup" in db
    assert "backup-program.conf /var/lib/apiphant/notebook/backup.conf" in db
    # the loop starts after the database, its role, the copies' known host and receiver
    assert "notebook-backup$" not in db
    assert db.index("sync '^notebook-postgres$' notebook-postgres") < db.index("CREATE ROLE")
    assert db.index("CREATE ROLE") < db.index("/var/lib/apiphant/notebook/known_hosts")
    assert f"10.0.0.11 '{HOST}' > /var/lib/apiphant/notebook/known_hosts" in db
    receiver = [s for s in steps if s.host == "api" and s.why.startswith("backups:")]
    assert len(receiver) == 2
    command, key = receiver[0].command, receiver[1].upload
    assert key.remote == "/var/lib/apiphant/notebook/receiver/.ssh/authorized_keys"
    assert (key.mode, key.owner, key.group) == (0o644, "root", "root")
    assert key.data() == ('restrict,from="10.0.0.12",command="/var/lib/apiphant/notebook/'
                          f'receive" {PUSH}\n').encode()  # fmt: skip
    assert PUSH not in command and "> /var/lib/apiphant/notebook/receiver/.ssh/" not in command
    # the key existed: nothing is made in a stage of its own before the rest
    assert "ssh-keygen" not in " ".join(s.command for s in steps)
    assert "--shell /bin/sh --password '*' notebook-backup" in command
    assert "install -d -m 0700 -o notebook-backup -g notebook-backup" in command
    assert ("[ \"$(getent passwd notebook-backup | cut -d: -f5)\" = 'apiphant deployment "
            "notebook backups' ] || { echo 'user notebook-backup exists and the deploy did not "
            "make it: no backup copies here' >&2; exit 1; }") in command
    assert not [s for s in steps if s.host == "front" and s.why.startswith("backups:")]
    # a host that keeps no copies (deploy.toml may have named another before) has no
    # receiving account of the kit's: removed if one is there
    first = {s.host: s for s in reversed(steps) if s.why.startswith("apt packages")}
    gone = backups.no_receiver(config.layout)
    assert gone in first["front"].command and gone in first["db"].command
    assert gone not in first["api"].command
    assert gone.startswith("if [ \"$(getent passwd notebook-backup | cut -d: -f5)\" = "
                           "'apiphant deployment notebook backups' ]; then rm -f "
                           "/var/lib/apiphant/notebook/receiver/.ssh/authorized_keys ")
    assert "rm -r" not in gone and gone.index("authorized_keys") < gone.index("userdel -f")


class Answers:
    """The hosts' answers to the questions before the lock, from a table (a transport's
    stand-in: the decisions are tested here, the real questions on test hosts in
    tests/test_deploy_postgres_hosts.py); what was asked is kept."""

    def __init__(self, config, answers: dict[str, str]) -> None:
        self.config, self.answers, self.asked = config, answers, []
        self.out, self.lost = (lambda line: None), {}

    def query(self, host: str, command: str, why: str) -> str:
        self.asked.append((host, command))
        return self.answers[host]


def test_the_key_is_asked_for_without_a_change_and_made_under_the_lock_when_missing(product):
    """The question before the lock only reads; a postgres host with no key gets it in the
    prepare phase's first stage, and the receiving account's line reads it once, when its
    upload runs; a deploy that would need it from a postgres host it does not prepare is
    refused before anything changes."""
    from apiphant.deploy import dbfacts, render
    from apiphant.deploy.errors import DeployError

    config = config_of(THREE, product)
    layout = config.layout
    assert backups.push_key(layout) == (
        "if [ -s /var/lib/apiphant/notebook/backup_key ]; "
        "then cat /var/lib/apiphant/notebook/backup_key.pub; fi")  # fmt: skip
    made = backups.make_push_key(layout)
    assert "[ -s /var/lib/apiphant/notebook/backup_key ] || ssh-keygen" in made
    assert "cat " not in made
    host = f"{HOST} root@api\n"
    known = Answers(config, {"db": f"{PUSH} notebook-backup@notebook\n", "api": host})
    keys = dbfacts.backup_keys(known, config, list(config.hosts))
    assert keys == BackupKeys(PUSH, HOST)
    assert not keys.new and known.asked[0] == ("db", backups.push_key(layout))
    fresh = Answers(config, {"db": "", "api": host})
    keys = dbfacts.backup_keys(fresh, config, list(config.hosts))
    assert keys.new and keys.host == HOST
    assert all("ssh-keygen" not in command for _, command in fresh.asked)
    rendered = render.render_all(config, config.hosts, RELEASE, "apiphant.whl")
    steps = plan.prepare_steps(config, list(config.hosts), RELEASE, Path("r.tar.gz"), rendered,
                               "KEY", secrets={"api": b"x\n"}, backup_keys=keys)  # fmt: skip
    assert [(s.host, s.command) for s in steps if s.stage == 0] == [("db", made)]
    upload = next(s.upload for s in steps if s.upload and s.upload.remote.endswith("_keys"))
    assert upload.size == 0 and len(fresh.asked) == 2  # nothing read yet
    fresh.answers["db"] = f"{MADE} notebook-backup@notebook\n"
    line = f'command="/var/lib/apiphant/notebook/receive" {MADE}\n'.encode()
    assert upload.data().endswith(line) and upload.data().endswith(line)
    assert fresh.asked[2:] == [("db", backups.push_key(layout))]  # read once, after
    broken = Answers(config, {"db": "", "api": host})
    again = dbfacts.backup_keys(broken, config, list(config.hosts))
    broken.answers["db"] = "ssh-keygen: not found\n"  # the step that made it did not
    with pytest.raises(DeployError, match="db: .*backup_key.pub is not one public key"):
        again.push()
    refused = Answers(config, {"db": "", "api": host})
    with pytest.raises(DeployError) as caught:
        dbfacts.backup_keys(refused, config, [config.host("api")])
    assert str(caught.value) == ("db: no key to push backups to api yet, which its deploy "
                                 "makes: deploy db too; nothing was changed on any host")


def test_the_receive_script_takes_one_form_of_command_and_nothing_else() -> None:
    script = backups.receive_script(Layout("notebook"), 5)
    assert script.startswith("#!/bin/sh\n") and "set -uf\n" in script
    assert '[ "$#" = 3 ] && [ "$1" = put ] || refuse' in script
    assert "grep -Eqx 'notebook-[0-9]{8}T[0-9]{6}Z[.]dump' || refuse" in script
    assert "head -n -5" in script
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    pattern = backups.name_pattern(Layout("notebook"))
    assert re.fullmatch(pattern, "notebook-20260102T030405Z.dump")
    for bad in ("../x.dump", "notebook-20260102T030405Z.dump/..", "other-20260102T030405Z.dump"):
        assert not re.fullmatch(pattern, bad)


def test_a_checksum_file_gives_the_sha256_of_its_one_backup() -> None:
    digest = "0123456789abcdef" * 4
    name = "notebook-20260102T030405Z.dump"
    assert backups.parse_checksum(f"{digest}  {name}\n", name) == digest
    for bad in (f"{digest}  other.dump\n", f"{digest[:-1]}  {name}\n", "", f"{digest}\n",
                f"{digest.upper()}  {name}\n", f"{digest}  {name}\n{digest}  {name}\n"):
        assert backups.parse_checksum(bad, name) == "", bad


def test_keys_are_parsed_as_one_public_key_or_nothing() -> None:
    assert backups.parse_key(f"{PUSH} root@db\n") == PUSH
    assert backups.parse_key(HOST) == HOST
    assert backups.parse_key("") == "" and backups.parse_key(f"{PUSH}\n{HOST}\n") == ""
    assert backups.parse_key(PUSH + '"bad\n') == "" and backups.parse_key(f"x {PUSH}\n") == ""
    assert backups.parse_key(f'command="x" {PUSH}\n') == ""
    assert backups.parse_key("ssh-keygen: not found\n") == ""  # not a key, though it looks so
    assert backups.parse_key("ssh-rsa " + PUSH.split()[1]) == ""  # the blob names its type


def test_fab_db_plans(product) -> None:
    config = config_of(THREE, product)
    (step,) = plan.db_backup_plan(config, config.host("db"))
    assert step.command.endswith("/var/lib/apiphant/notebook/backup")
    assert [s.host for s in plan.db_backups_plan(config)] == ["db", "api"]
    restore = plan.db_restore_step(config, config.host("db"), "notebook-20260102T030405Z.dump")
    assert "sha256sum --quiet -c notebook-20260102T030405Z.dump.sha256" in restore.command
    assert ("pg_restore -h /var/lib/apiphant/notebook/socket -p 5432 -d notebook --clean "
            "--if-exists --single-transaction") in restore.command
    fetch = plan.db_fetch_steps(config, config.host("api"), "notebook-20260102T030405Z.dump",
                                Path("/tmp/x"))  # fmt: skip
    assert fetch[0].host == "api" and fetch[0].command == (
        "rm -rf /var/lib/apiphant/notebook/outgoing && install -d -m 0700 -o root "
        "/var/lib/apiphant/notebook/outgoing && install -m 0600 -o root "
        "/var/lib/apiphant/notebook/backups/notebook-20260102T030405Z.dump "
        "/var/lib/apiphant/notebook/backups/notebook-20260102T030405Z.dump.sha256 "
        "/var/lib/apiphant/notebook/outgoing/")  # fmt: skip
    assert [(s.download.remote, s.download.local) for s in fetch[1:]] == [
        (f"/var/lib/apiphant/notebook/outgoing/{n}", Path("/tmp/x") / n)
        for n in ("notebook-20260102T030405Z.dump.sha256", "notebook-20260102T030405Z.dump")]
    done = plan.db_fetch_done(config, config.host("api"))
    assert done.command == "rm -rf /var/lib/apiphant/notebook/outgoing"
    put = plan.db_put_steps(config, config.host("db"), "notebook-20260102T030405Z.dump",
                            Path("/tmp/x"))  # fmt: skip
    assert [(s.host, s.upload.remote, s.upload.mode, s.upload.local) for s in put[1:]] == [
        ("db", f"/var/lib/apiphant/notebook/backups/{n}", 0o600, Path("/tmp/x") / n)
        for n in ("notebook-20260102T030405Z.dump.sha256", "notebook-20260102T030405Z.dump")]
    status = {s.host: s.command for s in plan.status_plan(config, list(config.hosts))}
    assert "last backup" in status["db"] and "last backup" not in status["api"]
    assert "PGOPTIONS='-c role=notebook'" in postgres.psql(config.layout, 5432)


def _fab(product: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fabric", *args, f"--product={product}"],
                          cwd=CHECKOUT, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_fab_db_refuses_bad_words_in_one_line_and_dry_runs_show_no_password(product) -> None:
    (product / "deploy.toml").write_text(THREE)
    for words, message in (
        ([], "fab db: expected an action: fab db backup | backups | restore BACKUP --yes | psql"),
        (["vacuum"], "fab db: expected an action:"),
        (["restore"], "fab db restore: unexpected nothing:"),
        (["restore", "../etc/passwd", "--yes"], "fab db restore: '../etc/passwd' is not a "),
        (["restore", "notebook-20260102T030405Z.dump"],
         "fab db restore: replaces every table of database notebook with "
         "notebook-20260102T030405Z.dump: add --yes"),
    ):
        done = _fab(product, "db", *words)
        assert done.returncode == 2, (words, done.stdout, done.stderr)
        lines = done.stdout.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: " + message), lines
    for words in (["backup"], ["backups"], ["psql"],
                  ["restore", "notebook-20260102T030405Z.dump", "--yes"]):
        done = _fab(product, "db", *words, "--dry-run")
        assert done.returncode == 0, (words, done.stdout, done.stderr)
        assert "dry run: nothing was run" in done.stdout
        for secret in ("PGPASSWORD", "postgresql://", "<password>", "password '", "/password"):
            assert secret not in done.stdout, (words, secret)
    restore = _fab(product, "db", "restore", "notebook-20260102T030405Z.dump", "--dry-run")
    out = restore.stdout
    assert out.index("maintenance on") < out.index("pg_restore") < out.index("maintenance off")
    # the copy is fetched (if the postgres host lacks it) and checked before maintenance
    assert ("(dry run: what follows up to the maintenance runs when db lacks "
            "notebook-20260102T030405Z.dump)") in out
    assert (out.index("[db] does it hold") < out.index("[api] does it hold a copy")
            < out.index("[api] download") < out.index("(on the deployer: ")
            < out.index("[db] upload") < out.index("maintenance on"))  # fmt: skip
    status = _fab(product, "status", "db", "--dry-run")
    assert status.returncode == 0 and "last backup" in status.stdout
    deploy = _fab(product, "deploy", "--dry-run")
    assert deploy.returncode == 0, deploy.stdout[-3000:]
    assert "[db] the key that pushes backups to api, if it has one" in deploy.stdout
    assert "[api] its SSH host key, for the copies" in deploy.stdout
