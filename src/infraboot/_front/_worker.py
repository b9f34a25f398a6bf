"""What every worker adapter does around a framework's own startup and shutdown hooks.

A worker framework (arq, taskiq, FastStream, Celery) owns the event loop and the signals; infraboot
plugs into its hooks. :class:`WorkerLifecycle` is that plug, the same for each framework:

- ``await start(broker=...)``: registers the framework's own broker connection as a component
  (so readiness sees it), begins the state file's heartbeat (``INFRABOOT_STATE_FILE``), starts the
  components within the system's ``startup_timeout``; a failure prints one ``infraboot: ...`` line
  per problem and raises ``SystemExit(2)``, as ``infraboot.asyncio.run`` does;
- ``await add(broker)``: the same for a broker connected after startup (FastStream);
- ``drain_on_sigterm()`` / ``draining()``: readiness off at SIGTERM or SIGINT (in-flight jobs finish, no new
  ones), and the state file rewritten at once, so ``infraboot probe ready`` fails within a beat of the loop;
- ``await stop()``: shutdown (always, whatever happened before) and the final state written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from types import FrameType
from typing import Any, NoReturn

from infraboot._base._log import event
from infraboot._engine._component import Component, Context, component
from infraboot._engine._statefile import StateFile
from infraboot._engine._system import SystemInitializer
from infraboot.exceptions import ConfigError, StartupError

from . import _default
from ._failures import failure_lines

__all__ = ["EXIT_FAILED", "WorkerLifecycle", "broker_component"]

EXIT_FAILED = 2


def broker_component(
    name: str, resource: Any, ping: Callable[[Any], Awaitable[object]], *, check_timeout: float = 2.0
) -> Component[Any]:
    """A component for a connection the framework made and closes itself: infraboot only checks it.

    Its start pings too (with the component's retries and backoff), so a worker whose broker is
    still down waits for it, within the startup budget, instead of failing at its first poll.
    """

    async def check(res: Any) -> None:
        await ping(res)

    @component(name, check=check, check_timeout=check_timeout, kind="broker")
    async def broker(ctx: Context) -> AsyncIterator[Any]:
        await ping(resource)
        yield resource

    return broker


class WorkerLifecycle:
    """infraboot's startup, probes and shutdown inside a worker framework's hooks (see the module doc)."""

    def __init__(self, components: Iterable[str] | None = None, *, system: SystemInitializer | None = None) -> None:
        self.names = list(components) if components is not None else None
        self._system = system
        self.state: StateFile | None = None
        self.started = False
        self.stopped = False

    @property
    def system(self) -> SystemInitializer:
        return self._system if self._system is not None else _default.default_system()

    async def start(self, broker: Component[Any] | None = None) -> SystemInitializer:
        """Register *broker*, start the heartbeat and the components; exit 2 with one line per problem."""
        system = self.system
        names = self.names
        try:
            self.state = StateFile.from_env(system)
            if self.state is not None:
                self.state.start()
            if broker is not None:
                system.register(broker, replace=True)
                if names is not None and broker.name not in names:
                    names = [*names, broker.name]
            await system.ensure_initialized(names)
        except (StartupError, ConfigError, ImportError) as exc:
            await self._fail(exc)
        self.started = True
        if self.state is not None:  # ready now, not at the next beat
            self.state.write_soon()
        event(logging.INFO, "worker_started", components=",".join(system.components))
        return system

    async def add(self, broker: Component[Any]) -> None:
        """Register and start *broker* once the framework has connected it (after :meth:`start`)."""
        system = self.system
        try:
            system.register(broker, replace=True)
            await system.ensure_initialized([broker.name])
        except (StartupError, ConfigError) as exc:
            await self._fail(exc)
        if self.state is not None:
            self.state.write_soon()

    async def _fail(self, exc: BaseException) -> NoReturn:
        lines = failure_lines(exc)
        if lines is None:
            raise exc
        for line in lines:
            print(line, file=sys.stderr)
        await self.stop()  # what did start is closed, and the state file says stopped
        _quiet_exit_at_loop_close()
        raise SystemExit(EXIT_FAILED) from None

    def drain_on_sigterm(self) -> None:
        """Chain a SIGTERM and a SIGINT handler before the framework's own: readiness off at once, then the
        framework's handler runs as before (a Python-level one is called; a loop's ``add_signal_handler``
        one still runs through the loop's wakeup fd). Call it from the running loop, after the framework
        set its own. SIGINT too: taskiq's process manager takes the SIGTERM and sends its worker
        processes SIGINT."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)
            with contextlib.suppress(ValueError):  # not the main thread: the framework's signals stay as they are
                signal.signal(signum, self._chained(loop, previous))

    def _chained(self, loop: asyncio.AbstractEventLoop, previous: Any) -> Callable[[int, FrameType | None], None]:
        def handler(signum: int, frame: FrameType | None) -> None:
            loop.call_soon_threadsafe(self.draining)
            if callable(previous):
                previous(signum, frame)

        return handler

    def draining(self) -> None:
        """A stop signal arrived: readiness fails from now on, and the state file says so at once; the jobs
        in flight go on."""
        self.system.drainer.begin()
        if self.state is not None:
            self.state.write_soon()

    async def stop(self) -> None:
        """Shut the system down and write the final state; runs whatever happened before."""
        self.stopped = True
        try:
            await self.system.shutdown()
        finally:
            if self.state is not None:
                await self.state.stop()
                self.state = None


def _quiet_exit_at_loop_close() -> None:
    """After the one-line failure, keep the loop's own report of our ``SystemExit`` quiet.

    A framework that runs its startup hooks in a task group (FastStream, through anyio) wraps the
    ``SystemExit`` in a ``BaseExceptionGroup``; ``asyncio.run`` then reports that task at close
    ("unhandled exception during asyncio.run() shutdown", ~50 lines) before the exit. Only a report
    whose exception is nothing but ``SystemExit`` is dropped; any other goes to the previous handler.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if _only_exits(context.get("exception")):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def _only_exits(exc: BaseException | None) -> bool:
    if isinstance(exc, SystemExit):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_exits(e) for e in exc.exceptions)
    return False
