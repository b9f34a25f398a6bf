"""A startup component that fills the cache once its Redis is ready, bounded by a deadline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from infraboot._base._checks import seconds_problem
from infraboot._base._log import event
from infraboot._engine._component import Context, FunctionComponent, component
from infraboot.exceptions import ConfigError

__all__ = ["WarmupReport", "warmup"]


class WarmupReport:
    """What a warmup did: ``warmed``, ``failed`` and ``timed_out`` step counts, and its ``duration``."""

    __slots__ = ("duration", "failed", "timed_out", "warmed")

    def __init__(self, warmed: int, failed: int, timed_out: int, duration: float) -> None:
        self.warmed = warmed
        self.failed = failed
        self.timed_out = timed_out
        self.duration = duration

    def to_dict(self) -> dict[str, Any]:
        return {"warmed": self.warmed, "failed": self.failed, "timed_out": self.timed_out, "duration": self.duration}

    def __repr__(self) -> str:
        return f"<WarmupReport warmed={self.warmed} failed={self.failed} timed_out={self.timed_out}>"


def warmup(
    *steps: Callable[[], Awaitable[Any]],
    name: str = "cache-warmup",
    redis: str = "redis",
    deadline: float = 10.0,
    required: bool = False,
    concurrency: int = 16,
) -> FunctionComponent[WarmupReport]:
    """A component that runs *steps* (``lambda: get_user(1)``, ...) once Redis is ready.

    The steps run concurrently (at most *concurrency* at once) and must finish within *deadline*
    seconds; a step that fails or is still running then is counted, logged and left behind.
    An optional warmup (the default) never fails startup; with ``required=True`` a failed or
    late step fails it. Register it like any component::

        infraboot.register(warmup(lambda: get_user(1), lambda: top_products()))
        await infraboot.ensure_initialized(["redis", "cache-warmup"])
    """
    problems = []
    if not all(callable(s) for s in steps):
        problems.append("steps: each must be a callable returning an awaitable, e.g. lambda: get_user(1)")
    problem = seconds_problem("deadline", deadline, example="deadline=10")
    if problem is not None:
        problems.append(problem)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        problems.append(f"concurrency={concurrency!r}: must be a whole number >= 1")
    if problems:
        raise ConfigError("warmup(): " + "; ".join(problems), problems=tuple(problems))
    todo = list(steps)

    @component(name, requires=[redis], required=required, timeout=deadline + 1.0, retries=1, kind="cache")
    async def run(ctx: Context) -> AsyncIterator[WarmupReport]:
        report = await _run(todo, deadline, concurrency)
        level = logging.INFO if not (report.failed or report.timed_out) else logging.WARNING
        event(level, "cache_warmup_done", name, **report.to_dict())
        if required and (report.failed or report.timed_out):
            msg = (
                f"cache warmup {name!r}: {report.failed} steps failed, {report.timed_out} did not finish "
                f"in {deadline}s; fix the failing steps, raise deadline=, or make the warmup optional"
            )
            raise RuntimeError(msg)
        yield report

    return run


async def _run(steps: Iterable[Callable[[], Awaitable[Any]]], deadline: float, concurrency: int) -> WarmupReport:
    t0 = time.monotonic()
    gate = asyncio.Semaphore(concurrency)
    outcome = {"ok": 0, "failed": 0}

    async def one(step: Callable[[], Awaitable[Any]]) -> None:
        async with gate:
            try:
                await step()
            except Exception as exc:
                outcome["failed"] += 1
                event(logging.WARNING, "cache_warmup_step_failed", None, error=type(exc).__name__)
            else:
                outcome["ok"] += 1

    tasks = [asyncio.ensure_future(one(s)) for s in steps]
    late = 0
    if tasks:
        _done, pending = await asyncio.wait(tasks, timeout=deadline)
        for task in pending:
            task.cancel()
        late = len(pending)
        if pending:
            await asyncio.wait(pending, timeout=1.0)
    return WarmupReport(outcome["ok"], outcome["failed"], late, time.monotonic() - t0)
