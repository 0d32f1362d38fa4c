"""POST /api/v0/db/read: one random row of ``world`` by id, as TechEmpower's single query.

Written as a product's handler is (docs/data.md): a connection from the worker's pool for
the block, the value as a parameter.
"""

import random

from apiphant import db
from apiphant.request import Request

#: TechEmpower's table: ids 1 to ROWS (bench/database.py fills it; the peers read it here).
ROWS = 10_000
READ = "SELECT id, randomnumber FROM world WHERE id = %s"


def read(request: Request) -> dict:
    with db.connection() as conn:
        row = conn.execute(READ, (random.randint(1, ROWS),)).fetchone()
    return {"id": row[0], "randomNumber": row[1]}
