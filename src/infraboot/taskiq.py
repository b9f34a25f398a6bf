"""taskiq workers: infraboot's startup, probes and shutdown inside ``taskiq worker``.

::

    # myapp/tasks.py
    import infraboot.taskiq
    from taskiq_redis import ListQueueBroker

    broker = ListQueueBroker(os.environ["TASKIQ_REDIS_URL"])
    infraboot.taskiq.integrate(broker, components=["database"])

    # taskiq worker myapp.tasks:broker --workers 1 --shutdown-timeout 35

What :func:`integrate` adds to the broker (in the worker process only; a client that only
sends tasks is left alone):

- **Startup**: the first ``WORKER_STARTUP`` handler starts the components within the system's
  ``startup_timeout``. The broker's own connection is the component ``taskiq`` (a taskiq-redis
  broker is pinged through its pool; pass *ping* for another broker): readiness sees it. A
  required component that fails prints one ``infraboot: ...`` line and the worker process exits
  2; taskiq's process manager starts it again, up to ``--max-fails`` times, then exits non-zero.
- **SIGTERM**: readiness fails at once (the worker process gets SIGINT from taskiq's process manager,
  within its 1 s poll; the state file is rewritten then); taskiq stops fetching and waits for the tasks in flight
  (``--wait-tasks-timeout``, default: no limit), then shuts the broker down.
- **Shutdown**: the last ``WORKER_SHUTDOWN`` handler shuts the system down, after yours. taskiq
  bounds the whole broker shutdown by ``--shutdown-timeout`` (default 5 s): give it more than
  the system's ``shutdown_timeout`` (30 s) or lower that one.
- **Probes**: with ``INFRABOOT_STATE_FILE`` set, the state file is kept fresh for
  ``infraboot probe live|ready|startup``. Every worker process writes it: run ``--workers 1``
  per container when the probes must speak for one process (see ``docs/workers.md``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from taskiq import AsyncBroker, TaskiqEvents, TaskiqState

from ._engine._system import SystemInitializer
from ._front._worker import WorkerLifecycle, broker_component

__all__ = ["BROKER", "integrate"]

BROKER = "taskiq"
"""The component name of the broker's own connection, as health and readiness show it."""


def integrate(
    broker: AsyncBroker,
    *,
    components: Iterable[str] | None = None,
    system: SystemInitializer | None = None,
    ping: Callable[[AsyncBroker], Awaitable[object]] | None = None,
) -> WorkerLifecycle:
    """Run infraboot's lifecycle in *broker*'s worker processes; returns the lifecycle (its ``system``).

    *components*: what to start (every registered one when ``None``), plus ``taskiq``.
    *ping*: ``async def ping(broker)`` that raises when the broker is unreachable; by default a
    taskiq-redis broker's pool is pinged, and another broker is not checked.
    """
    lifecycle = WorkerLifecycle(components, system=system)
    check = ping if ping is not None else _default_ping(broker)

    async def on_startup(state: TaskiqState) -> None:
        # Last in line at shutdown: the application's own handlers still see their components.
        broker.event_handlers[TaskiqEvents.WORKER_SHUTDOWN].append(on_shutdown)
        lifecycle.drain_on_sigterm()
        component = broker_component(BROKER, broker, check) if check is not None else None
        state.infraboot = await lifecycle.start(component)

    async def on_shutdown(state: TaskiqState) -> None:
        await lifecycle.stop()

    # First in line at startup: the application's handlers find their components started.
    broker.event_handlers[TaskiqEvents.WORKER_STARTUP].insert(0, on_startup)
    return lifecycle


def _default_ping(broker: AsyncBroker) -> Callable[[AsyncBroker], Awaitable[object]] | None:
    if getattr(broker, "connection_pool", None) is None:  # not a taskiq-redis broker
        return None

    async def ping(b: AsyncBroker) -> None:
        from redis.asyncio import Redis

        async with Redis(connection_pool=b.connection_pool) as client:  # type: ignore[attr-defined]
            await client.ping()

    return ping
