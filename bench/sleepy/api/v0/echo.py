"""POST /api/v0/echo/read: the echo, answered after a 50 ms cooperative wait.

The server monkey-patches ``time.sleep``, so the wait yields to other requests
as a database call would (the I/O-bound scenario of bench/run.py).
"""

import time

from apiphant.request import Request

WAIT = 0.05


def read(request: Request) -> dict:
    time.sleep(WAIT)
    response = request.copy()
    response.server = "myproduct"
    return response
