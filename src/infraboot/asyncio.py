"""Plain asyncio: workers and scripts with no web framework.

::

    import infraboot.asyncio

    async def main(system):
        redis = system.get("redis")
        while True:
            job = await redis.blpop("jobs")
            ...

    if __name__ == "__main__":
        infraboot.asyncio.run(main, components=["redis", "database"])

or, inside code that already runs a loop::

    async with infraboot.asyncio.running(["redis", "database"]) as system:
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable
from typing import Any, TypeVar

from ._base._log import event
from ._engine._healthport import HealthPort
from ._engine._statefile import StateFile
from ._engine._system import SystemInitializer
from ._front import _default
from ._front._failures import failure_lines
from .exceptions import ConfigError, StartupError

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "run", "running"]

T = TypeVar("T")

#: Seconds between two cancellations of a main that swallowed the last one (see ``run``).
_RECANCEL_EVERY = 0.5

EXIT_FAILED = 2
"""Exit status of :func:`run` when a required component failed to start, the configuration
is invalid or an optional dependency is not installed (the same as ``infraboot check``)."""

EXIT_INTERRUPTED = 130
"""Exit status of :func:`run` on a ``KeyboardInterrupt`` that its signal handling did not catch."""


@contextlib.asynccontextmanager
async def running(
    components: Iterable[str] | None = None, *, system: SystemInitializer | None = None
) -> AsyncIterator[SystemInitializer]:
    """Start *components* (all registered when ``None``), yield the system, shut it down on exit.

    Shutdown runs on every exit -- normal, exception or cancellation -- dependents first,
    within the system's ``shutdown_timeout``.
    """
    target = system if system is not None else _default.default_system()
    await target.ensure_initialized(components)
    try:
        yield target
    finally:
        await target.shutdown()


def run(
    main: Callable[[SystemInitializer], Awaitable[T]] | Callable[[], Awaitable[T]],
    *,
    components: Iterable[str] | None = None,
    system: SystemInitializer | None = None,
    signals: Collection[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
    health_port: int | None = None,
) -> T | None:
    """Run ``main`` in a new event loop between startup and a graceful shutdown.

    - *main* may take the system as its one argument, or nothing.
    - SIGTERM first drains: readiness fails at once while *main* keeps running for the
      system's ``drain_delay`` (``INFRABOOT_DRAIN_DELAY``, default 5 s; work wrapped in
      ``system.drainer.track()`` is waited for, up to twice that), then *main* is cancelled (and
      cancelled again every half second while it still runs: a driver may swallow a cancellation).
      SIGINT (Ctrl-C) cancels *main* at once, and so does a second signal during the drain.
      Shutdown then runs in reverse dependency order within ``shutdown_timeout`` and ``run``
      returns ``None``. Signals are ignored while shutdown runs, so an impatient Ctrl-C
      cannot leave connections open.
    - A required component that fails, invalid configuration (bad ``INFRABOOT_*`` values
      included) or a missing extra prints one line per problem to stderr (``infraboot: ...``,
      no traceback; a missing extra names its ``pip install`` command) and exits with
      status 2 (:data:`EXIT_FAILED`) -- the same as ``infraboot check``.
    - With ``INFRABOOT_STATE_FILE`` set, the state file is kept fresh from before startup to after
      shutdown, for the exec probe ``infraboot probe live|ready|startup`` (``docs/workers.md``).
    - *health_port*: serve ``GET /livez``, ``/readyz`` and ``/startupz`` on that port (all
      interfaces) from before startup to after shutdown, for HTTP probes (``docs/workers.md``).
    - A ``KeyboardInterrupt`` the signal handling did not catch (``signals=()``, or one
      raised before the loop ran) exits with status 130 (:data:`EXIT_INTERRUPTED`).

    Returns what *main* returned.
    """
    takes_system = _takes_an_argument(main)
    started = False  # an ImportError after startup is the application's own, not a missing extra

    async def runner() -> T | None:
        nonlocal started
        target = system if system is not None else _default.default_system()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        received: list[str] = []
        draining: list[asyncio.Task[None]] = []  # the drain, then the task that cancels main until it ends
        in_main = False  # main is running: the startup has finished and the shutdown not begun

        async def cancel_until_main_ends() -> None:
            # One cancellation is not always enough: a driver may swallow it (redis-py's blocking
            # commands do, about once in a hundred), and main would go on serving after SIGTERM.
            # Asked again while main runs; never during the startup or the shutdown (this task's too),
            # whose own cancellation handling must run once, undisturbed.
            if task is None:
                return
            task.cancel()
            while True:
                await asyncio.sleep(_RECANCEL_EVERY)
                if task.done() or not in_main:
                    return
                task.cancel()

        def stop_main() -> None:
            draining.append(loop.create_task(cancel_until_main_ends(), name="infraboot-stop-main"))

        async def drain_then_stop() -> None:
            report = await target.drain()
            event(logging.INFO, "drain_complete", waited=report.waited, in_flight=report.in_flight)
            stop_main()

        def on_signal(sig: signal.Signals) -> None:
            if task is None:
                return
            if received:  # a second signal cuts a drain short; during shutdown it is ignored
                if draining and not draining[0].done():
                    draining[0].cancel()
                    event(logging.INFO, "drain_cut_short", signal=sig.name)
                    stop_main()
                return
            received.append(sig.name)
            event(logging.INFO, "signal_received", signal=sig.name)
            if sig == signal.SIGTERM and started and target.drain_delay > 0:
                draining.append(loop.create_task(drain_then_stop(), name="infraboot-drain"))
            else:
                stop_main()

        installed = []
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows, not off the main thread
                loop.add_signal_handler(sig, on_signal, sig)
                installed.append(sig)
        state = StateFile.from_env(target)  # INFRABOOT_STATE_FILE: the exec probes' heartbeat
        port = HealthPort(target, health_port) if health_port is not None else None
        if port is not None:
            await port.__aenter__()
        if state is not None:
            state.start()
        try:
            async with running(components, system=target):
                started = True
                coro = main(target) if takes_system else main()  # type: ignore[call-arg]
                in_main = True
                try:
                    return await coro
                finally:
                    in_main = False
        except asyncio.CancelledError:
            if not received:
                raise
            return None
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            for drain in draining:
                drain.cancel()
            if state is not None:
                await state.stop()
            if port is not None:
                await port.__aexit__()

    try:
        return asyncio.run(runner())
    except KeyboardInterrupt:
        raise SystemExit(EXIT_INTERRUPTED) from None
    except (StartupError, ConfigError, ImportError) as exc:
        lines = failure_lines(exc, during_startup=not started)
        if lines is None:
            raise
        for line in lines:
            print(line, file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None


def _takes_an_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 1
