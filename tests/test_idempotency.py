"""Idempotency-Key against a real PostgreSQL (a database of this module's own in the session's
cluster): a retry gets the first answer and the handler runs once, through the server's
direct path and the WSGI path; another body is 422; a duplicate that arrives while the first
runs waits for its answer, or gets 409 past the wait; an expired key runs anew; the key is
scoped per route and per credentials. What a handler did is counted in the table ``runs``,
written in the request's own transaction, so "ran once" is read from the database."""

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from apiphant import db
from apiphant.db import idempotency
from apiphant.errors import ApiError
from tests.servers import REPO, serving
from tests.support.databases import new_database

psycopg = pytest.importorskip("psycopg")

HANDLERS = {
    "api/v0/runs.py": """
        from apiphant import ApiError, db, idempotent, status

        def _run(request):
            with db.transaction() as conn:
                conn.execute("INSERT INTO runs (tag) VALUES (%s)", (request.tag,))

        @status(201)
        def create(request, http):
            _run(request)
            http.set_header("X-Handled", "yes")
            if request.get("refuse"):
                raise ApiError(409, "refused")  # an answer too: kept, its writes undone
            if request.get("bug"):
                return {"x": 1 / 0}  # a 500: nothing kept, the write rolled back
            return {"tag": request.tag, "id": request.get("id")}

        def update(request):  # waits on the advisory lock a test holds, then writes
            with db.connection() as conn:
                conn.execute("SELECT pg_advisory_lock(4343)")
                conn.execute("SELECT pg_advisory_unlock(4343)")
            _run(request)
            return {"tag": request.tag}

        @idempotent(False)
        def delete(request):  # a write that opts out
            _run(request)
            return {}

        def read(request):  # a read ignores the key
            _run(request)
            return {}
    """,
    "api/v0/plain.py": """
        def update(request):  # a write that needs no database
            return {"done": True}
    """,
}


@pytest.fixture(scope="module")
def database(postgres) -> Iterator[str]:
    with new_database(postgres, "idem_") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE runs (tag text NOT NULL)")
        yield url


def runs(url: str, tag: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM runs WHERE tag = %s", (tag,)).fetchone()[0]


def new_tag() -> str:
    return uuid.uuid4().hex


@pytest.fixture(scope="module")
def product(tmp_path_factory) -> Iterator:
    """The handlers as a product folder of this module (make_product is per test)."""
    import textwrap

    root = tmp_path_factory.mktemp("idem") / "idem"
    for relative, source in HANDLERS.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    yield root
    for module in [m for m in sys.modules if m == "idem" or m.startswith("idem.")]:
        del sys.modules[module]
    while str(root.parent) in sys.path:
        sys.path.remove(str(root.parent))


@pytest.fixture(scope="module")
def live(product, database, tmp_path_factory):
    """The product served with a long wait (30 s) for a duplicate in flight."""
    with serving(product, tmp_path_factory.mktemp("live"), "--db-pool-timeout", "30",
                 env={"DATABASE_URL": database}) as server:  # fmt: skip
        yield server


@pytest.fixture
def inprocess(product, database):
    """The same through the WSGI path, in this process."""
    from apiphant.testing import Client

    db.configure(url=database, pool_size=4, pool_timeout=30)
    yield Client(product)
    db.close()
    db._config.url = None


def _post(live, action: str, body: dict, key: str | None = None, **headers: str):
    if key is not None:
        headers["Idempotency-Key"] = key
    return requests.post(f"{live.url}/api/v0/runs/{action}", json=body, headers=headers,
                         timeout=60)  # fmt: skip


# What a retry gets


def test_a_retry_gets_the_first_answer_and_the_handler_ran_once(live, database) -> None:
    tag, key = new_tag(), str(uuid.uuid4())
    first = _post(live, "create", {"tag": tag, "id": 1}, key)
    assert (first.status_code, first.json()) == (201, {"tag": tag, "id": 1})
    assert first.headers["X-Handled"] == "yes" and "Idempotent-Replayed" not in first.headers
    again = _post(live, "create", {"id": 1, "tag": tag}, f'"{key}"')  # the draft's sf-string
    assert (again.status_code, again.content) == (201, first.content)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["X-Handled"] == "yes"  # the handler's headers come back too
    assert again.headers["X-Request-Id"] != first.headers["X-Request-Id"]
    assert runs(database, tag) == 1
    for _ in range(2):  # without a key, each request runs
        assert _post(live, "create", {"tag": tag}).status_code == 201
    assert runs(database, tag) == 3


def test_the_wsgi_path_keeps_and_replays_alike(inprocess, database) -> None:
    tag, key = new_tag(), str(uuid.uuid4())
    answers = [inprocess.post("runs", "create", {"tag": tag}, headers={"Idempotency-Key": key})
               for _ in range(2)]  # fmt: skip
    assert [a.status for a in answers] == [201, 201] and answers[0].body == answers[1].body
    assert "Idempotent-Replayed" not in answers[0].headers
    assert answers[1].headers["Idempotent-Replayed"] == "true"
    assert runs(database, tag) == 1


def test_the_same_key_with_another_body_is_422_and_the_first_answer_stays(live, database):
    tag, key = new_tag(), str(uuid.uuid4())
    first = _post(live, "create", {"tag": tag, "id": 1}, key)
    other = _post(live, "create", {"tag": tag, "id": 2}, key)
    assert (other.status_code, other.json()) == (
        422, {"error": "this Idempotency-Key was used with another request body"})
    again = _post(live, "create", {"tag": tag, "id": 1}, key)
    assert again.content == first.content and again.headers["Idempotent-Replayed"] == "true"
    assert runs(database, tag) == 1


def test_an_error_answer_is_kept_with_its_writes_undone_and_a_500_keeps_nothing(live, database):
    tag, key = new_tag(), str(uuid.uuid4())
    refused = [_post(live, "create", {"tag": tag, "refuse": True}, key) for _ in range(2)]
    assert [(a.status_code, a.json()) for a in refused] == [(409, {"error": "refused"})] * 2
    assert refused[1].headers["Idempotent-Replayed"] == "true"
    assert runs(database, tag) == 0  # the handler's savepoint was rolled back
    failed = [_post(live, "create", {"tag": tag, "bug": True}, key + "-b") for _ in range(2)]
    assert [a.status_code for a in failed] == [500, 500]
    assert "Idempotent-Replayed" not in failed[1].headers  # ran again: nothing was kept
    assert runs(database, tag) == 0  # and each run's write was rolled back with it


# Concurrent duplicates


def _waiting(url: str, locktype: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = %s AND NOT granted",
                            (locktype,)).fetchone()[0] > 0  # fmt: skip


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _in_thread(call) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(call()))
    thread.start()
    return thread, out


