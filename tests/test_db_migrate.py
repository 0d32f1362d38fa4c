"""``apiphant db migrate PRODUCT`` against a real PostgreSQL, with DATABASE_URL alone (as a
release phase runs it): order, the record, a second run, a failure, two runs at once."""

import os
import subprocess
import sys
import threading

import pytest

from apiphant.db.migrate import TABLE, MigrationError, found
from tests.servers import REPO
from tests.support.databases import new_database

psycopg = pytest.importorskip("psycopg")


@pytest.fixture
def database(postgres):
    """A new, empty database on the session's cluster, dropped after."""
    with new_database(postgres, "m") as url:
        yield url


def product_with(make_product, files: dict[str, str]):
    return make_product({f"migrations/{name}": sql for name, sql in files.items()}, name="shop")


def migrate(product, url: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run([sys.executable, "-m", "apiphant", "db", "migrate", str(product)],
                          capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**environ, "DATABASE_URL": url})  # fmt: skip


def query(url: str, sql: str) -> list:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


ORDERED = {
    "0010_third.sql": "INSERT INTO users (email, name) VALUES ('c@example.com', 'C');",
    "0001_create_users.sql": "CREATE TABLE users (id serial PRIMARY KEY, email text UNIQUE);\n"
                             "INSERT INTO users (email) VALUES ('a@example.com');",
    "0002_add_name.sql": "ALTER TABLE users ADD COLUMN name text; -- 100% of them\n",
    "README.md": "not a migration",
}  # fmt: skip


def test_files_apply_in_order_once_each_and_are_recorded(make_product, database) -> None:
    product = product_with(make_product, ORDERED)
    first = migrate(product, database)
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines()[:3] == [
        "applied 0001_create_users.sql", "applied 0002_add_name.sql", "applied 0010_third.sql"]
    assert query(database, "SELECT email, name FROM users ORDER BY id") == [
        ("a@example.com", None), ("c@example.com", "C")]
    recorded = query(database, f"SELECT name FROM {TABLE} ORDER BY applied_at, name")
    assert recorded == [("0001_create_users.sql",), ("0002_add_name.sql",), ("0010_third.sql",)]

    second = migrate(product, database)
    assert second.returncode == 0, second.stderr
    assert not [line for line in second.stderr.splitlines() if line.startswith("applied ")]
    assert "nothing to apply" in second.stderr
    assert len(query(database, "SELECT * FROM users")) == 2


def test_a_failed_file_is_rolled_back_and_named_with_the_databases_message(make_product,
                                                                           database) -> None:
    product = product_with(make_product, {
        "0001_create_users.sql": "CREATE TABLE users (email text UNIQUE);",
        "0002_broken.sql": "INSERT INTO users VALUES ('half@example.com');\n"
                           "ALTER TABLE users ADD COLUMN nosuch_type_column nosuchtype;",
        "0003_never.sql": "CREATE TABLE never (x int);",
    })  # fmt: skip
    secret = "pw-0077-secret"
    url = database.replace("postgresql://apiphant@", f"postgresql://apiphant:{secret}@")
    failed = migrate(product, url)
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[-1] == (
        f"apiphant db migrate: {product}/migrations/0002_broken.sql: failed, rolled back: "
        'type "nosuchtype" does not exist')
    assert secret not in failed.stderr + failed.stdout
    assert query(database, "SELECT * FROM users") == []  # the half of 0002 was undone
    assert query(database, f"SELECT name FROM {TABLE}") == [("0001_create_users.sql",)]
    assert query(database, "SELECT to_regclass('never')") == [(None,)]


def test_two_runs_at_once_apply_each_file_once(make_product, database) -> None:
    """The second run waits on the advisory lock, then finds everything applied (without
    the lock both would create the table, and one would fail)."""
    product = product_with(make_product, {
        "0001_slow.sql": "SELECT pg_sleep(0.5); CREATE TABLE ran (file text);"
                         "INSERT INTO ran VALUES ('0001');",
        "0002_more.sql": "INSERT INTO ran VALUES ('0002');",
    })  # fmt: skip
    results: list = []
    runs = [threading.Thread(target=lambda: results.append(migrate(product, database)))
            for _ in range(2)]  # fmt: skip
    for run in runs:
        run.start()
    for run in runs:
        run.join(120)
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert sorted(query(database, "SELECT file FROM ran")) == [("0001",), ("0002",)]
    applied = [line for r in results for line in r.stderr.splitlines() if "applied " in line]
    assert sorted(applied) == ["applied 0001_slow.sql", "applied 0002_more.sql"]


def test_a_misnamed_or_doubled_file_is_refused_before_connecting(make_product, tmp_path) -> None:
    product = product_with(make_product, {"0001_a.sql": "", "1_b.sql": ""})
    done = migrate(product, "postgresql://nobody@/nowhere?host=/nonexistent")
    assert done.returncode == 2
    assert done.stderr.strip() == (f"apiphant db migrate: {product}/migrations/1_b.sql: "
                                   "expected a name like 0001_create_users.sql")  # fmt: skip
    (tmp_path / "0001_a.sql").write_text("")
    (tmp_path / "0001_b.sql").write_text("")
    with pytest.raises(MigrationError, match="number 0001 is 0001_a.sql's too"):
        found(tmp_path)


def test_a_product_without_migrations_has_nothing_to_apply(make_product) -> None:
    product = make_product({}, name="shop")
    done = migrate(product, "postgresql://nobody@/nowhere?host=/nonexistent")
    assert done.returncode == 0
    assert done.stderr.strip() == f"no {product}/migrations: no migration to apply"
