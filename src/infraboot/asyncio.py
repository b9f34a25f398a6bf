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

from . import _default
from ._log import event
from ._system import SystemInitializer
from .exceptions import ConfigError, StartupError

__all__ = ["EXIT_FAILED", "run", "running"]

T = TypeVar("T")

EXIT_FAILED = 2
"""Exit status of :func:`run` when a required component failed to start or the configuration is invalid."""


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
) -> T | None:
    """Run ``main`` in a new event loop between startup and a graceful shutdown.

    - *main* may take the system as its one argument, or nothing.
    - SIGINT and SIGTERM cancel *main*; shutdown then runs in reverse dependency order
      within ``shutdown_timeout`` and ``run`` returns ``None``. A second signal is ignored
      while shutdown runs, so an impatient Ctrl-C cannot leave connections open.
    - A required component that fails (or invalid configuration) prints one clear line
      to stderr and exits with status 2 -- the same as ``infraboot check``.

    Returns what *main* returned.
    """
    takes_system = _takes_an_argument(main)

    async def runner() -> T | None:
        target = system if system is not None else _default.default_system()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        received: list[str] = []

        def on_signal(sig: signal.Signals) -> None:
            if received or task is None:
                return
            received.append(sig.name)
            event(logging.INFO, "signal_received", signal=sig.name)
            task.cancel()

        installed = []
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows, not off the main thread
                loop.add_signal_handler(sig, on_signal, sig)
                installed.append(sig)
        try:
            async with running(components, system=target):
                coro = main(target) if takes_system else main()  # type: ignore[call-arg]
                return await coro
        except asyncio.CancelledError:
            if not received:
                raise
            return None
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(runner())
    except (StartupError, ConfigError) as exc:
        print(f"infraboot: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None


def _takes_an_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 1
