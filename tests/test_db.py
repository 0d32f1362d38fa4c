"""apiphant.db against a real PostgreSQL (the session's cluster, started by
apiphant.testing.postgres): the pool and its context managers, the answers a request gets
when the pool is exhausted or a query fails, and psycopg left unloaded when unused."""

import json
import subprocess
import sys
import threading
import time

import pytest
import requests

from apiphant import db
from apiphant.db.url import masked, password, scrubbed, socket_url
from apiphant.http.response import SERVER_ERROR_BODY
from tests.sentry_capture import capture_sentry
from tests.servers import MYPRODUCT, REPO, serving

psycopg = pytest.importorskip("psycopg")


@pytest.fixture
def database(postgres):
    """The session's database for this process's pool, closed and forgotten after."""
    db.configure(url=postgres, pool_size=2, pool_timeout=1)
    yield postgres
    db.close()
    db._config.url = None


# The URL as a person sees it


@pytest.mark.parametrize("url, shown, secret", [
    ("postgresql://app:s3cr%40t@db.example:5432/shop", "postgresql://app:***@db.example:5432/shop",
     "s3cr@t"),
    ("postgres://app@db/shop?password=pw-1&sslmode=require",
     "postgres://app@db/shop?password=***&sslmode=require", "pw-1"),
    ("host=db user=app password=pw-2 dbname=shop", "host=db user=app password=*** dbname=shop",
     "pw-2"),
    ("host=db password = 'a b\\'c' dbname=shop", "host=db password = *** dbname=shop", "a b'c"),
    ("postgresql://app@/shop?host=/srv/x", "postgresql://app@/shop?host=/srv/x", ""),
])  # fmt: skip
def test_a_url_is_shown_with_its_password_masked(url, shown, secret) -> None:
    assert masked(url) == shown
    assert password(url) == secret
    if secret:
        assert scrubbed(f"failed for {secret}!", url) == "failed for ***!"


def test_a_socket_url_quotes_its_parts() -> None:
    assert socket_url("/tmp/a b", "shop", "shop") == "postgresql://shop@/shop?host=/tmp/a%20b"


# The pool and its context managers


def test_a_transaction_commits_and_an_error_rolls_it_back(database) -> None:
    with db.transaction() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS notes (text text)")
        conn.execute("TRUNCATE notes")
    with db.transaction() as conn:
        conn.execute("INSERT INTO notes VALUES ('kept')")
    with pytest.raises(ZeroDivisionError), db.transaction() as conn:
        conn.execute("INSERT INTO notes VALUES ('undone')")
        raise ZeroDivisionError
    with db.connection() as conn:
        assert conn.execute("SELECT text FROM notes").fetchall() == [("kept",)]


def test_a_connection_block_commits_each_statement_and_sends_no_begin(database) -> None:
    """A read is one round trip (no BEGIN, no COMMIT); writes that belong together go in a
    transaction(), so an error after the first write of a connection() block keeps it."""
    from psycopg import pq

    with db.transaction() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS own (text text)")
        conn.execute("TRUNCATE own")
    with pytest.raises(ZeroDivisionError), db.connection() as conn:
        conn.execute("INSERT INTO own VALUES ('committed by itself')")
        assert conn.info.transaction_status == pq.TransactionStatus.IDLE  # no BEGIN was sent
        raise ZeroDivisionError
    with db.connection() as conn:
        assert conn.execute("SELECT text FROM own").fetchall() == [("committed by itself",)]


def test_nested_blocks_share_one_connection_and_a_nested_transaction_is_a_savepoint(database):
    with db.transaction() as outer:
        outer.execute("CREATE TABLE IF NOT EXISTS nested (n int)")
        outer.execute("TRUNCATE nested")
        with db.connection() as inner:
            assert inner is outer  # a helper's block takes no second connection
            inner.execute("INSERT INTO nested VALUES (1)")
        try:
            with db.transaction() as inner:
                inner.execute("INSERT INTO nested VALUES (2)")
                raise ValueError
        except ValueError:
            pass
    with db.connection() as conn:
        assert conn.execute("SELECT n FROM nested").fetchall() == [(1,)]


def test_the_pool_has_the_configured_size_and_waits_then_times_out(database) -> None:
    from psycopg_pool import PoolTimeout

    assert db.pool().max_size == 2 and db.pool().timeout == 1
    held, started = [], time.monotonic()
    with db.pool().connection() as first, db.pool().connection() as second:
        held += [first, second]
        with pytest.raises(PoolTimeout):
            with db.connection():
                pass
    assert time.monotonic() - started >= 1  # it waited in line for the timeout first
    with db.connection() as conn:  # and the pool serves again once one is back
        assert conn in held