def test_a_duplicate_while_the_first_runs_waits_and_gets_its_answer(live, database) -> None:
    """The first holds the key's row while it waits on a lock the test holds; the duplicate
    waits on that row; the lock released, both answer the same and the handler ran once."""
    tag, key = new_tag(), str(uuid.uuid4())
    with psycopg.connect(database, autocommit=True) as lock:
        lock.execute("SELECT pg_advisory_lock(4343)")
        try:
            first, first_out = _in_thread(lambda: _post(live, "update", {"tag": tag}, key))
            _until(lambda: _waiting(database, "advisory"), "the first never reached the lock")
            second, second_out = _in_thread(lambda: _post(live, "update", {"tag": tag}, key))
            _until(lambda: _waiting(database, "transactionid"),
                   "the duplicate never waited on the first's row")  # fmt: skip
        finally:
            lock.execute("SELECT pg_advisory_unlock(4343)")
        first.join(60)
        second.join(60)
    assert [(a.status_code, a.json()) for a in first_out + second_out] == [(200, {"tag": tag})] * 2
    assert "Idempotent-Replayed" not in first_out[0].headers
    assert second_out[0].headers["Idempotent-Replayed"] == "true"
    assert runs(database, tag) == 1


def test_a_duplicate_that_waits_past_the_pool_timeout_gets_409(product, database, tmp_path):
    tag, key = new_tag(), str(uuid.uuid4())
    with serving(product, tmp_path, "--db-pool-timeout", "0.5",
                 env={"DATABASE_URL": database}) as short, \
            psycopg.connect(database, autocommit=True) as lock:  # fmt: skip
        lock.execute("SELECT pg_advisory_lock(4343)")
        try:
            first, first_out = _in_thread(lambda: _post(short, "update", {"tag": tag}, key))
            _until(lambda: _waiting(database, "advisory"), "the first never reached the lock")
            busy = _post(short, "update", {"tag": tag}, key)
        finally:
            lock.execute("SELECT pg_advisory_unlock(4343)")
        first.join(60)
    assert (busy.status_code, busy.json()) == (409, {
        "error": "a request with this Idempotency-Key is still being processed; retry later"})
    assert busy.headers["Retry-After"] == "1"
    assert first_out[0].status_code == 200
    assert runs(database, tag) == 1


# Expiry, scope, which actions


