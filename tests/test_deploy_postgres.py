"""The postgres role in deploy.toml, its rendered files, its steps and the secrets it gives
the programs; pure (no host): the end-to-end test is tests/test_deploy_postgres_hosts.py."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from apiphant.deploy import plan, render
from apiphant.deploy.config import ConfigError, parse
from apiphant.deploy.config.secrets import check_secrets, host_secrets
from apiphant.deploy.host import backups, postgres
from tests.deploy_helpers import CHECKOUT

NOTEBOOK = CHECKOUT / "tests" / "products" / "notebook"
RELEASE = "20260101000000"

#: A front, an API host with the runner, and the database on a host of its own.
THREE = """
product = "notebook"
server_names = ["api.example.com"]

[hosts.front]
ssh = "root@203.0.113.10"
private_address = "10.0.0.10"
roles = ["nginx"]

[hosts.api]
ssh = "root@203.0.113.11"
private_address = "10.0.0.11"
roles = ["api", "background"]

[hosts.db]
ssh = "root@203.0.113.12"
private_address = "10.0.0.12"
roles = ["postgres"]
"""

#: Everything on one host.
ONE = """
product = "notebook"
server_names = ["api.example.com"]

[hosts.web1]
ssh = "root@203.0.113.10"
roles = ["nginx", "api", "postgres"]
"""


@pytest.fixture
def product(tmp_path: Path) -> Path:
    """The notebook product, with a background module (the runner's role needs one)."""
    folder = tmp_path / "notebook"
    shutil.copytree(NOTEBOOK, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "api" / "background.py").write_text("")
    return folder


def config_of(text: str, product: Path, extra: str = ""):
    return parse(tomllib.loads(text + extra), product / "deploy.toml", product)


def error_of(text: str, product: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        config_of(text, product)
    return str(caught.value)


def files(config, name: str) -> dict[str, str]:
    return render.render_host(config, config.host(name), RELEASE, "apiphant.whl").files


# deploy.toml


def test_one_postgres_host_with_private_addresses_where_the_network_is_used(product) -> None:
    assert error_of(THREE + '[hosts.db2]\nssh = "x"\nroles = ["postgres"]\n', product) == (
        "deploy.toml: hosts.db2.roles: postgres runs on exactly one host, already on db")
    no_address = THREE.replace('private_address = "10.0.0.12"\n', "")
    assert error_of(no_address, product) == (
        "deploy.toml: hosts.db.private_address: missing, expected the address api's "
        "programs reach PostgreSQL at, like 10.0.0.7")
    both = THREE + '[database]\nurl_env = "MANAGED_URL"\n'
    assert error_of(both, product) == ("deploy.toml: database.url_env: hosts.db has the "
                                       "postgres role: a database elsewhere or its own, not both")
    in_clear = ONE + '[environment]\nDATABASE_URL = "postgresql://u:pw@h/d"\n'
    assert error_of(in_clear, product).startswith(
        "deploy.toml: environment.DATABASE_URL: it holds a password: put it in the secrets")
    assert config_of(ONE, product).database_listen() == ""
    assert config_of(THREE, product).database_listen() == "10.0.0.12"


def test_the_pools_are_set_in_database_and_reach_both_programs_command_lines(product) -> None:
    def lines(extra: str) -> list[str]:
        config = config_of(ONE.replace('"api",', '"api", "background",'), product, extra)
        conf = files(config, "web1")["supervisor.conf"]
        return [line for line in conf.splitlines() if line.startswith("command=")]

    assert not any("--db-pool" in line for line in lines(""))
    changed = lines("[database]\npool_size = 4\npool_timeout = 2.5\n")
    serve, background = changed[0], changed[-2]
    assert " --db-pool-size 4 --db-pool-timeout 2.5" in serve, serve
    assert "apiphant-background" in background
    assert background.endswith(" --db-pool-size 4 --db-pool-timeout 2.5"), background
    with pytest.raises(ConfigError, match=r"^deploy.toml: database.pool_size: expected"):
        config_of(ONE, product, "[database]\npool_size = 0\n")


# What the postgres host renders


def test_pg_hba_admits_the_programs_hosts_by_address_with_scram_and_nothing_else(product):
    config = config_of(THREE, product)
    rendered = files(config, "db")
    rules = [line.split() for line in rendered["pg_hba.conf"].splitlines()
             if line and not line.startswith("#")]  # fmt: skip
    assert rules == [
        ["local", "all", "postgres", "peer"],
        ["local", '"notebook"', '"notebook"', "scram-sha-256"],
        ["host", '"notebook"', '"notebook"', "10.0.0.11/32", "scram-sha-256"],
    ]
    conf = rendered["postgresql.conf"]
    assert "listen_addresses = '10.0.0.12'\n" in conf and "port = 5432\n" in conf
    assert "hba_file = '/var/lib/apiphant/notebook/pg_hba.conf'\n" in conf
    alone = files(config_of(ONE, product), "web1")
    assert "listen_addresses = ''\n" in alone["postgresql.conf"]
    assert not [line for line in alone["pg_hba.conf"].splitlines() if line.startswith("host")]
    # The front and the database host get no secrets, and no Python
    assert "pg_hba.conf" not in files(config, "api") and "run" not in files(config, "db")


def test_postgres_runs_in_the_foreground_as_postgres_under_supervisor(product) -> None:
    program = files(config_of(THREE, product), "db")["postgres-program.conf"]
    assert "[program:notebook-postgres]\n" in program and "\nuser=postgres\n" in program
    command = next(line for line in program.splitlines() if line.startswith("command="))
    assert re.search(r"/bin/postgres -D /var/lib/apiphant/notebook/data -c config_file=", command)
    assert "pg_ctl" not in command and "\nstopsignal=INT\n" in program


def test_the_release_installs_apiphants_postgres_extra_when_the_programs_have_a_database(
    product, tmp_path
) -> None:
    """The product lists no driver: the deploy adds apiphant's postgres extra (psycopg and
    its pool at apiphant's pinned ranges) to the release's requirements, for a postgres host
    and for a database elsewhere; without a database, apiphant alone."""
    assert "psycopg" not in (NOTEBOOK / "requirements.txt").read_text()
    wheels = "/opt/notebook/releases/20260101000000/wheels"
    for config, host in [(config_of(THREE, product), "api"), (config_of(ONE, product), "web1")]:
        assert f"\n{wheels}/apiphant.whl[postgres]\n" in files(config, host)["requirements.txt"]
    secrets = tmp_path / "s.env"
    secrets.write_text("MANAGED_URL=postgresql://u:secret@db.example/x\n")
    managed = config_of(f'secrets = "{secrets}"\n' + ONE.replace(', "postgres"', ""), product,
                        '[database]\nurl_env = "MANAGED_URL"\n')  # fmt: skip
    assert managed.apiphant_extras() == ("postgres",)
    assert f"\n{wheels}/apiphant.whl[postgres]\n" in files(managed, "web1")["requirements.txt"]
    none = config_of(ONE.replace(', "postgres"', ""), product)
    assert none.apiphant_extras() == ()
    assert f"\n{wheels}/apiphant.whl\n" in files(none, "web1")["requirements.txt"]


# The secrets each host gets


def test_each_host_gets_its_own_database_url_and_only_hosts_that_run_programs(product):
    config = config_of(THREE, product)
    given = host_secrets(config, config.hosts, check_secrets(config), "ab12")
    assert given == {"api": b"DATABASE_URL=postgresql://notebook:ab12@10.0.0.12:5432/notebook\n"}
    alone = config_of(ONE, product)
    assert host_secrets(alone, alone.hosts, None, "ab12") == {"web1": (
        b"DATABASE_URL=postgresql://notebook:ab12@/notebook?"
        b"host=/var/lib/apiphant/notebook/socket&port=5432\n")}  # fmt: skip


def test_a_managed_database_comes_from_the_secrets_file(product, tmp_path) -> None:
    secrets = tmp_path / "s.env"
    secrets.write_text("TOKEN=t\nMANAGED_URL=postgresql://u:secret@db.example/x\n")
    managed = f'secrets = "{secrets}"\n' + ONE.replace(', "postgres"', "")
    config = config_of(managed, product, '[database]\nurl_env = "MANAGED_URL"\n')
    assert check_secrets(config) == (b"TOKEN=t\nMANAGED_URL=postgresql://u:secret@db.example/x\n"
                                     b"DATABASE_URL=postgresql://u:secret@db.example/x\n")
    assert config.has_database() and plan.release_phase_steps(config, config.hosts, RELEASE)
    secrets.write_text("TOKEN=t\n")
    with pytest.raises(ConfigError) as caught:
        check_secrets(config)
    assert str(caught.value) == (f"secrets file {secrets}: no MANAGED_URL=URL line, which "
                                 "[database] url_env names")  # fmt: skip
    secrets.write_text("DATABASE_URL=postgresql://u:secret@db.example/x\n")
    own = config_of(f'secrets = "{secrets}"\n' + ONE, product)
    with pytest.raises(ConfigError, match="DATABASE_URL is set by the deploy") as caught:
        check_secrets(own)
    assert "secret@" not in str(caught.value)


# The steps


def test_migrations_run_once_in_the_release_phase_before_the_release_command(product) -> None:
    config = config_of('release = "echo after"\n' + THREE, product)
    steps = plan.release_phase_steps(config, list(config.hosts), RELEASE)
    assert [(s.host, s.why.split(",")[0]) for s in steps] == [
        ("api", "migrations"), ("api", "release command")]
    assert "apiphant db migrate notebook'" in steps[0].command
    shutil.rmtree(product / "migrations")
    assert len(plan.release_phase_steps(config, list(config.hosts), RELEASE)) == 1


def test_the_database_is_prepared_last_on_its_host_and_its_data_never_dropped(product):
    config = config_of(THREE, product)
    rendered = render.render_all(config, config.hosts, RELEASE, "apiphant.whl")
    steps = plan.prepare_steps(config, list(config.hosts), RELEASE, Path("r.tar.gz"), rendered,
                               "KEY", secrets={"api": b"DATABASE_URL=x\n"})  # fmt: skip
    on_db = [s for s in steps if s.host == "db" and s.stage == 0]  # later: the backup loop
    assert on_db[-1].why.startswith("postgres: the cluster in /var/lib/apiphant/notebook/data")
    script = on_db[-1].command
    assert script.index("initdb") > script.index('elif [ -z "$(ls -A ')
    everything = " ".join(s.command for s in steps) + postgres.make_password(config.layout)
    assert not re.search(r"\bDROP\b|rm -rf? [^ ]*/var/lib/apiphant", everything)
    assert "$pw" in script and "ab12" not in script
    uploads = [s.upload for s in steps if s.upload and s.upload.remote.endswith("secrets.env")]
    assert [(u.secret, u.mode, u.group) for u in uploads] == [(True, 0o640, "notebook")]


def test_a_setting_that_takes_a_restart_restarts_the_database_only_when_it_changed(product):
    """listen_addresses, port and max_connections (through pool_size) are compared with the
    running server's; the restart is in the branch taken when one differs."""
    config = config_of(THREE, product)
    wanted = render.restart_only(config)
    assert wanted == {"listen_addresses": "10.0.0.12", "port": "5432", "max_connections": "100"}
    bigger = config_of(THREE, product, "[database]\nport = 5433\npool_size = 50\n")
    assert render.restart_only(bigger) == {"listen_addresses": "10.0.0.12", "port": "5433",
                                           "max_connections": "170"}  # fmt: skip
    rendered = render.render_all(config, config.hosts, RELEASE, "apiphant.whl")
    steps = plan.prepare_steps(config, list(config.hosts), RELEASE, Path("r.tar.gz"), rendered,
                               "KEY", secrets={"api": b"A=1\n"})  # fmt: skip
    script, = [s.command for s in steps
               if s.host == "db" and "supervisorctl restart notebook-postgres" in s.command]
    assert postgres.changed_settings(wanted) in script.replace("'\"'\"'", "'")
    compare = script.index('if [ -n "$changed" ]; then ')
    restart = script.index("supervisorctl restart notebook-postgres")
    same = script.index("else echo 'postgres: notebook-postgres answers, its configs read again'")
    assert compare < restart < same


def test_the_comparison_names_the_settings_the_running_server_differs_in(postgres) -> None:
    """The comparison's SQL against a real PostgreSQL (the test cluster)."""
    import psycopg

    from apiphant.deploy.host.postgres import changed_settings

    with psycopg.connect(postgres, autocommit=True) as conn:
        running = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in render.RESTART_ONLY}
        same = conn.execute(changed_settings(running)).fetchone()[0]
        changed = dict(running, port=str(int(running["port"]) + 1), max_connections="999")
        differ = conn.execute(changed_settings(changed)).fetchone()[0]
    assert same is None
    assert differ == "max_connections, port"


def test_the_password_is_asked_for_without_a_change_and_made_once_under_the_lock() -> None:
    """The question (before the lock) only reads; the step that makes it prints nothing."""
    from apiphant.deploy.layout import Layout

    asked = postgres.password(Layout("notebook"))
    assert asked == ("if [ -s /var/lib/apiphant/notebook/password ]; "
                     "then cat /var/lib/apiphant/notebook/password; fi")  # fmt: skip
    made = postgres.make_password(Layout("notebook"))
    assert "[ -s /var/lib/apiphant/notebook/password ] ||" in made
    assert "umask 077" in made and "cat " not in made
    assert postgres.parse_password("0af3\n") == "0af3"
    assert postgres.parse_password("sh: no such file\n") == ""


def test_a_new_password_is_made_first_and_the_secrets_read_it_when_uploaded(product) -> None:
    """A host with no password yet: the prepare phase's first stage makes it on the database
    host alone; each secrets file is made when its upload runs, from one read of it."""
    config = config_of(THREE, product)
    rendered = render.render_all(config, config.hosts, RELEASE, "apiphant.whl")
    asked = []

    def password() -> str:
        asked.append(1)
        return "ab12"

    secrets = host_secrets(config, config.hosts, b"A=1\n", password)
    steps = plan.prepare_steps(config, list(config.hosts), RELEASE, Path("r.tar.gz"), rendered,
                               "KEY", secrets=secrets, new_password=True)  # fmt: skip
    first = [s for s in steps if s.stage == 0]
    assert [(s.host, s.command) for s in first] == [
        ("db", postgres.make_password(config.layout))]
    upload = next(s.upload for s in steps if s.upload and s.upload.remote.endswith("secrets.env"))
    assert asked == [] and upload.size == 0
    assert upload.data() == b"A=1\nDATABASE_URL=postgresql://notebook:ab12@10.0.0.12:5432/notebook\n"
    known = plan.prepare_steps(config, list(config.hosts), RELEASE, Path("r.tar.gz"), rendered,
                               "KEY", secrets={"api": b"A=1\n"})  # fmt: skip
    assert "/dev/urandom" not in " ".join(s.command for s in known)


def test_status_shows_the_database_program(product) -> None:
    config = config_of(THREE, product)
    steps = {s.host: s.command for s in plan.status_plan(config, list(config.hosts))}
    assert "supervisorctl status notebook-postgres" in steps["db"]
    assert "notebook-postgres" not in steps["api"]


def test_the_dry_run_shows_no_password_and_no_database_url(product, tmp_path) -> None:
    """The dry run asks the database host for nothing it would show: the question is
    printed, the secrets' upload says "content not shown". What comes before the lock only
    reads: the password is made in the prepare phase."""
    (product / "deploy.toml").write_text(THREE)
    done = subprocess.run([sys.executable, "-m", "fabric", "deploy", f"--product={product}",
                           "--dry-run"], cwd=CHECKOUT, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    out = done.stdout
    assert "[db] the database's password, if it has one (not shown)" in out
    assert "[api] upload secrets and DATABASE_URL (content not shown)" in out
    assert "postgresql://" not in out and "<password>" not in out
    assert "[api] migrations, once, in release" in out
    before, locked = out.split("==> lock", 1)
    asked = [line for line in before.splitlines() if line.startswith("[db] $ ")]
    layout = config_of(THREE, product).layout
    # questions only: the password and the backups' key, each if it is there
    assert asked == ["[db] $ " + postgres.password(layout), "[db] $ " + backups.push_key(layout)]
    assert "urandom" not in before and "install " not in before and "ssh-keygen" not in before
    prepare = locked.split("==> prepare", 1)[1]
    assert prepare.index("[db] postgres: its password, made once") < prepare.index("[api] ")
    assert prepare.index("[db] backups: the key that pushes copies, made once") < prepare.index(
        "[api] ")
    # the receiving account's key line shows where the key goes, never a key
    assert ('upload notebook-backup\'s one key: restrict,from="10.0.0.12",command="/var/lib/'
            'apiphant/notebook/receive" <db\'s key for copies> -> ') in prepare
    assert "ssh-ed25519" not in out
