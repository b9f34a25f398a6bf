"""The one backoff every retrying loop uses, and the testing switch that turns it off."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from types import SimpleNamespace

import pytest

import infraboot
from infraboot._engine import _backoff
from infraboot._engine._backoff import TESTING_FOREVER_WAIT, backoff, is_testing


@pytest.mark.parametrize(("failures", "ceiling"), [(1, 0.1), (2, 0.2), (3, 0.4), (5, 1.0), (10_000, 1.0)])
def test_the_wait_is_full_jitter_below_an_exponential_cap(failures: int, ceiling: float) -> None:
    """After the n-th failure the wait is drawn in [0, min(maximum, initial * 2**(n-1))]."""
    random.seed(7)
    waits = [backoff(failures, initial=0.1, maximum=1.0) for _ in range(500)]
    assert all(0.0 <= w <= ceiling for w in waits)
    assert max(waits) > ceiling * 0.9  # the whole range is used, not a fixed step
    assert min(waits) < ceiling * 0.1


def test_testing_mode_means_no_wait_or_a_short_pause_for_a_loop_that_never_gives_up() -> None:
    """Under set_testing a bounded loop does not wait, a forever loop pauses briefly (no busy loop)."""
    with infraboot.set_testing():
        assert 0.0 == backoff(8, initial=1.0, maximum=60.0)
        assert TESTING_FOREVER_WAIT == backoff(8, initial=1.0, maximum=60.0, forever=True)
    assert backoff(1, initial=1.0, maximum=1.0, forever=True) <= 1.0


def test_set_testing_restores_the_previous_mode_and_the_retry_module_re_exports_it() -> None:
    """The switch lives in _backoff; _retry's names are the same objects, for older imports."""
    from infraboot._engine import _retry

    assert (infraboot.set_testing, _retry.is_testing) == (_retry.set_testing, is_testing)
    with infraboot.set_testing(attempts=3):
        assert (True, 3) == (is_testing(), _backoff.testing_attempts())
    assert (False, 1) == (is_testing(), _backoff.testing_attempts())


class _RefusingPubSub:
    """A sentinel's pub/sub that cannot subscribe: the watcher must back off and try the next sentinel."""

    def __init__(self, tries: list[float], enough: asyncio.Event) -> None:
        self.tries, self.enough = tries, enough

    async def subscribe(self, *channels: str) -> None:
        self.tries.append(time.monotonic())
        if len(self.tries) >= 20:
            self.enough.set()
        msg = "sentinel down"
        raise ConnectionRefusedError(msg)

    async def aclose(self) -> None:
        return None


async def test_the_sentinel_watcher_retries_without_backoff_under_set_testing(pauses: list[float]) -> None:
    """Under set_testing the +switch-master watcher pauses only briefly between sentinels (20 tries well under 3 s)."""
    from infraboot._components._redis_topology import _watch_switch_master

    tries: list[float] = []
    enough = asyncio.Event()
    sentinel = SimpleNamespace(pubsub=lambda: _RefusingPubSub(tries, enough))
    pool = SimpleNamespace(service_name="mymaster", sentinel_manager=SimpleNamespace(sentinels=[sentinel, sentinel]))
    with infraboot.set_testing():
        watcher = asyncio.ensure_future(_watch_switch_master(SimpleNamespace(connection_pool=pool)))  # type: ignore[arg-type]
        try:
            await asyncio.wait_for(enough.wait(), 10)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    assert tries[19] - tries[0] < 3.0
    assert {TESTING_FOREVER_WAIT} == set(pauses)


async def test_the_cli_wait_rounds_do_not_back_off_under_set_testing(
    monkeypatch: pytest.MonkeyPatch, pauses: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    """`infraboot wait` asks the one backoff between rounds: under set_testing only the short pause, to the budget."""
    from infraboot.__main__ import EXIT_FAILED, _target, _wait

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed: refused
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
    monkeypatch.setenv("REDIS_MAX_RETRIES", "0")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    level = logging.getLogger("infraboot").level
    try:
        with infraboot.set_testing():
            assert EXIT_FAILED == await _wait(_target(None), ["redis"], budget=0.5, started=time.monotonic())
    finally:
        logging.getLogger("infraboot").setLevel(level)
    assert capsys.readouterr().out.count("waiting (") >= 2
    assert len(pauses) >= 2
    assert {TESTING_FOREVER_WAIT} == set(pauses)
