"""FastAPI doing the JSON echo, on uvicorn with uvloop and httptools.

A ``dict`` body in and out, as FastAPI users write it (validated by pydantic,
encoded by FastAPI). ``BENCH_SLEEP`` as in starlette_app.py.
"""

import asyncio
import os
from typing import Any

from fastapi import Body, FastAPI

SLEEP = float(os.environ.get("BENCH_SLEEP") or 0)

app = FastAPI()


@app.post("/api/v0/echo/read")
async def echo(data: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
    """The request object back, plus one field."""
    if SLEEP:
        await asyncio.sleep(SLEEP)
    data["server"] = "myproduct"
    return data
