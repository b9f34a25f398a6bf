"""A FastAPI app for the lifecycle tests: one component that starts when a file appears.

- GATE_FILE: the component's start waits until this file exists (unset: starts at once).
- FAIL_FILE: while this file exists, the start fails with a refused connection.
- ON_FAILURE: "exit" (default) or "retry".
- INFRABOOT_DRAIN_DELAY: the drain's delay, as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request, Response

import infraboot
import infraboot.fastapi as ib

# infraboot's INFO events (drain_started) to stderr, as an application's logging setup would.
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")

GATE = os.environ.get("GATE_FILE")
FAIL = os.environ.get("FAIL_FILE")


@infraboot.component("backend", retries=0, timeout=120)
async def backend(ctx: infraboot.Context) -> AsyncIterator[str]:
    while GATE and not Path(GATE).exists():  # noqa: ASYNC240 - a test app polling a file
        await asyncio.sleep(0.02)
    if FAIL and Path(FAIL).exists():  # noqa: ASYNC240
        raise ConnectionRefusedError("backend refused the connection")
    yield "backend"


@contextlib.asynccontextmanager
async def warm(app: FastAPI) -> AsyncIterator[dict[str, str]]:
    """The app's own lifespan: with background=True it runs once the backend is up."""
    yield {"warmed": f"{infraboot.get('backend')} warmed"}


infraboot.register(backend)
api = FastAPI(
    lifespan=ib.lifespan(["backend"], background=True, inner=warm, on_failure=os.environ.get("ON_FAILURE", "exit")),  # type: ignore[arg-type]
    exception_handlers=ib.exception_handlers,
)


@api.get("/work")
async def work(request: Request, ms: int = 20) -> dict[str, str]:
    resource = infraboot.get("backend")
    await asyncio.sleep(ms / 1000)  # the request's own work
    return {"resource": resource, "warmed": request.app.state.warmed}


@api.middleware("http")
async def cache_publicly(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """The app's own middleware: every answer of the app may be cached for a minute."""
    response = await call_next(request)
    response.headers["Cache-Control"] = "public, max-age=60"
    return response


api.add_middleware(ib.ProbeMiddleware)  # last: outermost, so probes skip cache_publicly
app = api  # the app object is what uvicorn serves: app.dependency_overrides keeps working
