"""The database scenarios' PostgreSQL: one private cluster for every system of a run.

TechEmpower's ``world`` table (10,000 rows of id and randomNumber) in a cluster the bench
starts in a temporary folder from the system's PostgreSQL (apiphant.db.cluster, as
``apiphant db start`` runs one: a Unix socket in the folder, no TCP port), and stops and
deletes however the run ends. ``check_answer`` holds every system to the table's rows.
"""

import http.client
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from apiphant.db.cluster import Cluster, ClusterError, find_bindir
from bench.servers import HOST, BenchError
from bench.world.api.v0.db import ROWS

SCHEMA = f"""
CREATE TABLE world (id integer PRIMARY KEY, randomnumber integer NOT NULL DEFAULT 0);
INSERT INTO world (id, randomnumber)
    SELECT i, 1 + floor(random() * 10000)::integer FROM generate_series(1, {ROWS}) AS i;
ANALYZE world;
"""
#: The rows of the multiple-queries scenario, as TechEmpower's 20-query run.
QUERIES = 20
DB_PATH = "/api/v0/db/read"
QUERIES_PATH = "/api/v0/queries/read"
DB_BODY = b"{}"
QUERIES_BODY = json.dumps({"queries": QUERIES}).encode()
USER = DBNAME = "bench"


@dataclass(frozen=True)
class Database:
    """A running cluster with the world table: its folder, URL and postmaster, and the
    table's rows (id: randomNumber)."""

    folder: Path
    url: str
    pid: int
    world: dict[int, int]


def available() -> str | None:
    """Why the database scenarios cannot run here (PostgreSQL or psycopg missing), or None."""
    try:
        find_bindir()
    except ClusterError as error:
        return str(error)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install -e '.[bench]'"
    return None


@contextmanager
def database(cpu: str | None = None) -> Iterator[Database]:
    """A started cluster with the world table, its processes on ``cpu`` (with the load
    generator: the core of the server being measured is the server's alone); stopped and
    its folder deleted on the way out, on error too."""
    import psycopg

    bindir = find_bindir()
    folder = Path(tempfile.mkdtemp(prefix="bench-pg-"))  # short: the socket path has a limit
    cluster = Cluster(folder, USER, DBNAME)
    try:
        try:
            cluster.start(bindir)
        except ClusterError as error:
            raise BenchError(str(error)) from None
        pid = cluster.pid()
        if pid is None:
            raise BenchError(f"PostgreSQL in {folder} started but has no postmaster.pid")
        if cpu is not None:  # the backends it forks later inherit the affinity
            subprocess.run(["taskset", "-a", "-p", "-c", cpu, str(pid)], check=True,
                           capture_output=True)  # fmt: skip
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            conn.execute(SCHEMA)
            world = dict(conn.execute("SELECT id, randomnumber FROM world").fetchall())
        yield Database(folder, cluster.url, pid, world)
    finally:
        try:
            cluster.stop(bindir)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _row(value: object, world: dict[int, int]) -> bool:
    """One answered row: exactly ``{"id": ..., "randomNumber": ...}``, and the table's."""
    return (
        isinstance(value, dict)
        and set(value) == {"id", "randomNumber"}
        and type(value["id"]) is int
        and world.get(value["id"]) == value["randomNumber"]
    )


def valid(path: str, answer: object, world: dict[int, int]) -> bool:
    """Whether ``answer`` is right for ``path``: one row, or ``{"worlds": [QUERIES rows]}``
    (an apiphant answer is an object, so every system wraps the rows alike). Pure."""
    if path == DB_PATH:
        return _row(answer, world)
    if not isinstance(answer, dict) or set(answer) != {"worlds"}:
        return False
    rows = answer["worlds"]
    return (
        isinstance(rows, list) and len(rows) == QUERIES and all(_row(r, world) for r in rows)
    )


def check_answer(port: int, path: str, body: bytes, world: dict[int, int], name: str) -> None:
    """A few requests before any load (ids are random): a system whose answer is not the
    table's rows is not measured."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        for _ in range(3):
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            raw = response.read()
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = None
            if response.status != 200 or not valid(path, answer, world):
                raise BenchError(f"{name} answered {response.status} {raw[:300]!r} to {path}")
    finally:
        conn.close()
