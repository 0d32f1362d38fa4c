"""apiphant.db under load through a real ``apiphant serve``, on a cluster of this module's own
(one test kills it): concurrent creates of one email, and the database killed under load."""

import json
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from apiphant.db.cluster import ClusterError, find_bindir
from apiphant.testing.postgres import cluster
from tests.servers import serving

psycopg = pytest.importorskip("psycopg")

USERS = {
    "api/v0/users.py": """
        import json

        import psycopg

        from apiphant import ApiError, db
        from apiphant.hatches import raw_response

        @raw_response
        def create(request, start_response):  # 201: the escape hatch sets its own status
            try:
                with db.transaction() as conn:
                    row = conn.execute("INSERT INTO users (email) VALUES (%s) RETURNING id",
                                       (request.email,)).fetchone()
            except psycopg.errors.UniqueViolation:
                raise ApiError(409, "a user with this email exists") from None
            body = json.dumps({"id": row[0]}).encode()
            start_response("201 Created", [("Content-Type", "application/json"),
                                           ("Content-Length", str(len(body)))])
            return [body]

        def read(request):
            with db.connection() as conn:
                return {"users": conn.execute("SELECT count(*) FROM users").fetchone()[0]}
    """,
}


@pytest.fixture(scope="module")
def database():
    try:
        find_bindir()
    except ClusterError as error:
        pytest.skip(str(error))
    with cluster() as found:
        with psycopg.connect(found.url) as conn:
            conn.execute("CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL);"
                         "CREATE UNIQUE INDEX users_email ON users (lower(email))")  # fmt: skip
        yield found


def test_200_concurrent_creates_of_one_email_give_one_201_and_199_409(database, make_product,
                                                                      tmp_path) -> None:
    product = make_product(USERS, name="users200")
    env = {"DATABASE_URL": database.url}
    with serving(product, tmp_path, "--db-pool-timeout", "60", env=env) as live:
        start = threading.Barrier(200)

        def create(n: int) -> tuple[int, dict]:
            with requests.Session() as session:
                start.wait(30)
                answer = session.post(f"{live.url}/api/v0/users/create",
                                      json={"email": "Same@Example.com"}, timeout=60)  # fmt: skip
                return answer.status_code, answer.json()

        with ThreadPoolExecutor(200) as pool:
            answers = list(pool.map(create, range(200)))
        statuses = Counter(status for status, _ in answers)
        assert statuses == {201: 1, 409: 199}, statuses
        assert {json.dumps(body) for status, body in answers if status == 409} == {
            '{"error": "a user with this email exists"}'}
        assert live.process.poll() is None
    with psycopg.connect(database.url) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (1,)


def test_the_database_killed_under_load_gives_json_errors_and_service_returns(
        database, make_product, tmp_path) -> None:  # fmt: skip
    """kill -9 of the postmaster while 8 clients read: each answer is 200, or a 503 or 500
    JSON error; the worker stays up; once the cluster is started again, reads succeed."""
    product = make_product(USERS, name="users_kill")
    env = {"DATABASE_URL": database.url}
    with serving(product, tmp_path, "--db-pool-size", "4", "--db-pool-timeout", "1",
                 env=env) as live:  # fmt: skip
        seen: Counter = Counter()
        problems: list[str] = []
        stop = threading.Event()

        def read() -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    try:
                        answer = session.post(f"{live.url}/api/v0/users/read", json={},
                                              timeout=30)  # fmt: skip
                        body = answer.json()
                    except (requests.RequestException, ValueError) as error:
                        problems.append(repr(error))
                        continue
                    seen[answer.status_code] += 1
                    if answer.status_code != 200 and set(body) != {"error"}:
                        problems.append(f"{answer.status_code}: {body}")

        clients = [threading.Thread(target=read, daemon=True) for _ in range(8)]
        for client in clients:
            client.start()
        try:
            _until(lambda: seen[200] >= 50, "no reads before the kill")
            os.kill(database.pid(), signal.SIGKILL)
            _until(lambda: seen[503] + seen[500] >= 8, "no error answer after the kill")
            _restart(database)
            before = seen[200]
            _until(lambda: seen[200] >= before + 50, "no reads after the restart", 90)
        finally:
            stop.set()
            for client in clients:
                client.join(40)
        assert not problems, problems[:5]
        assert set(seen) <= {200, 500, 503}, seen
        assert live.process.poll() is None  # the worker lived through it
        assert requests.get(f"{live.url}/health", timeout=10).status_code == 200


def _until(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _restart(database) -> None:
    """Start the killed cluster again; its backends may take a moment to notice the
    postmaster is gone and release the shared memory."""
    deadline = time.monotonic() + 60
    while True:
        try:
            database.start()
            return
        except ClusterError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
