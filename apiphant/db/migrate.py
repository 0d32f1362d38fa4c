"""Migrations: PRODUCT/migrations/NNNN_name.sql, applied once each, in order.

Each file runs in a transaction of its own, recorded in ``apiphant_migrations`` in that same
transaction, so a file is either applied and recorded or neither. A session-level advisory
lock serialises concurrent runs (two release phases, or a deploy and a developer): the second
waits, then finds the files applied. The lock is the server's, held by the session: a run
killed halfway leaves no lock behind (a lock row in a table would need breaking by hand).

A file runs as one simple query: several statements, no parameters; a statement that cannot
run in a transaction (CREATE INDEX CONCURRENTLY) does not belong in one.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from apiphant.db.url import scrubbed

#: A migration's file name: four digits, an underscore, a name.
NAME = re.compile(r"(\d{4})_[A-Za-z0-9_]+\.sql")
TABLE = "apiphant_migrations"
#: The advisory lock's key: one bigint, the same for every run against the database.
LOCK_KEY = 0x61706970_6D696772  # "apipmigr"
CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    "name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
)


class MigrationError(Exception):
    """A migration that failed or a folder that is not one: one line. ``status`` is 2 for a
    bad folder (the user's input), 1 for a file the database refused."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Migration:
    name: str
    path: Path


def found(folder: Path) -> list[Migration]:
    """The folder's migrations in order; MigrationError (2) for a ``.sql`` file misnamed or
    two of the same number. Other files (a README) are left alone."""
    migrations, numbers = [], {}
    for path in sorted(folder.glob("*.sql")):
        match = NAME.fullmatch(path.name)
        if not match:
            raise MigrationError(f"{path}: expected a name like 0001_create_users.sql", 2)
        if match[1] in numbers:
            raise MigrationError(f"{path}: number {match[1]} is {numbers[match[1]]}'s too", 2)
        numbers[match[1]] = path.name
        migrations.append(Migration(path.name, path))
    return migrations


def pending(migrations: list[Migration], applied: set[str]) -> list[Migration]:
    """Those not applied yet, in order. Pure."""
    return [m for m in migrations if m.name not in applied]


def apply(url: str, folder: Path, say: Callable[[str], object] = print) -> list[str]:
    """Apply the folder's pending migrations to the database at ``url``; the names applied.

    Raises MigrationError naming the file and the database's message (never the URL's
    password) when one fails: that file is rolled back, those before it stay applied.
    """
    import psycopg

    migrations = found(folder)
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.Error as error:
        raise MigrationError(
            f"cannot connect to the database: {scrubbed(_said(error), url)}"
        ) from None
    applied: list[str] = []
    with conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            conn.execute(CREATE_TABLE)
            done = {row[0] for row in conn.execute(f"SELECT name FROM {TABLE}")}
            for migration in pending(migrations, done):
                sql = migration.path.read_text()
                try:
                    with conn.transaction():
                        if sql.strip():
                            conn.execute(sql)  # no parameters: run as written, % and all
                        conn.execute(f"INSERT INTO {TABLE} (name) VALUES (%s)",
                                     (migration.name,))  # fmt: skip
                except psycopg.Error as error:
                    raise MigrationError(
                        f"{migration.path}: failed, rolled back: {scrubbed(_said(error), url)}"
                    ) from None
                say(f"applied {migration.name}")
                applied.append(migration.name)
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return applied


def _said(error: Exception) -> str:
    """The database's own message, on one line."""
    diag = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None)
    return " ".join((primary or str(error)).split())
