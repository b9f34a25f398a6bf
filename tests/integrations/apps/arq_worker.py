"""An arq worker under infraboot, run by arq's own CLI: ``python -m arq arq_worker.WorkerSettings``.

ARQ_REDIS_URL and ARQ_QUEUE say where the jobs are; GATE=fail makes the required component fail.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from arq.connections import RedisSettings

import infraboot
import infraboot.arq


async def slow(ctx: dict[str, Any], n: int) -> int:
    print(f"job {n} started", flush=True)
    await asyncio.sleep(float(os.environ.get("JOB_SECONDS", "2")))
    print(f"job {n} finished", flush=True)
    return n


@infraboot.component("gate", retries=0)
async def gate(ctx: infraboot.Context) -> AsyncIterator[str]:
    if os.environ.get("GATE") == "fail":
        raise ConnectionRefusedError("gate refused")
    print("gate started", flush=True)
    yield "gate"
    print("gate stopped", flush=True)


infraboot.register(gate)


class Settings:
    functions = [slow]  # noqa: RUF012 - arq reads class attributes
    redis_settings = RedisSettings.from_dsn(os.environ["ARQ_REDIS_URL"])
    queue_name = os.environ["ARQ_QUEUE"]
    poll_delay = 0.1


WorkerSettings = infraboot.arq.worker_settings(Settings, components=["gate"])
