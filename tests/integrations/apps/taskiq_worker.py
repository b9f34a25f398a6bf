"""A taskiq worker under infraboot, run by taskiq's own CLI: ``taskiq worker taskiq_worker:broker``.

TASKIQ_REDIS_URL and TASKIQ_QUEUE say where the tasks are; GATE=fail makes the required component fail.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

import infraboot
import infraboot.taskiq

broker = ListQueueBroker(os.environ["TASKIQ_REDIS_URL"], queue_name=os.environ["TASKIQ_QUEUE"]).with_result_backend(
    RedisAsyncResultBackend(os.environ["TASKIQ_REDIS_URL"], result_ex_time=60)
)


@broker.task
async def slow(n: int) -> int:
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
infraboot.taskiq.integrate(broker, components=["gate"])
