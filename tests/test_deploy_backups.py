"""The database's backups, pure (no host): deploy.toml's keys, the rendered script and its
program, who gets the copies and how their key is restricted, the plans of ``fab db``. On
test hosts: tests/test_deploy_postgres_hosts.py."""

import re
import shutil
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

KEYS = BackupKeys("ssh-ed25519 AAAAC3push", "ssh-ed25519 AAAAC3host")


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
    assert "10.0.0.11 'ssh-ed25519 AAAAC3host' > /var/lib/apiphant/notebook/known_hosts" in db
    receiver = [s for s in steps if s.host == "api" and s.why.startswith("backups:")]
    assert len(receiver) == 1
    command = receiver[0].command
    entry = ('restrict,from="10.0.0.12",command="/var/lib/apiphant/notebook/receive" '
             "ssh-ed25519 AAAAC3push")  # fmt: skip
    assert entry in command
    assert "--shell /bin/sh --password '*' notebook-backup" in command
    assert "install -d -m 0700 -o notebook-backup -g notebook-backup" in command
    assert ("[ \"$(getent passwd notebook-backup | cut -d: -f5)\" = 'apiphant deployment "
            "notebook backups' ] || { echo 'user notebook-backup exists and the deploy did not "
            "make it: no backup copies here' >&2; exit 1; }") in command
    assert not [s for s in steps if s.host == "front" and s.why.startswith("backups:")]


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


def test_keys_are_parsed_as_one_public_key_or_nothing() -> None:
    assert backups.parse_key("ssh-ed25519 AAAA+/= root@db\n") == "ssh-ed25519 AAAA+/="
    assert backups.parse_key("") == "" and backups.parse_key("a\nb\n") == ""
    assert backups.parse_key("ssh-ed25519 AAAA\"bad\n") == ""
    assert backups.parse_key('command="x" ssh-ed25519 AAAA\n') == ""


def test_fab_db_plans(product) -> None:
    config = config_of(THREE, product)
    (step,) = plan.db_backup_plan(config, config.host("db"))
    assert step.command.endswith("/var/lib/apiphant/notebook/backup")
    assert [s.host for s in plan.db_backups_plan(config)] == ["db", "api"]
    restore = plan.db_restore_step(config, config.host("db"), "notebook-20260102T030405Z.dump")
    assert "sha256sum --quiet -c notebook-20260102T030405Z.dump.sha256" in restore.command
    assert ("pg_restore -h /var/lib/apiphant/notebook/socket -p 5432 -d notebook --clean "
            "--if-exists --single-transaction") in restore.command
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
    status = _fab(product, "status", "db", "--dry-run")
    assert status.returncode == 0 and "last backup" in status.stdout
    deploy = _fab(product, "deploy", "--dry-run")
    assert deploy.returncode == 0, deploy.stdout[-3000:]
    assert "[db] the key that pushes backups to api (made there once)" in deploy.stdout
    assert "[api] its SSH host key, for the copies" in deploy.stdout
