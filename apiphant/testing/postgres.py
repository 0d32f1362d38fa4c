"""A real PostgreSQL for a product's tests: a private cluster in a temporary folder.

In the product's ``tests/conftest.py``::

    from apiphant.testing.postgres import postgres  # noqa: F401  (the fixture)

    def test_create(postgres):          # postgres is the cluster's DATABASE_URL
        ...

One cluster for the whole test session, started from the system's PostgreSQL binaries
(``apiphant db start``'s way: a Unix socket in the folder, no TCP, no Docker), stopped and
deleted after the last test, also when tests fail. Without PostgreSQL installed, the tests
that ask for it are skipped with the package to install. ``cluster()`` is the same as a
context manager, for a fixture of another scope.
"""

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from apiphant.db.cluster import Cluster, ClusterError, find_bindir

#: The cluster's superuser and database.
USER = DBNAME = "apiphant"


@contextmanager
def cluster() -> Iterator[Cluster]:
    """A started cluster in a new folder under the system's temporary folder (root's
    PostgreSQL runs as the postgres user, who must reach it: pytest's own tmp_path is private
    to root); stopped and deleted on the way out."""
    bindir = find_bindir()
    folder = Path(tempfile.mkdtemp(prefix="apiphant-pg-"))
    found = Cluster(folder, USER, DBNAME)
    try:
        found.start(bindir)
        yield found
    finally:
        try:
            found.stop(bindir)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """The DATABASE_URL of a private cluster for the session; skips without PostgreSQL."""
    try:
        find_bindir()
    except ClusterError as error:
        pytest.skip(str(error))
    with cluster() as found:
        yield found.url
