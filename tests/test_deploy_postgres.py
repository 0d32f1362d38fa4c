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
from apiphant.deploy.host import postgres
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
    assert serve.endswith(" --db-pool-size 4 --db-pool-timeout 2.5"), serve
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
    everything = " ".join(s.command for s in steps) + postgres.password(config.layout)
    assert not re.search(r"\bDROP\b|rm -rf? [^ ]*/var/lib/apiphant", everything)
    assert "$pw" in script and "ab12" not in script
    uploads = [s.upload for s in steps if s.upload and s.upload.remote.endswith("secrets.env")]
    assert [(u.secret, u.mode, u.group) for u in uploads] == [(True, 0o640, "notebook")]


def test_the_password_is_made_once_on_the_host_and_read_back_alone() -> None:
    from apiphant.deploy.layout import Layout

    command = postgres.password(Layout("notebook"))
    assert "[ -s /var/lib/apiphant/notebook/password ] ||" in command
    assert "umask 077" in command and command.endswith("cat /var/lib/apiphant/notebook/password")
    assert postgres.parse_password("0af3\n") == "0af3"
    assert postgres.parse_password("sh: no such file\n") == ""


def test_status_shows_the_database_program(product) -> None:
    config = config_of(THREE, product)
    steps = {s.host: s.command for s in plan.status_plan(config, list(config.hosts))}
    assert "supervisorctl status notebook-postgres" in steps["db"]
    assert "notebook-postgres" not in steps["api"]


def test_the_dry_run_shows_no_password_and_no_database_url(product, tmp_path) -> None:
    """The dry run asks the database host for nothing it would show: the question is
    printed, the secrets' upload says "content not shown"."""
    (product / "deploy.toml").write_text(THREE)
    done = subprocess.run([sys.executable, "-m", "fabric", "deploy", f"--product={product}",
                           "--dry-run"], cwd=CHECKOUT, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    out = done.stdout
    assert "[db] the database's password (made there once; not shown)" in out
    assert "[api] upload secrets and DATABASE_URL (content not shown)" in out
    assert "postgresql://" not in out and "<password>" not in out
    assert "[api] migrations, once, in release" in out
