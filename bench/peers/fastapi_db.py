"""FastAPI with asyncpg: the database scenarios, on uvicorn with uvloop and httptools.

One asyncpg pool per worker of ``BENCH_DB_POOL`` connections (apiphant's default pool size),
opened in the lifespan; rows answered as dicts, as FastAPI users write it. The multiple
queries prepare the statement once per request and fetch each row with it, as TechEmpower's
FastAPI entry does.
"""

import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import Body, FastAPI

from bench.world.api.v0.db import ROWS

READ = "SELECT id, randomnumber FROM world WHERE id = $1"
SIZE = int(os.environ.get("BENCH_DB_POOL") or 10)
pool: asyncpg.Pool


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    global pool
    pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=SIZE, max_size=SIZE)
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)


@app.post("/api/v0/db/read")
async def single() -> dict[str, int]:
    """One random row."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(READ, random.randint(1, ROWS))
    return {"id": row[0], "randomNumber": row[1]}


@app.post("/api/v0/queries/read")
async def queries(data: dict[str, Any] = Body(...)) -> dict[str, list]:  # noqa: B008
    """``{"queries": N}`` random rows, one query each."""
    count = min(max(int(data.get("queries") or 1), 1), 500)
    async with pool.acquire() as conn:
        statement = await conn.prepare(READ)
        rows = [await statement.fetchrow(random.randint(1, ROWS)) for _ in range(count)]
    return {"worlds": [{"id": row[0], "randomNumber": row[1]} for row in rows]}
