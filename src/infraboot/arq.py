"""arq workers: infraboot's startup, probes and shutdown inside arq's own CLI and event loop.

::

    # myapp/worker.py
    import infraboot.arq

    class Settings:
        functions = [send_email]
        redis_settings = RedisSettings.from_dsn(os.environ["ARQ_REDIS_URL"])

    WorkerSettings = infraboot.arq.worker_settings(Settings, components=["database"])

    # arq myapp.worker.WorkerSettings

What the returned settings do (arq reads a dict as well as a class):

- **Startup**: arq's ``on_startup`` starts the components within the system's ``startup_timeout``,
  then calls yours. arq's own Redis pool (``ctx["redis"]``) is the component ``arq``: readiness
  pings it. A required component that fails prints one ``infraboot: ...`` line and the worker
  exits 2 (arq still runs ``on_shutdown``: what started is closed).
- **SIGTERM**: readiness fails at once; arq stops picking jobs and waits up to ``job_completion_wait`` seconds
  (default: twice the system's ``drain_delay``, 10 s) for the jobs in flight, then cancels the rest.
  ``handle_signals`` is forced on: without it, SIGTERM kills the worker with no shutdown at all.
- **Shutdown**: arq's ``on_shutdown`` calls yours, then shuts the system down -- on every exit:
  when arq skips ``on_shutdown`` (its Redis went down: arq's poll loop and its ``close()`` both
  raise), the shutdown runs at interpreter exit instead.
- **Probes**: with ``INFRABOOT_STATE_FILE`` set, the state file is kept fresh for
  ``infraboot probe live|ready|startup`` (see ``docs/workers.md``).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import arq  # noqa: F401 - the adapter needs arq installed: fail here, with arq's own ImportError

from ._base._log import event
from ._engine._system import SystemInitializer
from ._front._worker import WorkerLifecycle, broker_component

__all__ = ["BROKER", "worker_settings"]

BROKER = "arq"
"""The component name of arq's own Redis connection (``ctx["redis"]``), as health and readiness show it."""

Hook = Callable[[dict[str, Any]], Awaitable[object]]


def worker_settings(
    settings: Any,
    *,
    components: Iterable[str] | None = None,
    system: SystemInitializer | None = None,
    job_completion_wait: float | None = None,
) -> dict[str, Any]:
    """arq worker settings (a dict) wrapping *settings* (a class or a dict) with infraboot's lifecycle.

    *components*: what to start (every registered one when ``None``), plus ``arq`` itself.
    *system*: the default system when ``None``. ``ctx["infraboot"]`` is the system in every job.
    """
    if isinstance(settings, dict):
        base = dict(settings)
    else:
        base = {k: getattr(settings, k) for k in dir(settings) if not k.startswith("_")}
    lifecycle = WorkerLifecycle(components, system=system)
    user_startup: Hook | None = base.get("on_startup")
    user_shutdown: Hook | None = base.get("on_shutdown")

    async def on_startup(ctx: dict[str, Any]) -> None:
        atexit.register(_last_resort, lifecycle, asyncio.get_running_loop())
        lifecycle.drain_on_sigterm()  # arq's own handler still runs: it stops picking jobs and waits
        pool = ctx["redis"]
        started = await lifecycle.start(broker_component(BROKER, pool, _ping))
        ctx["infraboot"] = started
        if user_startup is not None:
            await user_startup(ctx)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        lifecycle.draining()
        try:
            if user_shutdown is not None and lifecycle.started:
                await user_shutdown(ctx)
        finally:
            await lifecycle.stop()

    wait = job_completion_wait
    if wait is None:
        wait = base.get("job_completion_wait") or 2 * lifecycle.system.drain_delay
    base.update(
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        handle_signals=True,
        job_completion_wait=max(1, math.ceil(wait)),
    )
    return base


async def _ping(pool: Any) -> None:
    await pool.ping()


def _last_resort(lifecycle: WorkerLifecycle, loop: asyncio.AbstractEventLoop) -> None:
    """Shut down at interpreter exit when arq never called ``on_shutdown``.

    arq's ``close()`` deletes its health key before it calls ``on_shutdown``: when its Redis is
    down (the outage that also ended its poll loop) that raises, and ``on_shutdown`` never runs.
    arq leaves its loop open, so the shutdown runs on it here.
    """
    if lifecycle.stopped or loop.is_closed() or loop.is_running():
        return
    event(logging.WARNING, "arq_on_shutdown_skipped", hint="arq's close() failed (its Redis down?): shutting down now")
    loop.run_until_complete(lifecycle.stop())
