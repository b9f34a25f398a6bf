"""The lifecycle engine: order, parallelism, rollback, retries, deadlines, cancellation."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import infraboot
from infraboot import (
    ComponentState,
    ComponentUnavailableError,
    ConfigError,
    DependencyError,
    NotInitializedError,
    StartupError,
    SystemInitializer,
)

from .conftest import Journal, sim

S = ComponentState


async def test_requirements_start_first_and_stop_last(journal: Journal) -> None:
    """A component starts after what it requires is ready and stops before it."""
    system = SystemInitializer(
        [sim(journal, "api", requires=("db", "cache")), sim(journal, "db"), sim(journal, "cache", requires=("db",))]
    )
    report = await system.initialize_all()
    await system.shutdown()

    assert "ok" == report.status
    assert journal.index("ready", "db") < journal.index("start", "cache") < journal.index("start", "api")
    assert ["api", "cache", "db"] == journal.names("stop")


async def test_independent_components_start_concurrently(journal: Journal) -> None:
    """Components with no requirement between them start at the same time."""
    gate = asyncio.Event()
    system = SystemInitializer([sim(journal, n, gate=gate) for n in ("a", "b", "c")])
    task = asyncio.create_task(system.initialize_all())
    while len(journal.running) < 3 and not task.done():
        await asyncio.sleep(0)
    gate.set()
    report = await task
    await system.shutdown()

    assert 3 == journal.max_parallel
    assert "ok" == report.status


async def test_context_manager_starts_and_stops(journal: Journal) -> None:
    """`async with system` starts everything on enter and stops it on exit."""
    async with SystemInitializer([sim(journal, "a")]) as system:
        assert "<a>" == system.get("a")
    assert S.STOPPED == system.state("a")
    assert ["a"] == journal.names("stop")


async def test_ensure_initialized_starts_only_the_closure(journal: Journal) -> None:
    """Naming a component starts it and its requirements, nothing else."""
    system = SystemInitializer([sim(journal, "db"), sim(journal, "api", requires=("db",)), sim(journal, "other")])
    report = await system.ensure_initialized(["api"])
    await system.shutdown()

    assert ["db", "api"] == list(report.components)
    assert ["db", "api"] == journal.names("start")


async def test_ensure_initialized_is_idempotent(journal: Journal) -> None:
    """A second call leaves ready components alone."""
    a = sim(journal, "a")
    system = SystemInitializer([a])
    await system.ensure_initialized(["a"])
    report = await system.ensure_initialized(["a"])
    await system.shutdown()

    assert 1 == a.calls["n"]  # type: ignore[attr-defined]
    assert "ok" == report.status


async def test_one_hundred_concurrent_callers_start_each_component_once(journal: Journal) -> None:
    """Concurrent ensure_initialized calls share one start per component and its outcome."""
    a = sim(journal, "a", delay=0.01)
    b = sim(journal, "b", requires=("a",), delay=0.01)
    system = SystemInitializer([a, b])
    reports = await asyncio.gather(*(system.ensure_initialized(["b"]) for _ in range(100)))
    await system.shutdown()

    assert (1, 1) == (a.calls["n"], b.calls["n"])  # type: ignore[attr-defined]
    assert {"ok"} == {r.status for r in reports}


async def test_concurrent_callers_share_a_failure(no_backoff: None, journal: Journal) -> None:
    """When the shared start fails, every waiting caller sees the StartupError once."""
    a = sim(journal, "a", delay=0.01, fail=ConnectionRefusedError("down"), retries=0)
    system = SystemInitializer([a])
    results = await asyncio.gather(*(system.ensure_initialized(["a"]) for _ in range(20)), return_exceptions=True)

    assert all(isinstance(r, StartupError) for r in results)
    assert 1 == a.calls["n"]  # type: ignore[attr-defined]


async def test_a_failure_is_not_cached_forever(no_backoff: None, journal: Journal) -> None:
    """After a failed start, a later call tries again and can succeed."""
    a = sim(journal, "a", fail=ConnectionRefusedError("down"), fail_times=1, retries=0)
    system = SystemInitializer([a])
    with pytest.raises(StartupError):
        await system.ensure_initialized(["a"])
    report = await system.ensure_initialized(["a"])
    await system.shutdown()

    assert "ok" == report.status
    assert 2 == a.calls["n"]  # type: ignore[attr-defined]


async def test_required_failure_rolls_back_in_reverse(no_backoff: None, journal: Journal) -> None:
    """A required failure stops what had started, dependents first, and raises StartupError."""
    gate = asyncio.Event()
    system = SystemInitializer(
        [
            sim(journal, "db"),
            sim(journal, "cache", requires=("db",)),
            sim(journal, "broken", fail=ConnectionRefusedError("no route"), gate=gate, retries=0),
        ]
    )

    async def open_gate_when_cache_is_ready() -> None:
        while system.state("cache") is not S.READY:
            await asyncio.sleep(0)
        gate.set()

    opener = asyncio.create_task(open_gate_when_cache_is_ready())
    with pytest.raises(StartupError) as info:
        await system.initialize_all()
    await opener

    err = info.value
    assert ("broken", 1) == (err.component, err.attempts)
    assert "required component 'broken' failed after 1 attempt (refused: ConnectionRefusedError: no route)" in str(err)
    assert "rolled back: db, cache" in str(err)
    assert ["cache", "db"] == journal.names("stop")
    assert "failed" == err.report.status
    assert {S.STOPPED} == {system.state("db"), system.state("cache")}


async def test_required_failure_cancels_starts_still_in_flight(no_backoff: None, journal: Journal) -> None:
    """Fail fast: a required failure does not wait for slow siblings."""
    system = SystemInitializer(
        [sim(journal, "slow", delay=60), sim(journal, "broken", fail=ConnectionRefusedError(), retries=0)]
    )
    t0 = time.monotonic()
    with pytest.raises(StartupError):
        await system.initialize_all()

    assert time.monotonic() - t0 < 5
    assert S.FAILED == system.state("slow")
    assert [] == journal.names("ready")


async def test_optional_failure_degrades_and_blocks_dependents(no_backoff: None, journal: Journal) -> None:
    """An optional failure leaves the system running; its dependents do not start and say why."""
    system = SystemInitializer(
        [
            sim(journal, "db"),
            sim(journal, "search", required=False, fail=ConnectionRefusedError("down"), retries=0),
            sim(journal, "indexer", requires=("search",), required=False),
        ]
    )
    report = await system.initialize_all()

    assert "degraded" == report.status
    assert not report.ok
    assert S.BLOCKED == report.components["indexer"].state
    assert "requires 'search', which is failed" == report.components["indexer"].reason
    assert "refused" == report.components["search"].error_code
    assert "<db>" == system.get("db")
    with pytest.raises(ComponentUnavailableError, match="component 'search' is unavailable"):
        system.get("search")
    await system.shutdown()
    assert [] == [w for w, n in journal.events if n == "indexer"]


async def test_required_component_blocked_by_optional_one_fails_startup(no_backoff: None, journal: Journal) -> None:
    """A required component cannot start without its requirement, optional or not."""
    system = SystemInitializer(
        [
            sim(journal, "flaky", required=False, fail=ConnectionRefusedError(), retries=0),
            sim(journal, "api", requires=("flaky",)),
        ]
    )
    with pytest.raises(StartupError, match=r"required component 'api' failed after 0 attempts .requires 'flaky'"):
        await system.initialize_all()


async def test_retries_until_success(no_backoff: None, journal: Journal) -> None:
    """A transient failure is retried; the report counts the attempts."""
    a = sim(journal, "a", fail=ConnectionRefusedError(), fail_times=2, retries=5)
    system = SystemInitializer([a])
    report = await system.initialize_all()
    await system.shutdown()

    assert (S.READY, 3) == (report.components["a"].state, report.components["a"].attempts)


async def test_testing_mode_caps_attempts(journal: Journal) -> None:
    """set_testing(attempts=N) caps the attempts of every component."""
    a = sim(journal, "a", fail=ConnectionRefusedError(), retries=10)
    with infraboot.set_testing(attempts=2), pytest.raises(StartupError):
        await SystemInitializer([a]).initialize_all()
    assert 2 == a.calls["n"]  # type: ignore[attr-defined]


async def test_backoff_waits_between_attempts(journal: Journal) -> None:
    """Outside testing mode attempts are spaced by jittered backoff, never more than the cap."""
    a = sim(journal, "a", fail=ConnectionRefusedError(), retries=2, backoff_initial=0.05, backoff_max=0.05)
    t0 = time.monotonic()
    with pytest.raises(StartupError):
        await SystemInitializer([a]).initialize_all()
    assert 3 == a.calls["n"]  # type: ignore[attr-defined]
    assert time.monotonic() - t0 < 2.0


async def test_config_errors_are_not_retried(journal: Journal) -> None:
    """An error that cannot heal (bad configuration) fails at the first attempt."""
    a = sim(journal, "a", fail=ConfigError("bad field"), retries=5)
    with infraboot.set_testing(attempts=5), pytest.raises(StartupError, match="after 1 attempt"):
        await SystemInitializer([a]).initialize_all()
    assert 1 == a.calls["n"]  # type: ignore[attr-defined]


async def test_is_retryable_decides(journal: Journal) -> None:
    """A component's is_retryable() refuses retries of errors it knows are permanent."""

    class AuthFailed(Exception):
        pass

    class Strict(infraboot.Component[str]):
        name = "strict"
        retries = 5
        calls = 0

        async def start(self, ctx: infraboot.Context) -> str:
            Strict.calls += 1
            raise AuthFailed("wrong password")

        def is_retryable(self, exc: Exception) -> bool:
            return not isinstance(exc, AuthFailed)

    with infraboot.set_testing(attempts=5), pytest.raises(StartupError):
        await SystemInitializer([Strict()]).initialize_all()
    assert 1 == Strict.calls


