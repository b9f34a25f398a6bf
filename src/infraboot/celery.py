"""Celery workers: async components in the worker process, started and stopped by Celery's own signals.

::

    # myapp/tasks.py
    import infraboot.celery
    from celery import Celery

    app = Celery("myapp", broker=os.environ["CELERY_BROKER_URL"])
    worker = infraboot.celery.integrate(app, components=["database"])

    @app.task
    def count_users() -> int:
        async def count(system):
            async with system.get_session() as session:
                return await session.scalar(text("select count(*) from users"))
        return worker.call(count)

    # celery -A myapp.tasks worker --pool solo    (or --pool threads)

Celery tasks are plain functions; infraboot's components live in an event loop of their own, on a
thread of the worker process. :meth:`CeleryWorker.call` runs a coroutine there and waits for it.

- **Startup** (``worker_init``): the loop thread starts, then the components, within the system's
  ``startup_timeout``; the broker's connection is the component ``celery`` (checked by connecting
  to it). A required component that fails prints one ``infraboot: ...`` line and the worker exits 2.
- **SIGTERM** (Celery's warm shutdown, ``worker_shutting_down``): readiness fails at once; Celery
  stops consuming and waits for the tasks in flight.
- **Shutdown** (``worker_shutdown``): after the tasks, the system shuts down and the loop stops.
- **Probes**: with ``INFRABOOT_STATE_FILE`` set, the state file is kept fresh for
  ``infraboot probe live|ready|startup`` -- no ``celery inspect ping`` (about 3 s of CPU a probe).

The prefork pool forks children after ``worker_init``: the components would live in the parent,
unreachable from the tasks. Use ``--pool solo`` or ``--pool threads`` (one process per container,
scaled with replicas), which is what the probes speak for anyway.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from celery import Celery, signals

from ._engine._system import SystemInitializer
from ._front._worker import WorkerLifecycle, broker_component

__all__ = ["BROKER", "CeleryWorker", "integrate"]

T = TypeVar("T")

BROKER = "celery"
"""The component name of the broker's connection, as health and readiness show it."""


class CeleryWorker:
    """infraboot in a Celery worker process: its loop thread, its system, :meth:`call` for the tasks."""

    def __init__(self, app: Celery, lifecycle: WorkerLifecycle) -> None:
        self.app = app
        self.lifecycle = lifecycle
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def system(self) -> SystemInitializer:
        return self.lifecycle.system

    def call(self, fn: Callable[[SystemInitializer], Awaitable[T]], *, timeout: float | None = None) -> T:
        """Run ``await fn(system)`` on infraboot's loop and return its result (from a task's thread)."""
        loop = self._loop
        if loop is None:
            msg = "infraboot is not running in this process: call() works inside a worker started by integrate()"
            raise RuntimeError(msg)
        future = asyncio.run_coroutine_threadsafe(_await(fn, self.system), loop)
        return future.result(timeout)

    def start(self) -> None:
        """Start the loop thread and the components (``worker_init``); exit 2 when a required one fails."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="infraboot-loop", daemon=True)
        self._thread.start()
        ready.wait()
        self._loop = loop
        broker = broker_component(BROKER, self.app, _ping)

        async def start() -> object:
            try:
                await self.lifecycle.start(broker)
            except SystemExit as exc:  # carried back to this thread: in the loop's, it would end run_forever()
                return exc.code
            return None

        code = asyncio.run_coroutine_threadsafe(start(), loop).result()
        if code is not None:
            self._stop_loop()
            raise SystemExit(code)

    def draining(self) -> None:
        """Readiness off (``worker_shutting_down``)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.lifecycle.draining)

    def stop(self) -> None:
        """Shut the system down and stop the loop (``worker_shutdown``)."""
        if self._loop is None or self.lifecycle.stopped:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.lifecycle.stop(), self._loop).result()
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)


def integrate(
    app: Celery, *, components: Iterable[str] | None = None, system: SystemInitializer | None = None
) -> CeleryWorker:
    """Run infraboot's lifecycle in *app*'s worker process (module doc); tasks use :meth:`CeleryWorker.call`.

    *components*: what to start (every registered one when ``None``), plus ``celery``.
    """
    worker = CeleryWorker(app, WorkerLifecycle(components, system=system))

    def on_init(sender: Any = None, **_: Any) -> None:
        worker.start()

    def on_shutting_down(sender: Any = None, **_: Any) -> None:
        worker.draining()

    def on_shutdown(sender: Any = None, **_: Any) -> None:
        worker.stop()

    signals.worker_init.connect(on_init, weak=False)
    signals.worker_shutting_down.connect(on_shutting_down, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)
    return worker


async def _await(fn: Callable[[SystemInitializer], Awaitable[T]], system: SystemInitializer) -> T:
    return await fn(system)


async def _ping(app: Celery) -> None:
    def connect() -> None:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)

    await asyncio.to_thread(connect)