def test_a_healthy_idle_connection_is_lent_without_a_round_trip(database, monkeypatch):
    """The pool's check asks the server only when the idle socket has something to read:
    lending a healthy connection costs no query (it did on every loan: a quarter of the
    round trips of a one-query request)."""
    from psycopg_pool import ConnectionPool

    asked = []
    original = ConnectionPool.check_connection

    def counted(conn) -> None:
        asked.append(conn)
        original(conn)

    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(counted))
    db.configure(pool_size=1)
    for _ in range(3):
        with db.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    assert asked == []


def test_a_connection_whose_backend_ended_is_replaced_not_lent(database, monkeypatch):
    """A session the server ended while it sat in the pool (a restart, an idle timeout,
    pg_terminate_backend) is checked with a round trip, fails it, and is replaced: the
    request gets a working connection, not an error."""
    db.configure(pool_size=1)
    with db.connection() as conn:
        first = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    with psycopg.connect(database, autocommit=True) as other:  # waits until it has ended
        assert other.execute("SELECT pg_terminate_backend(%s, 10000)", (first,)).fetchone()[0]
    with db.connection() as conn:
        second = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert second != first


def test_close_closes_the_pool_and_the_next_use_opens_a_new_one(database) -> None:
    first = db.pool()
    db.close()
    assert first.closed
    assert db.pool() is not first and not db.pool().closed


