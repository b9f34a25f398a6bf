"""A FastAPI app for bench_lifecycle.py: SLOW_SECONDS=N gives it one component that takes N seconds."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI

import infraboot
import infraboot.fastapi as ib

SLOW = float(os.environ.get("SLOW_SECONDS", "0"))
names: list[str] = []
if SLOW:

    @infraboot.component("slow", timeout=SLOW + 30, retries=0)
    async def slow(ctx: infraboot.Context) -> AsyncIterator[str]:
        await asyncio.sleep(SLOW)  # a dependency that takes this long to accept us
        yield "slow"

    infraboot.register(slow)
    names.append("slow")

api = FastAPI(lifespan=ib.lifespan(names, background=True))


@api.get("/work")
async def work() -> dict[str, bool]:
    await asyncio.sleep(0.03)
    return {"ok": True}


app = ib.ProbeMiddleware(api)
