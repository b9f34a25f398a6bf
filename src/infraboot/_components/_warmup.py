"""Warm pools: connections opened as a group that leaves nothing open when one of them fails.

``asyncio.gather`` of N connects raises at the first failure and leaves the others to
finish unseen: opened connections stay checked out past shutdown, failures end as
"exception was never retrieved", and every retry adds more to a server that is full.
:func:`open_group` closes every connection it opened when any fails or it is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from infraboot._base._log import event
from infraboot._engine._deadlines import retrieve, shielded, wait_until

__all__ = ["open_group"]

T = TypeVar("T")


async def open_group(
    open_one: Callable[[], Awaitable[T]],
    close_one: Callable[[T], Awaitable[object]],
    count: int,
    *,
    budget: float,
    component: str = "",
) -> list[T]:
    """Open *count* connections concurrently with *open_one*; all of them, or none left open.

    When one fails, the others are cancelled, the opened ones are closed with *close_one*
    (each within *budget* seconds) and the first failure is raised. When the caller is
    cancelled, the same cleanup runs shielded (bounded) before the cancellation goes on.
    """
    tasks = [asyncio.ensure_future(open_one()) for _ in range(count)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:
        await shielded(_close_group(tasks, close_one, budget, component))
        raise
    failure = next((t.exception() for t in tasks if t.done() and not t.cancelled() and t.exception()), None)
    if failure is None:
        return [t.result() for t in tasks]
    await shielded(_close_group(tasks, close_one, budget, component))
    raise failure


async def _close_group(
    tasks: Sequence[asyncio.Future[T]], close_one: Callable[[T], Awaitable[object]], budget: float, component: str
) -> None:
    """Cancel what is still connecting, close what connected, and look at every failure (none unretrieved).

    A connect is cancelled once, then given *budget* to finish: a driver answers the cancellation by
    closing its half-open socket, and a second cancellation would interrupt that close and leak it.
    """
    connecting = [t for t in tasks if not t.done()]
    for task in connecting:
        task.cancel()
    for task in await wait_until(connecting, time.monotonic() + budget):
        task.add_done_callback(retrieve)  # ignored the cancellation: its outcome is seen whenever it comes
    for task in tasks:
        if not task.done() or task.cancelled() or task.exception() is not None:
            continue
        try:
            await asyncio.wait_for(close_one(task.result()), budget)
        except Exception as exc:  # one connection's trouble must not keep the others open
            event(logging.DEBUG, "warmup_close_failed", component, error=type(exc).__name__)
