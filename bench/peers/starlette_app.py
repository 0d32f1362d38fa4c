"""Starlette doing the JSON echo, on uvicorn with uvloop and httptools.

``python -m uvicorn bench.peers.starlette_app:app --loop uvloop --http httptools``.
``BENCH_SLEEP`` (seconds) makes each request wait first with ``asyncio.sleep``,
as a handler awaiting a database would (the I/O-bound scenario).
"""

import asyncio
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SLEEP = float(os.environ.get("BENCH_SLEEP") or 0)


async def echo(request: Request) -> JSONResponse:
    """The request object back, plus one field."""
    data = await request.json()
    if SLEEP:
        await asyncio.sleep(SLEEP)
    data["server"] = "myproduct"
    return JSONResponse(data)


app = Starlette(routes=[Route("/api/v0/echo/read", echo, methods=["POST"])])