async def test_attempt_deadline_holds_on_a_hanging_start(no_backoff: None, journal: Journal) -> None:
    """A start that never answers is cut off at the component's timeout."""
    hang = sim(journal, "hang", delay=3600, timeout=0.2, retries=1)
    system = SystemInitializer([hang])
    t0 = time.monotonic()
    with pytest.raises(StartupError) as info:
        await system.initialize_all()
    elapsed = time.monotonic() - t0

    assert elapsed < 2.0
    result = info.value.report.components["hang"]
    assert ("timeout", 2) == (result.error_code, result.attempts)
    assert "no answer within 0.2s (attempt 2)" == result.error


async def test_no_attempt_starts_past_the_deadline(journal: Journal) -> None:
    """With a total deadline, no attempt begins after it, whatever retries says."""
    a = sim(journal, "a", delay=0.15, fail=ConnectionRefusedError(), retries=100, deadline=0.5, backoff_max=0.1)
    t0 = time.monotonic()
    with pytest.raises(StartupError):
        await SystemInitializer([a]).initialize_all()
    elapsed = time.monotonic() - t0

    assert elapsed < 1.5
    assert a.calls["n"] < 10  # type: ignore[attr-defined]


async def test_startup_timeout_bounds_the_whole_call(no_backoff: None, journal: Journal) -> None:
    """startup_timeout bounds one ensure_initialized call, requirements included."""
    system = SystemInitializer(
        [sim(journal, "a", delay=0.3), sim(journal, "b", requires=("a",), delay=3600)], startup_timeout=0.6
    )
    t0 = time.monotonic()
    with pytest.raises(StartupError, match="'b'"):
        await system.initialize_all()
    assert time.monotonic() - t0 < 3.0
    assert ["a"] == journal.names("stop")


