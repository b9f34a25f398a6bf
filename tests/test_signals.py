"""A stop signal during a foreground startup stops it at once, rolls back, and still reaches the handler in place."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from types import FrameType

import pytest

import infraboot
from infraboot import StartupError
from infraboot._engine._signals import StoppedBySignal, start_unless_stopped, stop_signals

from .conftest import Journal, sim

Seen = list[tuple[int, bool]]


@pytest.fixture
def server_handler() -> Iterator[Seen]:
    """A SIGTERM handler of a pretend server, recording each signal; the real one is put back afterwards."""
    seen: Seen = []

    def handler(sig: int, frame: FrameType | None) -> None:
        seen.append((sig, frame is not None))

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGTERM, previous)


def system_with_a_start_that_never_ends(journal: Journal) -> infraboot.SystemInitializer:
    return infraboot.SystemInitializer(
        [sim(journal, "marker"), sim(journal, "stuck", gate=asyncio.Event(), timeout=600, retries=0)]
    )


async def test_the_handler_in_place_runs_first_and_on_stop_runs_in_the_loop(server_handler: Seen) -> None:
    """Inside the block a SIGTERM reaches the server's handler (same arguments) and then on_stop, in the loop."""
    stopped = asyncio.Event()
    got: list[signal.Signals] = []

    def on_stop(sig: signal.Signals) -> None:
        got.append(sig)
        stopped.set()

    with stop_signals(on_stop):
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stopped.wait(), 5)

    assert [(signal.SIGTERM, True)] == server_handler
    assert [signal.SIGTERM] == got


async def test_the_handler_in_place_is_put_back_on_exit(server_handler: Seen) -> None:
    """After the block the server's own handler is installed again, unwrapped."""
    before = signal.getsignal(signal.SIGTERM)
    with stop_signals(lambda sig: None):
        during = signal.getsignal(signal.SIGTERM)

    assert before is signal.getsignal(signal.SIGTERM)
    assert before is not during


async def test_no_watcher_where_nobody_handles_the_signal() -> None:
    """With SIGTERM at SIG_DFL (no server) nothing is installed: the signal keeps its default action."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with stop_signals(lambda sig: None):
            during = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)

    assert signal.SIG_DFL == during


def test_off_the_main_thread_nothing_is_installed(server_handler: Seen) -> None:
    """A loop in another thread cannot install signal handlers: the block runs without a watcher."""
    seen: list[object] = []

    async def inside() -> None:
        with stop_signals(lambda sig: None):
            seen.append(signal.getsignal(signal.SIGTERM))

    worker = threading.Thread(target=asyncio.run, args=(inside(),))
    worker.start()
    worker.join(10)

    assert [signal.getsignal(signal.SIGTERM)] == seen


async def test_sigterm_stops_a_startup_that_would_never_end_and_rolls_back(
    journal: Journal, server_handler: Seen
) -> None:
    """SIGTERM during a startup stuck on one component: StartupError within a second, the started one stopped."""
    system = system_with_a_start_that_never_ends(journal)
    startup = asyncio.ensure_future(start_unless_stopped(system, None))
    while "marker" not in journal.names("ready"):
        await asyncio.sleep(0.01)
    t0 = time.monotonic()
    os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(StartupError) as caught:
        await asyncio.wait_for(startup, 10)
    elapsed = time.monotonic() - t0

    assert isinstance(caught.value, StoppedBySignal)
    assert "startup stopped by SIGTERM while stuck was starting; rolled back: marker" == str(caught.value)
    assert "stuck" == caught.value.component
    assert ["marker"] == journal.names("stop")
    assert [(signal.SIGTERM, True)] == server_handler
    assert elapsed < 1.0
    assert "startup failed" == system.phase


async def test_a_cancelled_caller_gets_a_cancellation_not_a_startup_error(
    journal: Journal, server_handler: Seen
) -> None:
    """Cancelling the lifespan's own task still rolls back, and the CancelledError goes on as it is."""
    system = system_with_a_start_that_never_ends(journal)
    startup = asyncio.ensure_future(start_unless_stopped(system, None))
    while "marker" not in journal.names("ready"):
        await asyncio.sleep(0.01)
    startup.cancel()
    with pytest.raises(asyncio.CancelledError):
        await startup

    assert ["marker"] == journal.names("stop")
    assert [] == server_handler


async def test_a_startup_that_finishes_is_untouched_by_a_later_signal(journal: Journal, server_handler: Seen) -> None:
    """Once the startup is done the watcher is gone: a later SIGTERM only reaches the server's handler."""
    system = infraboot.SystemInitializer([sim(journal, "marker")])
    report = await start_unless_stopped(system, None)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0)

    assert "ok" == report.status
    assert [(signal.SIGTERM, True)] == server_handler
    assert [] == journal.names("stop")
    await system.shutdown()


async def test_more_signals_during_the_rollback_do_not_cut_it_short(journal: Journal, server_handler: Seen) -> None:
    """Three SIGTERMs in a row: the startup is cancelled once, the slow teardown runs to its end."""
    released = asyncio.Event()

    @infraboot.component("slow_stop")
    async def slow_stop(ctx: infraboot.Context) -> AsyncIterator[str]:
        journal.add("ready", "slow_stop")
        yield "slow"
        await asyncio.sleep(0.8)  # a teardown longer than CANCEL_GRACE (0.5 s)
        journal.add("stop", "slow_stop")
        released.set()

    system = infraboot.SystemInitializer([slow_stop, sim(journal, "stuck", gate=asyncio.Event(), timeout=600)])
    startup = asyncio.ensure_future(start_unless_stopped(system, None))
    while "slow_stop" not in journal.names("ready"):
        await asyncio.sleep(0.01)
    for _ in range(3):
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.05)
    with pytest.raises(StartupError):
        await asyncio.wait_for(startup, 10)

    assert released.is_set()
    assert ["slow_stop"] == journal.names("stop")
    assert 3 == len(server_handler)
