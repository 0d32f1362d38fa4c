"""Flask with psycopg: the database scenarios, on ``gunicorn -k gevent -w 1``.

gunicorn's gevent worker patches the standard library before it imports this module, so
psycopg waits cooperatively (gevent is supported from psycopg 3.1.14), and psycopg_pool's
worker threads are greenlets. One pool of ``BENCH_DB_POOL`` connections (apiphant's default
pool size), opened on the first request, in autocommit, as apiphant's is: the two differ
in the framework, not in the driver's round trips.
"""

import os
import random

from flask import Flask, request
from psycopg_pool import ConnectionPool

from bench.world.api.v0.db import READ, ROWS

SIZE = int(os.environ.get("BENCH_DB_POOL") or 10)
pool = ConnectionPool(os.environ["DATABASE_URL"], min_size=SIZE, max_size=SIZE, open=False,
                      kwargs={"autocommit": True})  # as apiphant's: a read is one round trip
opened = False

app = Flask(__name__)


def connection():  # noqa: ANN201 (psycopg_pool's context manager)
    global opened
    if not opened:
        pool.open()  # safe to call again while another greenlet opens it
        opened = True
    return pool.connection()


@app.post("/api/v0/db/read")
def single() -> dict:
    """One random row."""
    with connection() as conn:
        row = conn.execute(READ, (random.randint(1, ROWS),)).fetchone()
    return {"id": row[0], "randomNumber": row[1]}


@app.post("/api/v0/queries/read")
def queries() -> dict:
    """``{"queries": N}`` random rows, one query each."""
    count = min(max(int(request.get_json().get("queries") or 1), 1), 500)
    with connection() as conn:
        rows = [conn.execute(READ, (random.randint(1, ROWS),)).fetchone() for _ in range(count)]
    return {"worlds": [{"id": row[0], "randomNumber": row[1]} for row in rows]}