@pytest.mark.parametrize("point", ["requirement", "starting", "dependent"])
async def test_cancellation_stops_what_started_and_propagates(journal: Journal, point: str) -> None:
    """Cancelling startup (Ctrl-C, SIGTERM) stops what started and re-raises CancelledError."""
    gates = {"a": asyncio.Event(), "b": asyncio.Event(), "c": asyncio.Event()}
    for name in {"requirement": (), "starting": ("a",), "dependent": ("a", "b")}[point]:
        gates[name].set()
    system = SystemInitializer(
        [
            sim(journal, "a", gate=gates["a"]),
            sim(journal, "b", gate=gates["b"]),
            sim(journal, "c", requires=("a", "b"), gate=gates["c"]),
        ]
    )
    task = asyncio.create_task(system.initialize_all())
    waiting_on = {"requirement": "a", "starting": "b", "dependent": "c"}[point]
    while waiting_on not in journal.running:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert set(journal.names("ready")) == set(journal.names("stop"))
    assert all(system.snapshot()[n].has_resource is False for n in "abc")
    assert all(system.state(n) in (S.STOPPED, S.FAILED) for n in "abc")


async def test_cancel_during_shutdown_still_stops_everything(journal: Journal) -> None:
    """Shutdown is shielded: a cancel during it does not leave components running."""
    slow_stop = asyncio.Event()

    @infraboot.component("slow")
    async def slow(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "s"
        await slow_stop.wait()
        journal.add("stop", "slow")

    system = SystemInitializer([slow, sim(journal, "x")])
    await system.initialize_all()
    task = asyncio.create_task(system.shutdown())
    while system.state("slow") is not S.STOPPING:
        await asyncio.sleep(0)
    task.cancel()
    slow_stop.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert {"slow", "x"} == set(journal.names("stop"))
    assert S.STOPPED == system.state("slow")


async def test_shutdown_runs_every_stop_and_collects_errors(journal: Journal, caplog: pytest.LogCaptureFixture) -> None:
    """A failing stop is logged with its name; the others still run."""
    system = SystemInitializer(
        [
            sim(journal, "a"),
            sim(journal, "b", requires=("a",), stop_error=RuntimeError("b broke")),
            sim(journal, "c", stop_error=OSError("c broke")),
        ]
    )
    await system.initialize_all()
    with caplog.at_level(logging.ERROR, logger="infraboot"):
        report = await system.shutdown()

    assert {"a", "b", "c"} == set(journal.names("stop"))
    assert {"b": "RuntimeError: b broke", "c": "OSError: c broke"} == dict(report.errors)
    assert {"b", "c"} == {r.component for r in caplog.records if r.event == "component_stop_failed"}  # type: ignore[attr-defined]


async def test_a_hanging_stop_is_bounded(journal: Journal) -> None:
    """Each stop runs under its own stop_timeout."""

    @infraboot.component("stuck", stop_timeout=0.1)
    async def stuck(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "s"
        await asyncio.sleep(3600)

    system = SystemInitializer([stuck, sim(journal, "ok")])
    await system.initialize_all()
    t0 = time.monotonic()
    report = await system.shutdown()

    assert time.monotonic() - t0 < 2.0
    assert "stop did not finish within stop_timeout=0.1s" == report.errors["stuck"]
    assert ["ok"] == journal.names("stop")


async def test_shutdown_timeout_bounds_the_whole_shutdown() -> None:
    """shutdown_timeout bounds the whole shutdown even when stop_timeouts are longer."""

    @infraboot.component("stuck", stop_timeout=60)
    async def stuck(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "s"
        await asyncio.sleep(3600)

    system = SystemInitializer([stuck], shutdown_timeout=0.2)
    await system.initialize_all()
    t0 = time.monotonic()
    report = await system.shutdown()
    assert time.monotonic() - t0 < 2.0
    assert "shutdown_timeout" in report.errors["stuck"]
    assert S.STOPPED == system.state("stuck")


async def test_a_dependent_that_uses_up_the_shutdown_leaves_its_requirement_a_timeout_not_a_hang() -> None:
    """A requirement's stop waits for its dependents' stops only until the shutdown deadline."""
    closed: list[str] = []

    @infraboot.component("base")
    async def base(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "b"
        closed.append("base")

    @infraboot.component("top", requires=["base"], stop_timeout=60)
    async def top(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "t"
        await asyncio.sleep(3600)

    system = SystemInitializer([base, top], shutdown_timeout=0.3)
    await system.initialize_all()
    t0 = time.monotonic()
    report = await system.shutdown()

    assert time.monotonic() - t0 < 2.0
    assert ["top", "base"] == [r.name for r in report.stopped]
    assert "what was left of the shutdown_timeout" in report.errors["top"]
    assert "shutdown_timeout was used up before this component could stop" == report.errors["base"]
    assert [] == closed
    assert {S.STOPPED} == {system.state("top"), system.state("base")}


async def test_a_shutdown_that_gives_up_on_a_joined_stop_cancels_its_teardown() -> None:
    """A stop() in flight, joined by a shorter shutdown(): at the shutdown's bound the teardown is cancelled."""
    cancelled: list[float] = []

    @infraboot.component("slow", stop_timeout=5.0)
    async def slow(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "s"
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(time.monotonic())
            raise

    system = SystemInitializer([slow])
    await system.initialize_all()
    t0 = time.monotonic()
    stop = asyncio.create_task(system.stop(["slow"]))
    await asyncio.sleep(0.05)
    report = await system.shutdown(timeout=0.3)
    await stop

    assert "abandoned" in report.errors["slow"]
    assert len(cancelled) == 1
    assert cancelled[0] - t0 < 2.0
    assert [] == [t for t in asyncio.all_tasks() if t.get_name() == "infraboot-teardown-slow" and not t.done()]


async def test_stopping_a_requirement_cuts_off_a_dependent_still_starting_on_it() -> None:
    """stop(["a"]) while b (requires a) is starting: b never ends ready on a closed a; its caller hears why."""
    entered, gate = asyncio.Event(), asyncio.Event()
    seen: list[str] = []

    @infraboot.component("a")
    async def a(ctx: infraboot.Context) -> AsyncIterator[dict[str, bool]]:
        resource = {"open": True}
        yield resource
        resource["open"] = False

    @infraboot.component("b", requires=["a"])
    async def b(ctx: infraboot.Context) -> AsyncIterator[str]:
        upstream = ctx.get("a")
        entered.set()
        await gate.wait()
        seen.append(f"b made on an open a: {upstream['open']}")
        yield "b"

    system = SystemInitializer([a, b])
    await system.ensure_initialized(["a"])
    starting = asyncio.create_task(system.ensure_initialized(["b"]))
    await entered.wait()
    report = await system.stop(["a"])
    gate.set()
    with pytest.raises(StartupError) as info:
        await starting

    assert ["a"] == [r.name for r in report.stopped]
    assert [] == seen  # its setup was cancelled before it could finish
    result = info.value.report.components["b"]
    assert (S.FAILED, "cancelled") == (result.state, result.error_code)
    assert "stop(['a']) was called while it was starting" in str(info.value)
    assert str(info.value).endswith("Start it again with ensure_initialized() once that stop() has returned.")
    with pytest.raises(ComponentUnavailableError):
        system.get("b")
    await system.ensure_initialized(["b"])  # and both start again on demand
    assert system.get("a")["open"]
    await system.shutdown()


async def test_a_start_asked_for_while_stop_takes_its_requirement_down_is_blocked() -> None:
    """While stop(["a"]) is still under way (a dependent's cleanup takes its grace), a new start of another
    dependent of a does not use a: it is blocked, saying a is being stopped."""
    entered, cleaning = asyncio.Event(), asyncio.Event()
    made_on: list[bool] = []

    @infraboot.component("a")
    async def a(ctx: infraboot.Context) -> AsyncIterator[dict[str, bool]]:
        resource = {"open": True}
        yield resource
        resource["open"] = False

    @infraboot.component("b", requires=["a"])
    async def b(ctx: infraboot.Context) -> AsyncIterator[str]:
        entered.set()
        try:
            await asyncio.Event().wait()
        finally:
            cleaning.set()
            await asyncio.sleep(0.1)  # its own cleanup, inside the grace stop() gives it
        yield "b"

    @infraboot.component("c", requires=["a"])
    async def c(ctx: infraboot.Context) -> AsyncIterator[str]:
        made_on.append(ctx.get("a")["open"])
        yield "c"

    system = SystemInitializer([a, b, c])
    await system.ensure_initialized(["a"])
    starting_b = asyncio.create_task(system.ensure_initialized(["b"]))
    await entered.wait()
    stopping = asyncio.create_task(system.stop(["a"]))
    await cleaning.wait()  # stop() is waiting for b's cleanup: a is still up, but going
    with pytest.raises(StartupError, match="requires 'a', which is being stopped"):
        await system.ensure_initialized(["c"])
    await stopping
    with pytest.raises(StartupError):
        await starting_b
    assert ([], S.STOPPED) == (made_on, system.state("a"))
    await system.ensure_initialized(["c"])
    assert [True] == made_on
    await system.shutdown()


async def test_an_optional_dependent_cut_off_by_stop_is_not_brought_back_in_the_background() -> None:
    """An optional b cut off by stop(["a"]) stays failed (no recovery restarts it on a's closing resource)
    until a caller asks for it again."""
    entered = asyncio.Event()
    made_on: list[bool] = []

    @infraboot.component("a", required=False)
    async def a(ctx: infraboot.Context) -> AsyncIterator[dict[str, bool]]:
        resource = {"open": True}
        yield resource
        resource["open"] = False

    @infraboot.component("b", requires=["a"], required=False, retries=0)
    async def b(ctx: infraboot.Context) -> AsyncIterator[str]:
        upstream = ctx.get("a")
        entered.set()
        await asyncio.sleep(0.2)
        made_on.append(upstream["open"])
        yield "b"

    system = SystemInitializer([a, b], check_interval=0.05, recovery=True)
    starting = asyncio.create_task(system.ensure_initialized(["b"]))
    await entered.wait()
    entered.clear()
    await system.stop(["a"])
    assert "degraded" == (await starting).status  # nothing required: the call ends, and recovery would begin
    assert not await system.wait_ready(["b"], timeout=0.6)  # recovery would have made it by now
    assert (S.STOPPED, S.FAILED, []) == (system.state("a"), system.state("b"), made_on)
    await system.ensure_initialized(["b"])
    assert [True] == made_on
    await system.shutdown()


async def test_a_startup_whose_required_component_a_stop_took_down_meanwhile_raises() -> None:
    """ensure_initialized(["b", "c"]) never returns a "failed" report: b stopped by stop(["a"]) mid-call is an error."""
    gate = asyncio.Event()
    stopped: list[str] = []

    def made(name: str, requires: list[str] | None = None, wait: bool = False) -> infraboot.Component:
        @infraboot.component(name, requires=requires or [])
        async def one(ctx: infraboot.Context) -> AsyncIterator[str]:
            if wait:
                await gate.wait()
            yield name
            stopped.append(name)

        return one

    system = SystemInitializer([made("a"), made("b", ["a"]), made("c", wait=True)])
    starting = asyncio.create_task(system.ensure_initialized(["b", "c"]))
    await system.wait_ready(["b"], timeout=5)
    await system.stop(["a"])
    with pytest.raises(StartupError) as info:  # at once: not after the slow c, which is cut off
        await asyncio.wait_for(starting, timeout=5)
    gate.set()

    assert "a" == info.value.component  # the first in start order that is down
    assert "(stopped: a stop() was called while this startup was under way)" in str(info.value)
    assert ["b", "a"] == stopped  # c, which only this call asked for, was cut off before it was made
    assert S.FAILED == system.state("c")
    await system.shutdown()


async def test_generator_that_never_yields_fails_with_the_fix() -> None:
    """A generator that returns without yielding is a definition error, not retried."""

    @infraboot.component("empty", retries=3)
    async def empty(ctx: infraboot.Context) -> AsyncIterator[str]:
        if False:
            yield "never"

    with pytest.raises(StartupError) as info:
        await SystemInitializer([empty]).initialize_all()
    result = info.value.report.components["empty"]
    assert (1, "config") == (result.attempts, result.error_code)
    assert "returned without yielding; yield the resource once" in (result.error or "")


async def test_generator_that_yields_twice_is_reported_at_stop() -> None:
    """Yielding twice is caught at shutdown and reported with the fix."""

    @infraboot.component("twice")
    async def twice(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "a"
        yield "b"

    system = SystemInitializer([twice])
    await system.initialize_all()
    report = await system.shutdown()
    assert "yielded twice; yield the resource exactly once" in report.errors["twice"]


async def test_asking_for_an_undeclared_requirement_is_an_error() -> None:
    """ctx.get() only returns declared requirements."""

    @infraboot.component("a")
    async def a(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "a"

    @infraboot.component("b")
    async def b(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield ctx.get("a")

    with pytest.raises(StartupError, match=r"add it to requires, e.g. requires=\['a'\]"):
        await SystemInitializer([a, b]).initialize_all()


def test_unknown_requirement_is_refused_before_io(journal: Journal) -> None:
    """An unknown requirement fails before anything starts."""
    system = SystemInitializer([sim(journal, "api", requires=("databse",))])
    with pytest.raises(DependencyError, match="requires 'databse', which is not registered"):
        asyncio.run(system.initialize_all())
    assert [] == journal.events


def test_cycle_shows_its_path(journal: Journal) -> None:
    """A dependency cycle is refused with the cycle spelled out."""
    system = SystemInitializer(
        [sim(journal, "a", requires=("b",)), sim(journal, "b", requires=("c",)), sim(journal, "c", requires=("a",))]
    )
    with pytest.raises(DependencyError, match="dependency cycle: a -> b -> c -> a"):
        asyncio.run(system.initialize_all())
    assert [] == journal.events


def test_duplicate_names_are_refused(journal: Journal) -> None:
    """Two components cannot share a name."""
    with pytest.raises(DependencyError, match="a component named 'a' is already registered"):
        SystemInitializer([sim(journal, "a"), sim(journal, "a")])


async def test_unknown_names_get_a_suggestion(journal: Journal) -> None:
    """A misspelt name in ensure_initialized suggests the right one."""
    system = SystemInitializer([sim(journal, "redis")])
    with pytest.raises(DependencyError, match=r"unknown component 'redsi' \(did you mean 'redis'\?\)"):
        await system.ensure_initialized(["redsi"])


async def test_a_string_is_not_a_list_of_names(journal: Journal) -> None:
    """ensure_initialized('redis') explains that it takes a list."""
    system = SystemInitializer([sim(journal, "redis")])
    with pytest.raises(ConfigError, match=r"ensure_initialized\(\['redis'\]\)"):
        await system.ensure_initialized("redis")


def test_register_refuses_what_is_not_a_component() -> None:
    """Registering a function explains how to make it a component."""
    with pytest.raises(ConfigError, match="decorate an async generator"):
        SystemInitializer().register(lambda: None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"), [({"shutdown_timeout": 0}, "shutdown_timeout"), ({"startup_timeout": -1}, "startup_timeout")]
)
def test_system_timeouts_are_validated(kwargs: dict[str, float], field: str) -> None:
    """The system's own budgets must be positive finite numbers."""
    with pytest.raises(ConfigError, match=field):
        SystemInitializer(**kwargs)  # type: ignore[arg-type]


async def test_get_before_start_says_what_to_call(journal: Journal) -> None:
    """get() before startup names the call that fixes it."""
    system = SystemInitializer([sim(journal, "redis")])
    with pytest.raises(NotInitializedError, match=r"call await infraboot.ensure_initialized\(\['redis'\]\) first"):
        system.get("redis")
    with pytest.raises(NotInitializedError, match=r"unknown component 'nope'; registered: redis"):
        system.get("nope")


async def test_get_after_shutdown_says_it_was_shut_down(journal: Journal) -> None:
    """get() after shutdown says so."""
    system = SystemInitializer([sim(journal, "a")])
    await system.initialize_all()
    await system.shutdown()
    with pytest.raises(NotInitializedError, match="was shut down"):
        system.get("a")


async def test_disabled_components_and_their_dependents(journal: Journal) -> None:
    """configure() can disable a component; its dependents are disabled with the reason."""

    class Off(infraboot.Component[str]):
        name = "off"

        def configure(self) -> str | None:
            return "OFF_URL is not set"

    system = SystemInitializer([Off(), sim(journal, "user", requires=("off",))])
    report = await system.initialize_all()

    assert "ok" == report.status
    assert (S.DISABLED, "OFF_URL is not set") == (report.components["off"].state, report.components["off"].reason)
    assert "requires 'off', which is disabled" == report.components["user"].reason
    with pytest.raises(ComponentUnavailableError, match="disabled: OFF_URL is not set"):
        system.get("off")


async def test_configure_errors_are_collected_before_io(journal: Journal) -> None:
    """Every component's configuration problem is reported at once, before any start."""

    class Bad(infraboot.Component[str]):
        def configure(self) -> str | None:
            raise ConfigError(f"{self.name.upper()}_URL: unknown scheme 'htp'; use redis://")

    system = SystemInitializer([Bad("x"), Bad("y"), sim(journal, "z")])
    with pytest.raises(ConfigError) as info:
        await system.initialize_all()
    assert 2 == len(info.value.problems)
    assert "X_URL: unknown scheme" in str(info.value)
    assert [] == journal.events


def test_restart_in_a_new_event_loop(journal: Journal) -> None:
    """Start, stop, and start again under a new event loop."""
    system = SystemInitializer([sim(journal, "a"), sim(journal, "b", requires=("a",))])
    for _ in range(2):
        report = asyncio.run(system.initialize_all())
        asyncio.run(system.shutdown())
        assert "ok" == report.status
    assert ["a", "b", "a", "b"] == journal.names("ready")


def test_a_system_abandoned_with_its_loop_warns_and_restarts(journal: Journal) -> None:
    """A system whose loop ended without shutdown warns (ResourceWarning) and starts afresh."""
    system = SystemInitializer([sim(journal, "a")])
    asyncio.run(system.initialize_all())
    with pytest.warns(ResourceWarning, match="never shut down"):
        asyncio.run(system.initialize_all())
    asyncio.run(system.shutdown())
    assert ["a", "a"] == journal.names("ready")


async def test_report_and_waterfall(journal: Journal) -> None:
    """The report renders one bar per component with state, duration and attempts."""
    system = SystemInitializer([sim(journal, "db", delay=0.02), sim(journal, "api", requires=("db",), delay=0.02)])
    report = await system.initialize_all()
    text = report.render()
    await system.shutdown()

    lines = text.splitlines()
    assert lines[0].startswith("startup ok in ")
    assert 3 == len(lines)
    assert "db " in lines[1] and "ready" in lines[1] and "1 attempt" in lines[1]
    db, api = report.components["db"], report.components["api"]
    assert db.start_offset is not None and api.start_offset is not None and db.duration is not None
    assert api.start_offset >= db.start_offset + db.duration
    assert report.to_dict()["components"]["api"]["state"] == "ready"
    # The api bar begins where the db bar ends: in sequence in the drawing too.
    bar_db, bar_api = lines[1].split("|")[1], lines[2].split("|")[1]
    assert len(bar_db.rstrip()) - 1 <= len(bar_api) - len(bar_api.lstrip())


async def test_logs_have_stable_event_names(journal: Journal, caplog: pytest.LogCaptureFixture) -> None:
    """Each step logs a stable event name with the component in `extra`."""
    system = SystemInitializer([sim(journal, "a")])
    with caplog.at_level(logging.DEBUG, logger="infraboot"):
        await system.initialize_all()
        await system.shutdown()
    events = [(r.event, r.component) for r in caplog.records]  # type: ignore[attr-defined]
    for expected in [
        ("component_starting", "a"),
        ("component_ready", "a"),
        ("startup_complete", None),
        ("component_stopped", "a"),
        ("shutdown_complete", None),
    ]:
        assert expected in events


async def test_ensure_initialized_during_shutdown_is_refused(journal: Journal) -> None:
    """A start requested while shutting down is refused with a clear message."""

    @infraboot.component("slow", stop_timeout=5)
    async def slow(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "s"
        await asyncio.sleep(0.2)

    system = SystemInitializer([slow, sim(journal, "other")])
    await system.ensure_initialized(["slow"])
    stopping = asyncio.create_task(system.shutdown())
    while system.state("slow") is not S.STOPPING:
        await asyncio.sleep(0)
    with pytest.raises(NotInitializedError, match="shutting down"):
        await system.ensure_initialized(["other"])
    await stopping


async def test_repr_lists_states(journal: Journal) -> None:
    """The repr shows each component and its state."""
    system = SystemInitializer([sim(journal, "a")])
    assert "<SystemInitializer [a:pending]>" == repr(system)


INTERRUPTED_SETUP = """
import asyncio, logging, sys
import infraboot, infraboot.asyncio

logging.getLogger("infraboot").addHandler(logging.NullHandler())
torn = []
attempts = []


@infraboot.component("first")
async def first(ctx):
    yield "a"
    torn.append("first")


@infraboot.component("second", requires=["first"], retries=2)
async def second(ctx):
    attempts.append(1)
    if len(attempts) < int(sys.argv[2]):
        raise ConnectionError("not yet")
    raise KeyboardInterrupt
    yield "b"


system = infraboot.SystemInitializer([first, second])
if sys.argv[1] == "asyncio.run":
    try:
        asyncio.run(system.initialize_all())
    except KeyboardInterrupt:
        print("KeyboardInterrupt", torn)
else:
    try:
        infraboot.asyncio.run(lambda: asyncio.sleep(0), system=system)
    except SystemExit as exc:
        print("exit", exc.code, torn)
"""


@pytest.mark.parametrize("attempt", [1, 2], ids=["first-attempt", "a-retry"])
@pytest.mark.parametrize(("runner", "expected"), [("asyncio.run", "KeyboardInterrupt"), ("infraboot", "exit 130")])
def test_a_keyboard_interrupt_in_a_setup_tears_down_what_started_and_propagates(
    tmp_path: Path, runner: str, expected: str, attempt: int
) -> None:
    """A KeyboardInterrupt raised by a setup reaches the caller once the started components are torn down, silently."""
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED_SETUP)
    out = subprocess.run(
        [sys.executable, "-X", "dev", str(script), runner, str(attempt)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (0, f"{expected} ['first']\n", "") == (out.returncode, out.stdout, out.stderr)


INTERRUPTED_TEARDOWN = """
import asyncio, sys
import infraboot

torn = []


@infraboot.component("first")
async def first(ctx):
    yield "a"
    torn.append("first")


@infraboot.component("second", requires=["first"])
async def second(ctx):
    yield "b"
    if sys.argv[1] == "after-a-wait":
        await asyncio.sleep(0)
    if sys.argv[1] == "in-the-cleanup-of-a-second-yield":
        try:
            yield "again"
        finally:
            raise KeyboardInterrupt
    raise KeyboardInterrupt


system = infraboot.SystemInitializer([first, second])


async def main():
    await system.initialize_all()
    await system.shutdown()


try:
    asyncio.run(main())
except KeyboardInterrupt:
    print("KeyboardInterrupt", torn)
"""


@pytest.mark.parametrize("when", ["at-once", "after-a-wait", "in-the-cleanup-of-a-second-yield"])
def test_a_keyboard_interrupt_in_a_teardown_reaches_the_caller_after_the_others_are_torn_down(
    tmp_path: Path, when: str
) -> None:
    """A teardown raising KeyboardInterrupt (in its first step, a later one, or the cleanup after a second
    yield) is reported as the stop's error, what it required is still torn down, and the interrupt reaches the
    caller."""
    script = tmp_path / "interrupted_teardown.py"
    script.write_text(INTERRUPTED_TEARDOWN)
    out = subprocess.run([sys.executable, str(script), when], capture_output=True, text=True, timeout=60, check=False)
    assert (0, "KeyboardInterrupt ['first']\n") == (out.returncode, out.stdout)
    assert "component_stop_failed component=second error_code=cancelled" in out.stderr


async def test_a_required_failure_names_the_switch_that_makes_the_component_optional(
    no_backoff: None, journal: Journal
) -> None:
    """The fix offered names the component's own <NAME>_REQUIRED variable beside required=False, with one full stop."""
    system = SystemInitializer([sim(journal, "pg-pool", fail=ConnectionRefusedError("refused."), retries=0)])
    with pytest.raises(StartupError) as info:
        await system.initialize_all()
    assert str(info.value).endswith(
        "(refused: ConnectionRefusedError: refused). Fix the cause, or make it optional to start without it "
        "(PG_POOL_REQUIRED=false, or required=False in code)."
    )


async def test_a_builtin_made_required_in_code_is_not_told_the_environment_beats_the_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """For the built-ins the code's settings beat REDIS_REQUIRED: the fix offered does not claim otherwise."""
    import socket

    with socket.socket() as sock:  # a port nobody listens on: refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("REDIS_REQUIRED", "true")
    redis = infraboot.RedisComponent(
        settings={"url": f"redis://127.0.0.1:{port}/0", "required": True, "max_retries": 0, "connect_timeout": 1}
    )
    with pytest.raises(StartupError) as info:
        await SystemInitializer([redis]).initialize_all()
    assert str(info.value).endswith("(REDIS_REQUIRED=false, or required=False in code).")


async def test_a_required_failure_the_environment_made_required_names_that_variable_as_the_fix(
    no_backoff: None, journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PG_POOL_REQUIRED=yes beats required= in code: the fix offered is the variable, not the code."""
    monkeypatch.setenv("PG_POOL_REQUIRED", "yes")
    component = sim(journal, "pg-pool", fail=ConnectionRefusedError("refused."), retries=0, required=False)
    with pytest.raises(StartupError) as info:
        await SystemInitializer([component]).initialize_all()
    assert str(info.value).endswith(
        "(PG_POOL_REQUIRED=false; it is set to 'yes' in the environment, which beats required= in code)."
    )
