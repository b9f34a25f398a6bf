"""A FastStream app under infraboot, run by FastStream's own CLI: ``faststream run faststream_worker:app``.

AMQP_URL and FS_QUEUE say where the messages are; GATE=fail makes the required component fail.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from faststream import FastStream
from faststream.rabbit import RabbitBroker

import infraboot
import infraboot.faststream

broker = RabbitBroker(os.environ["AMQP_URL"], graceful_timeout=20)
app = FastStream(broker)


@broker.subscriber(os.environ["FS_QUEUE"])
async def slow(n: int) -> None:
    print(f"job {n} started", flush=True)
    await asyncio.sleep(float(os.environ.get("JOB_SECONDS", "2")))
    print(f"job {n} finished", flush=True)


@infraboot.component("gate", retries=0)
async def gate(ctx: infraboot.Context) -> AsyncIterator[str]:
    if os.environ.get("GATE") == "fail":
        raise ConnectionRefusedError("gate refused")
    print("gate started", flush=True)
    yield "gate"
    print("gate stopped", flush=True)


infraboot.register(gate)
infraboot.faststream.integrate(app, components=["gate"])
