"""Databases on the session's PostgreSQL cluster (the ``postgres`` fixture's URL): each test
module gets its own, so tables and rows never leak from one module into another."""

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers import REPO


@contextmanager
def new_database(postgres: str, prefix: str) -> Iterator[str]:
    """A new, empty database named ``prefix`` + a random suffix; its URL; dropped after,
    connections and all (FORCE), also when the test fails."""
    import psycopg

    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield psycopg.conninfo.make_conninfo(postgres, dbname=name)
    finally:
        with psycopg.connect(postgres, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def migrate(product: Path, url: str) -> subprocess.CompletedProcess:
    """``apiphant db migrate PRODUCT`` against ``url``: the command a deploy runs."""
    return subprocess.run([sys.executable, "-m", "apiphant", "db", "migrate", str(product)],
                          env={**os.environ, "DATABASE_URL": url}, capture_output=True,
                          text=True, cwd=REPO, timeout=60)  # fmt: skip
