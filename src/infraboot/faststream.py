"""FastStream apps: infraboot's startup, probes and shutdown inside ``faststream run``.

::

    # myapp/main.py
    import infraboot.faststream
    from faststream import FastStream
    from faststream.rabbit import RabbitBroker

    broker = RabbitBroker(os.environ["AMQP_URL"], graceful_timeout=20)
    app = FastStream(broker)
    infraboot.faststream.integrate(app, components=["database"])

    # faststream run myapp.main:app

What :func:`integrate` adds to the app:

- **Startup** (an ``on_startup`` hook): the components start within the system's
  ``startup_timeout``, before the broker connects; once it has (``after_startup``), each broker's
  connection is the component ``faststream`` (``faststream-1``, ... for more), pinged through the
  broker's own ``ping()``: readiness sees it. A required component that fails prints one
  ``infraboot: ...`` line and the process exits 2.
- **SIGTERM**: readiness fails at once (``on_shutdown``; the state file is rewritten then); FastStream
  stops consuming and waits for the handlers in flight (the broker's ``graceful_timeout``, 15 s by
  default).
- **Shutdown** (the last ``after_shutdown`` hook): the system shuts down once the broker has stopped.
- **Probes**: with ``INFRABOOT_STATE_FILE`` set, the state file is kept fresh for
  ``infraboot probe live|ready|startup`` (see ``docs/workers.md``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from faststream import FastStream

from ._engine._system import SystemInitializer
from ._front._worker import WorkerLifecycle, broker_component

__all__ = ["BROKER", "PING_TIMEOUT", "integrate"]

BROKER = "faststream"
"""The component name of the broker's connection (``faststream-2`` and on for an app's further brokers)."""

PING_TIMEOUT = 2.0


def integrate(
    app: FastStream,
    *,
    components: Iterable[str] | None = None,
    system: SystemInitializer | None = None,
) -> WorkerLifecycle:
    """Run infraboot's lifecycle in *app*; returns the lifecycle (its ``system``).

    *components*: what to start (every registered one when ``None``), plus the broker's connection.
    """
    lifecycle = WorkerLifecycle(components, system=system)

    async def start() -> None:
        await lifecycle.start()

    async def brokers_up() -> None:
        for i, broker in enumerate(app.brokers):
            name = BROKER if i == 0 else f"{BROKER}-{i + 1}"
            await lifecycle.add(broker_component(name, broker, _ping))
        app.after_shutdown(stop)  # last in line: after the application's own hooks

    async def draining() -> None:
        lifecycle.draining()

    async def stop() -> None:
        await lifecycle.stop()

    app.on_startup(start)
    app.after_startup(brokers_up)
    app.on_shutdown(draining)
    return lifecycle


async def _ping(broker: Any) -> None:
    if not await broker.ping(timeout=PING_TIMEOUT):
        msg = "the broker did not answer its ping"
        raise ConnectionError(msg)
