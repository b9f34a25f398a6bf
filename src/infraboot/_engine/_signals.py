"""A stop signal during a foreground startup: stop the attempts, roll back, fail the startup at once.

uvicorn, gunicorn's workers and most ASGI servers run the lifespan's startup to its end
before they look at the SIGTERM they caught: a startup retrying a refused Redis would
keep the process up for every retry. While the startup runs, :func:`stop_signals` puts
a watcher in front of the handler in place (the server's); it never replaces it: the
server's own handler still runs for every signal, so the server still knows it must
exit. No watcher where Python does not handle the signal (``SIG_DFL`` already ends the
process, ``SIG_IGN`` means it is to be ignored) or off the main thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from types import FrameType
from typing import Any

from infraboot._base._log import event
from infraboot.exceptions import StoppedBySignal

from ._report import StartupReport
from ._state import ComponentState
from ._system import SystemInitializer

__all__ = ["STOP_SIGNALS", "StoppedBySignal", "start_unless_stopped", "stop_signals"]

#: The signals a server stops on: Ctrl-C and ``kill`` / Kubernetes / systemd.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

Handler = Callable[[int, FrameType | None], Any]


@contextlib.contextmanager
def stop_signals(
    on_stop: Callable[[signal.Signals], None], signals: Iterable[signal.Signals] = STOP_SIGNALS
) -> Iterator[None]:
    """Inside the block, a stop signal also calls *on_stop(sig)* in the running loop, after the handler in place.

    The handler in place (the server's) is called first, with the same arguments, and is put
    back on exit. A handler that raises (Python's default ``KeyboardInterrupt`` for SIGINT)
    still raises; *on_stop* has been scheduled before it is called.
    """
    loop = asyncio.get_running_loop()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    watching = True
    previous: dict[int, Handler] = {}

    def watcher(sig: int, frame: FrameType | None) -> None:
        # A Python signal handler runs between two bytecodes of the main thread, maybe inside the
        # loop's own code: hand the work to the loop rather than touch a task from here.
        if watching:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to stop
                loop.call_soon_threadsafe(on_stop, signal.Signals(sig))
        previous[sig](sig, frame)

    for sig in signals:
        handler = signal.getsignal(sig)
        if not callable(handler):  # SIG_DFL, SIG_IGN, or set outside Python: not ours to wrap
            continue
        previous[sig] = handler
        signal.signal(sig, watcher)
    try:
        yield
    finally:
        watching = False
        for number, handler in previous.items():
            if signal.getsignal(number) is watcher:  # else someone else's handler came since: leave it (ours is inert)
                signal.signal(number, handler)


async def start_unless_stopped(system: SystemInitializer, names: list[str] | None) -> StartupReport:
    """``system.ensure_initialized(names)``, stopped within a loop turn by SIGTERM or SIGINT.

    A stop signal cancels the startup: the attempts stop, what had started is stopped again
    (rolled back, within ``shutdown_timeout``), and :class:`StartupError` says which signal
    stopped it (:class:`StoppedBySignal`), so the server reports a failed startup and exits. A cancellation of the
    caller itself goes on as a cancellation.
    """
    startup = asyncio.ensure_future(system.ensure_initialized(names))
    stopped_by: list[signal.Signals] = []

    def stop(sig: signal.Signals) -> None:
        # Once only: a second cancel would cut the rollback's wait short (the server's handler sees every signal).
        if not stopped_by and not startup.done():
            event(logging.WARNING, "startup_stopping", signal=sig.name)
            stopped_by.append(sig)
            startup.cancel()

    with stop_signals(stop):
        try:
            return await startup
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if not stopped_by or (me is not None and me.cancelling()):
                raise
    raise _stopped_error(system, stopped_by[0]) from None


def _stopped_error(system: SystemInitializer, sig: signal.Signals) -> StoppedBySignal:
    report = system.report
    cancelled = [n for n, r in report.components.items() if r.error_code == "cancelled"]
    rolled = [n for n, r in report.components.items() if r.state is ComponentState.STOPPED]
    name = next(iter(cancelled or report.components), "")
    attempts = report.components[name].attempts if name else 0
    msg = f"startup stopped by {sig.name}"
    if cancelled:
        msg += f" while {', '.join(cancelled)} {'was' if len(cancelled) == 1 else 'were'} starting"
    msg += f"; rolled back: {', '.join(rolled)}" if rolled else "; nothing had started"
    event(logging.WARNING, "startup_stopped", signal=sig.name, rolled_back=",".join(rolled) or "-")
    return StoppedBySignal(msg, component=name, attempts=attempts, report=report)
