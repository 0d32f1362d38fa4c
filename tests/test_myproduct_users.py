"""The template product's users in PostgreSQL, as its smoke test (test.py, what every deploy
runs) sees them: served by a real ``apiphant serve`` against a database of its own in the
session's cluster (apiphant.testing.postgres), migrated by ``apiphant db migrate``; and,
with no database, the users part skipped in one line while echo's tests run."""

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.servers import MYPRODUCT, serving
from tests.support.databases import migrate, new_database
from tests.support.ports import free_port

psycopg = pytest.importorskip("psycopg")

SKIPPED = ("SKIPPED users: the server has no database "
           "(no database: set DATABASE_URL or run apiphant db start)")  # fmt: skip


def _without_database() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}


def smoke(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """myproduct's test.sh (python -m apiphant.smoke), as a deploy runs it."""
    env = {**env, "PYTHON": sys.executable, "APIPHANT_PORT": str(free_port())}
    return subprocess.run([str(MYPRODUCT / "test.sh"), *args], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


@pytest.fixture
def database(postgres) -> Iterator[str]:
    """A new database in the session's cluster, myproduct's migrations applied by the
    command a deploy runs; dropped after."""
    with new_database(postgres, "myproduct_") as url:
        done = migrate(MYPRODUCT, url)
        assert done.returncode == 0, done.stderr
        assert "applied 0001_create_users.sql" in done.stdout + done.stderr
        yield url


def test_without_a_database_the_users_part_is_skipped_in_one_line_and_echo_runs() -> None:
    done = smoke(env=_without_database())
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SKIPPED") == 1 and SKIPPED in done.stdout
    assert "OK: 7 passed" in done.stdout


def test_with_a_database_test_py_exercises_the_users_and_leaves_no_row(database, tmp_path):
    env = {"DATABASE_URL": database}
    with serving(MYPRODUCT, tmp_path, env=env) as live:
        for _ in range(2):  # a second run passes too: each run's emails are its own
            done = smoke(live.url, env=_without_database())
            assert done.returncode == 0, done.stdout + done.stderr
            assert "SKIPPED" not in done.stdout
            for line in ("/api/v0/users/create", "--> 201", "--> 409", "--> 404",
                         "/api/v0/users/update", "/api/v0/users/delete", "'next': "):
                assert line in done.stdout, line
            assert "OK: 19 passed" in done.stdout
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
