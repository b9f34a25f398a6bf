"""A stand-in for arq (which pins redis<6): jobs are JSON on a Redis list, and a worker loop runs them.

As with arq, a job is ``async def job(ctx, *args)`` and the API enqueues it by name.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from redis.asyncio import Redis

logger = logging.getLogger(__name__)

QUEUE = "cache_port:queue"


async def enqueue_job(queue: Redis, function: str, *args: Any) -> str:
    """Queue a call of *function* with *args*; returns the job's id."""
    job_id = uuid.uuid4().hex
    await queue.lpush(QUEUE, json.dumps({"id": job_id, "function": function, "args": args}))
    return job_id


async def run_worker(
    queue: Redis, functions: Mapping[str, Callable[..., Awaitable[object]]], ctx: dict[str, Any], *, burst: bool = False
) -> int:
    """Run the jobs as they come, oldest first; *burst*: until the queue is empty. Returns how many ran."""
    done = 0
    while True:
        if burst:
            raw = await queue.rpop(QUEUE)
            if raw is None:
                return done
        else:
            popped = await queue.brpop([QUEUE], timeout=1)
            if popped is None:
                continue
            raw = popped[1]
        job = json.loads(raw)
        try:
            await functions[job["function"]](ctx, *job["args"])
        except Exception:
            logger.exception("job %s (%s) failed", job["id"], job["function"])
        done += 1
