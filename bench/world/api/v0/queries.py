"""POST /api/v0/queries/read ``{"queries": 20}``: that many random rows, one query each, on
one connection, as TechEmpower's multiple queries (its count clamped to 1..500 likewise).

The rows come as ``{"worlds": [...]}``: an apiphant answer is a JSON object, so every system
of the bench answers this same shape instead of TechEmpower's bare array.
"""

import random

from apiphant import db, field
from apiphant.request import Request

from .db import READ, ROWS


def read(request: Request) -> dict:
    count = min(max(field(request, "queries", default_value=1, valid_type=int), 1), 500)
    with db.connection() as conn:
        rows = [conn.execute(READ, (random.randint(1, ROWS),)).fetchone() for _ in range(count)]
    return {"worlds": [{"id": row[0], "randomNumber": row[1]} for row in rows]}