def test_an_expired_key_runs_anew_and_the_ttl_is_the_settings(product, database, tmp_path):
    tag, key = new_tag(), str(uuid.uuid4())
    env = {"DATABASE_URL": database, "APIPHANT_IDEMPOTENCY_TTL": "120"}
    with serving(product, tmp_path, env=env) as short:
        _post(short, "create", {"tag": tag}, key)
        with psycopg.connect(database, autocommit=True) as conn:
            left = conn.execute(f"SELECT extract(epoch FROM expires_at - now()) FROM "
                                f"{idempotency.TABLE} WHERE key = %s", (key,)).fetchone()[0]
            assert 0 < left <= 120  # kept for the configured time, not the default day
            conn.execute(f"UPDATE {idempotency.TABLE} SET expires_at = now() - interval '1 s' "
                         "WHERE key = %s", (key,))  # fmt: skip
        again = _post(short, "create", {"tag": tag}, key)
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert runs(database, tag) == 2


def test_a_bad_ttl_stops_the_server_in_one_line(product, database) -> None:
    done = subprocess.run([sys.executable, "-m", "apiphant", "serve", str(product)],
                          env={**os.environ, "DATABASE_URL": database,
                               "APIPHANT_IDEMPOTENCY_TTL": "a day"},
                          capture_output=True, text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "apiphant: APIPHANT_IDEMPOTENCY_TTL: expected a positive number of seconds, got 'a day'"]


def test_a_key_is_scoped_per_credentials_and_per_route(live, database) -> None:
    tag, key = new_tag(), str(uuid.uuid4())
    ann = _post(live, "create", {"tag": tag}, key, Authorization="Bearer ann")
    bob = _post(live, "create", {"tag": tag}, key, Authorization="Bearer bob")
    assert "Idempotent-Replayed" not in bob.headers and ann.status_code == bob.status_code == 201
    assert _post(live, "create", {"tag": tag}, key, Authorization="Bearer ann").headers[
        "Idempotent-Replayed"] == "true"
    assert runs(database, tag) == 2
    with psycopg.connect(database) as conn:  # the credentials are not stored, only a hash
        stored = conn.execute(f"SELECT client FROM {idempotency.TABLE} WHERE key = %s",
                              (key,)).fetchall()  # fmt: skip
    assert all(b"Bearer" not in bytes(row[0]) and len(row[0]) == 32 for row in stored)


def test_a_read_and_an_opted_out_write_ignore_the_key(live, database) -> None:
    tag, key = new_tag(), str(uuid.uuid4())
    for action in ("read", "read", "delete", "delete"):
        answer = _post(live, action, {"tag": tag}, key)
        assert answer.status_code == 200 and "Idempotent-Replayed" not in answer.headers
    assert runs(database, tag) == 4


def test_a_malformed_key_is_a_400_naming_the_header(live) -> None:
    for key in ("", '"unclosed', "tab\there", "x" * 256, '"a"b"'):
        answer = _post(live, "create", {"tag": "x"}, key)
        assert (answer.status_code, answer.json()) == (400, {"error": {
            "field": "Idempotency-Key", "state": "invalid",
            "explain": "1 to 255 printable ASCII characters, like a UUID"}}), key


def test_without_a_database_a_keyed_write_is_503_and_an_unkeyed_one_runs(product, tmp_path):
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    with serving(product, tmp_path, env=env) as bare:
        keyed = requests.post(f"{bare.url}/api/v0/plain/update", json={}, timeout=30,
                              headers={"Idempotency-Key": "k1"})  # fmt: skip
        plain = requests.post(f"{bare.url}/api/v0/plain/update", json={}, timeout=30)
    assert (keyed.status_code, keyed.json()) == (
        503, {"error": "no database: set DATABASE_URL or run apiphant db start"})
    assert (plain.status_code, plain.json()) == (200, {"done": True})


# The rules, pure


@pytest.mark.parametrize("sent, key", [("abc", "abc"), ('"abc"', "abc"), ('"a\\"b"', 'a"b'),
                                       ('"a\\\\b"', "a\\b"), ("  8e03978e  ", "8e03978e")])
def test_a_key_is_the_drafts_string_or_the_bare_text(sent, key) -> None:
    assert idempotency.parse_key(sent) == key


def test_a_request_is_the_same_whatever_the_order_of_its_keys() -> None:
    assert idempotency.fingerprint({"a": 1, "b": [1, 2]}) == idempotency.fingerprint(
        {"b": [1, 2], "a": 1})
    assert idempotency.fingerprint({"a": 1}) != idempotency.fingerprint({"a": 2})


@pytest.mark.parametrize("action, marked, applies", [
    ("create", None, True), ("update", None, True), ("delete", None, True),
    ("read", None, False), ("create", False, False), ("read", True, True)])  # fmt: skip
def test_the_writes_honour_a_key_unless_marked(action, marked, applies) -> None:
    assert idempotency.applies(action, marked) is applies


def test_a_bad_key_is_an_api_error() -> None:
    with pytest.raises(ApiError):
        idempotency.parse_key("")
