"""A FastAPI app for the signal tests: a component that leaves a trace, Redis, and a handler that never ends.

- MARKER_FILE: the ``marker`` component appends ``started`` when it starts and ``stopped`` when it is
  torn down (a rollback or a shutdown), so a test sees what ran after the process is gone.
- STUCK_FILE: ``GET /stuck`` appends ``entered`` to it, then waits for ever (until cancelled).
- BACKGROUND: ``1`` serves while starting (``lifespan(background=True)``).
- REDIS_*: the built-in ``redis`` component, required; point it at a refusing or blackholed proxy.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

import infraboot
import infraboot.fastapi as ib

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(levelname)s %(message)s")
MARKER = Path(os.environ["MARKER_FILE"])
STUCK = Path(os.environ.get("STUCK_FILE", os.devnull))


def note(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(line + "\n")


@infraboot.component("marker")
async def marker(ctx: infraboot.Context) -> AsyncIterator[str]:
    note(MARKER, "started")
    yield "marker"
    note(MARKER, "stopped")


infraboot.register(marker)
api = FastAPI(
    lifespan=ib.lifespan(["marker", "redis"], background=os.environ.get("BACKGROUND") == "1"),
    exception_handlers=ib.exception_handlers,
)


@api.get("/stuck")
async def stuck() -> None:
    note(STUCK, "entered")
    await asyncio.Event().wait()


@api.get("/ok")
async def ok() -> dict[str, str]:
    return {"marker": infraboot.get("marker")}


app = ib.ProbeMiddleware(api)