def test_without_a_url_a_connection_says_what_to_set(monkeypatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    db.close()
    with pytest.raises(db.NotConfigured, match="DATABASE_URL is not set"):
        with db.connection():
            pass


NOTES = {"api/v0/notes.py": """
    from apiphant import db

    def read(request):
        with db.connection() as conn:
            return {"one": conn.execute("SELECT 1").fetchone()[0]}
"""}


def test_without_a_database_a_request_answers_503_saying_what_to_set(monkeypatch, make_product,
                                                                       caplog) -> None:  # fmt: skip
    """No DATABASE_URL: not a bug to report but a process without its database; the client
    is told what to set, the log line says the same, and the worker goes on."""
    from apiphant.testing import Client

    monkeypatch.delenv("DATABASE_URL", raising=False)
    db.close()
    client = Client(make_product(NOTES, name="nodb"))
    with caplog.at_level("WARNING"):
        answer = client.post("notes", "read", {})
    assert (answer.status, answer.json) == (
        503, {"error": "no database: set DATABASE_URL or run apiphant db start"})
    assert "Retry-After" not in answer.headers  # retrying changes nothing until it is set
    assert "/api/v0/notes/read: DATABASE_URL is not set" in caplog.text
    assert "failed" not in caplog.text  # no traceback, no report


def test_without_psycopg_a_request_answers_503_naming_the_extra(monkeypatch, make_product,
                                                                 caplog) -> None:  # fmt: skip
    from apiphant.testing import Client

    db.close()
    monkeypatch.setitem(sys.modules, "psycopg_pool", None)  # import psycopg_pool fails
    db.configure(url="postgresql://nobody@/nothing?host=/nonexistent")
    try:
        answer = Client(make_product(NOTES, name="nodriver")).post("notes", "read", {})
    finally:
        db._config.url = None
    assert (answer.status, answer.json) == (
        503, {"error": "no database driver: pip install 'apiphant[postgres]'"})


# psycopg stays unloaded when unused

#: Serve the template product's echo in process, the way the server does (patched, through
#: the lifecycle that closes the pool), and say which database modules got loaded.
ECHO = f"""
import sys
from apiphant.runtime import monkey
monkey.patch_all()
import apiphant, apiphant.cli
from apiphant.runtime.lifecycle import serving
from apiphant.testing import Client
with serving("api"):
    answer = Client({str(MYPRODUCT)!r}).post("echo", "read", {{"hello": "world"}})
print(answer.status, sorted(name for name, module in sys.modules.items()
                            if module is not None and name.startswith("psycopg")))
"""


def test_serving_a_product_that_never_connects_loads_no_psycopg() -> None:
    done = subprocess.run([sys.executable, "-c", ECHO], capture_output=True, text=True,
                          cwd=REPO, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["200", "[]"]


def test_the_echo_example_works_without_psycopg_installed() -> None:
    blocked = "import sys; sys.modules.update(psycopg=None, psycopg_pool=None)\n"
    done = subprocess.run([sys.executable, "-c", blocked + ECHO], capture_output=True,
                          text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["200", "[]"]


def test_the_lifecycle_closes_the_pool_when_the_process_stops(postgres) -> None:
    """What the server and the background runner live in closes the pool on the way out."""
    code = f"""
from apiphant.runtime import monkey
monkey.patch_all()
from apiphant import db
from apiphant.runtime.lifecycle import serving
db.configure(url={postgres!r})
with serving("api"):
    pool = db.pool()
    with db.connection() as conn:
        conn.execute("SELECT 1")
    print(pool.closed)
print(pool.closed)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]


# What a request gets

HANDLERS = {
    "api/v0/notes.py": """
        from apiphant import db

        def read(request):
            with db.connection() as conn:
                return {"one": conn.execute("SELECT 1").fetchone()[0]}

        def update(request):  # waits for the advisory lock the test holds
            with db.connection() as conn:
                conn.execute("SELECT pg_advisory_lock(4242)")
                conn.execute("SELECT pg_advisory_unlock(4242)")
            return {}

        def delete(request):
            with db.connection() as conn:
                conn.execute("SELECT nosuch FROM pg_class WHERE relname = 'the-query-0013'")
    """,
}


def _waiting_for_lock(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                           "AND NOT granted").fetchone()  # fmt: skip
    return row[0] > 0


def test_an_exhausted_pool_answers_503_json_with_retry_after(postgres, make_product, tmp_path):
    """Pool of 1, its connection held by a request waiting on a lock the test holds: the
    next request waits the pool timeout in line, then gets the server's 503."""
    product = make_product(HANDLERS, name="pooled")
    env = {"DATABASE_URL": postgres}
    with serving(product, tmp_path, "--db-pool-size", "1", "--db-pool-timeout", "0.5",
                 env=env) as live, psycopg.connect(postgres, autocommit=True) as lock:  # fmt: skip
        lock.execute("SELECT pg_advisory_lock(4242)")
        holder = threading.Thread(
            target=lambda: holding.append(requests.post(f"{live.url}/api/v0/notes/update",
                                                        json={}, timeout=30)))  # fmt: skip
        holding: list = []
        holder.start()
        try:
            deadline = time.monotonic() + 20
            while not _waiting_for_lock(postgres):
                assert time.monotonic() < deadline, "the first request never took the lock"
                time.sleep(0.05)
            answer = requests.post(f"{live.url}/api/v0/notes/read", json={}, timeout=30)
            assert answer.status_code == 503
            assert answer.json() == {"error": "503 Service Unavailable"}
            assert answer.headers["Retry-After"] == "1"
            assert answer.headers["Content-Type"] == "application/json"
            assert answer.headers["X-Request-Id"]
        finally:
            lock.execute("SELECT pg_advisory_unlock(4242)")
            holder.join(30)
        assert holding[0].status_code == 200  # the held request finished all the same
        answer = requests.post(f"{live.url}/api/v0/notes/read", json={}, timeout=30)
        assert answer.status_code == 200 and answer.json() == {"one": 1}
        assert "no database connection within the pool timeout: 503" in live.log()


def test_a_sql_error_is_a_generic_500_reported_with_its_request_id(postgres, make_product,
                                                                   tmp_path) -> None:  # fmt: skip
    """No SQL, no database message, no credential in the answer; the event names the error
    and the request id the answer carried, and holds no password."""
    product = make_product(HANDLERS, name="failing")
    secret = "pw-0042-secret"
    url = postgres.replace("postgresql://apiphant@", f"postgresql://apiphant:{secret}@")
    assert url != postgres
    with capture_sentry() as sentry:
        with serving(product, tmp_path, env={**sentry.env(), "DATABASE_URL": url}) as live:
            answer = requests.post(f"{live.url}/api/v0/notes/delete", json={}, timeout=30)
            assert answer.status_code == 500
            assert answer.content == SERVER_ERROR_BODY
            for leak in ("nosuch", "the-query-0013", "pg_class", secret, "apiphant@"):
                assert leak not in answer.text
            assert live.stop() == 0
        [event] = sentry.wait_for(1, timeout=10)
        raw = b"".join(item.payload for item in sentry.items())
    [exception] = event["exception"]["values"]
    assert exception["type"] == "UndefinedColumn"
    assert event["tags"]["request_id"] == answer.headers["X-Request-Id"]
    assert event["tags"]["route"] == "/api/v0/notes/delete"
    assert secret.encode() not in raw
    assert json.loads(answer.content) == {"error": "500 Internal Server Error"}
