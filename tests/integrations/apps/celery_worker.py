"""A Celery worker under infraboot: ``celery -A celery_worker worker --pool solo``.

CELERY_BROKER_URL and CELERY_QUEUE say where the tasks are; GATE=fail makes the required component fail.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator

from celery import Celery

import infraboot
import infraboot.celery

app = Celery("celery_worker", broker=os.environ["CELERY_BROKER_URL"])
app.conf.task_default_queue = os.environ["CELERY_QUEUE"]
app.conf.broker_connection_retry_on_startup = True
app.conf.worker_hijack_root_logger = False


@infraboot.component("gate", retries=0)
async def gate(ctx: infraboot.Context) -> AsyncIterator[str]:
    if os.environ.get("GATE") == "fail":
        raise ConnectionRefusedError("gate refused")
    print("gate started", flush=True)
    yield "gate"
    print("gate stopped", flush=True)


infraboot.register(gate)
worker = infraboot.celery.integrate(app, components=["gate"])


async def _gate(system: infraboot.SystemInitializer) -> str:
    value: str = system.get("gate")
    return value


@app.task(name="slow")
def slow(n: int) -> None:
    print(f"job {n} started via {worker.call(_gate)}", flush=True)
    time.sleep(float(os.environ.get("JOB_SECONDS", "2")))
    print(f"job {n} finished", flush=True)
