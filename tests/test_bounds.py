"""The engine's bounds hold whatever a component does: deadlines, single teardowns, no leftovers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import sys
import time
from collections.abc import AsyncIterator, Callable

import pytest

import infraboot
from infraboot import (
    ComponentState,
    ConfigError,
    NotInitializedError,
    StartupError,
    SystemInitializer,
    UnknownComponentError,
)

S = ComponentState


class Stubborn:
    """Work that ignores cancellation, as some drivers do inside their own timeouts, until released."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.cancels = 0

    async def hold(self, limit: float = 15.0) -> None:
        end = time.monotonic() + limit
        while not self.released.is_set() and time.monotonic() < end:
            try:
                await asyncio.sleep(0.02)
            except asyncio.CancelledError:
                self.cancels += 1


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.005)


def infraboot_tasks() -> list[str]:
    return sorted(n for t in asyncio.all_tasks() if not t.done() and (n := t.get_name()).startswith("infraboot-"))


# -- shutdown -------------------------------------------------------------------------------------


async def test_shutdown_returns_within_its_timeout_when_a_teardown_ignores_cancellation() -> None:
    """shutdown(timeout=T) returns within T + 1 s and names the component that did not stop."""
    stubborn = Stubborn()

    @infraboot.component("sticky", stop_timeout=60)
    async def sticky(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "s"
        await stubborn.hold()

    @infraboot.component("fine")
    async def fine(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "f"

    system = SystemInitializer([sticky, fine])
    await system.initialize_all()
    t0 = time.monotonic()
    report = await system.shutdown(timeout=1.0)
    elapsed = time.monotonic() - t0
    stubborn.released.set()

    assert elapsed < 1.0 + 1.0
    assert ["sticky"] == list(report.errors)
    assert "ignored cancellation" in report.errors["sticky"]
    assert (S.STOPPED, S.STOPPED) == (system.state("sticky"), system.state("fine"))
    assert stubborn.cancels >= 1


async def test_cancelling_shutdown_returns_within_a_second() -> None:
    """A shutdown() call that is cancelled gives up waiting within 1 s; the shutdown goes on, bounded."""
    stubborn = Stubborn()

    @infraboot.component("sticky", stop_timeout=60)
    async def sticky(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "s"
        await stubborn.hold()

    system = SystemInitializer([sticky], shutdown_timeout=30)
    await system.initialize_all()
    call = asyncio.create_task(system.shutdown())
    await eventually(lambda: system.state("sticky") is S.STOPPING)
    t0 = time.monotonic()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    cancelled_in = time.monotonic() - t0
    stubborn.released.set()
    report = await system.shutdown()  # joins the shutdown still running

    assert cancelled_in < 1.0
    assert report.ok
    assert S.STOPPED == system.state("sticky")


async def test_concurrent_shutdowns_and_stops_run_each_teardown_once() -> None:
    """Lifespan, signal handler and user code stopping at once: every teardown runs exactly once."""
    stops: list[str] = []
    gate = asyncio.Event()

    def make(name: str, requires: tuple[str, ...] = ()) -> infraboot.Component[str]:
        @infraboot.component(name, requires=requires)
        async def comp(ctx: infraboot.Context) -> AsyncIterator[str]:
            yield name
            await gate.wait()
            stops.append(name)

        return comp

    system = SystemInitializer([make("a"), make("b", ("a",)), make("c")])
    await system.initialize_all()
    calls = [
        asyncio.create_task(system.shutdown()),
        asyncio.create_task(system.stop(["a"])),
        asyncio.create_task(system.shutdown()),
        asyncio.create_task(system.stop(["c", "b"])),
        asyncio.create_task(system.shutdown()),
    ]
    await eventually(lambda: all(system.state(n) is S.STOPPING for n in "bc"))
    gate.set()
    results = await asyncio.gather(*calls)

    assert ["a", "b", "c"] == sorted(stops)
    assert results[0] is results[2] is results[4]
    assert all(r.ok for r in results)


# -- startup --------------------------------------------------------------------------------------


async def test_a_setup_that_ignores_cancellation_cannot_stretch_its_timeout() -> None:
    """timeout=0.5, retries=0: the caller hears at the deadline; the resource made late is closed."""
    stubborn = Stubborn()
    closed: list[str | None] = []

    @infraboot.component("slow", timeout=0.5, retries=0)
    async def slow(ctx: infraboot.Context) -> AsyncIterator[str]:
        await stubborn.hold()
        yield "late"
        closed.append(ctx.stop_reason)

    system = SystemInitializer([slow])
    t0 = time.monotonic()
    with pytest.raises(StartupError, match="abandoned") as info:
        await system.initialize_all()
    elapsed = time.monotonic() - t0
    stubborn.released.set()
    await eventually(lambda: bool(closed))

    assert elapsed < 0.5 + 1.0
    assert ("timeout", S.FAILED) == (info.value.report.components["slow"].error_code, system.state("slow"))
    assert closed[0] is not None
    assert "after its deadline" in closed[0]


async def test_startup_timeout_holds_against_a_setup_that_ignores_cancellation() -> None:
    """startup_timeout=1 with a stubborn setup whose own timeout is 10 s: StartupError after about 1 s."""
    stubborn = Stubborn()

    @infraboot.component("slow", timeout=10, retries=0)
    async def slow(ctx: infraboot.Context) -> AsyncIterator[str]:
        await stubborn.hold()
        yield "late"

    system = SystemInitializer([slow], startup_timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(StartupError):
        await system.initialize_all()
    elapsed = time.monotonic() - t0
    stubborn.released.set()
    await system.shutdown()

    assert elapsed < 1.0 + 1.0


async def test_a_stubborn_optional_component_does_not_hold_up_the_others() -> None:
    """Only the stubborn component waits out its own timeout; its neighbours start as usual."""
    stubborn = Stubborn()

    @infraboot.component("slow", required=False, timeout=0.3, retries=0)
    async def slow(ctx: infraboot.Context) -> AsyncIterator[str]:
        await stubborn.hold()
        yield "late"

    @infraboot.component("quick")
    async def quick(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "q"

    system = SystemInitializer([slow, quick], recovery=False)
    t0 = time.monotonic()
    report = await system.initialize_all()
    elapsed = time.monotonic() - t0
    stubborn.released.set()
    await system.shutdown()

    assert elapsed < 0.3 + 1.0
    assert ("degraded", S.READY) == (report.status, report.components["quick"].state)


async def test_each_start_attempt_runs_in_a_task_of_its_own() -> None:
    """The attempt is not the caller's task, so the caller can always walk away at the deadline."""
    seen: list[str] = []

    @infraboot.component("where")
    async def where(ctx: infraboot.Context) -> AsyncIterator[str]:
        task = asyncio.current_task()
        assert task is not None
        seen.append(task.get_name())
        yield "w"
        done = asyncio.current_task()
        assert done is not None
        seen.append(done.get_name())

    caller = asyncio.current_task()
    assert caller is not None
    async with SystemInitializer([where]):
        pass

    # Named from their first step on (one that ends at once included): logging's taskName reads it.
    assert ["infraboot-attempt-where", "infraboot-teardown-where"] == seen
    assert caller.get_name() not in seen


# -- waiting, recovery ------------------------------------------------------------------------------


async def test_timed_out_wait_ready_calls_leave_no_waiter_behind() -> None:
    """10,000 wait_ready() calls that time out leave no pending future behind."""

    @infraboot.component("never", required=False, retries=0)
    async def never(ctx: infraboot.Context) -> AsyncIterator[str]:
        raise ConnectionRefusedError("down")
        yield "unreachable"

    def pending_futures() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, asyncio.Future) and not o.done())

    system = SystemInitializer([never], recovery=False, check_interval=None)
    await system.initialize_all()
    before = pending_futures()
    answers = await asyncio.gather(*(system.wait_ready(["never"], timeout=0.01) for _ in range(10_000)))
    after = pending_futures()
    await system.shutdown()

    assert not any(answers)
    assert after <= before


async def test_recovery_makes_no_attempt_after_an_error_startup_does_not_retry() -> None:
    """A ConfigError cannot heal by waiting: the component stays failed, with that reason, and is not retried."""
    starts: list[int] = []

    @infraboot.component("misconfigured", required=False)
    async def misconfigured(ctx: infraboot.Context) -> AsyncIterator[str]:
        starts.append(ctx.attempt)
        raise ConfigError("CACHE_URL is wrong")
        yield "unreachable"

    with infraboot.set_testing(attempts=3):
        system = SystemInitializer([misconfigured], check_interval=0.01)
        await system.initialize_all()
        running = infraboot_tasks()
        health = await system.health(fresh=True)
        await system.shutdown()

    assert [1] == starts
    assert "infraboot-recover-misconfigured" not in running
    assert ("warn", "config") == (health.status, health.components["misconfigured"].error_code)


async def test_recovery_stops_when_the_error_turns_non_retryable() -> None:
    """Refused (retryable) at startup, then an auth-like error in the background: recovery gives up on it."""
    errors: list[Exception] = [ConnectionRefusedError("down"), PermissionError("bad password")]
    starts: list[int] = []

    class Picky(infraboot.Component[str]):
        name = "picky"
        required = False

        async def start(self, ctx: infraboot.Context) -> str:
            starts.append(ctx.attempt)
            raise errors[min(len(starts), len(errors)) - 1]

        def is_retryable(self, exc: Exception) -> bool:
            return not isinstance(exc, PermissionError)

    with infraboot.set_testing():
        system = SystemInitializer([Picky()])
        await system.initialize_all()
        await eventually(lambda: "infraboot-recover-picky" not in infraboot_tasks())
        tried = list(starts)
        state = system.state("picky")
        await system.shutdown()

    assert [1, 2] == tried
    assert S.FAILED == state


# -- names, graph, seams ----------------------------------------------------------------------------


async def test_an_unknown_name_is_the_same_error_everywhere() -> None:
    """Every method that takes names says 'unknown component' with a suggestion, as one exception type."""

    @infraboot.component("cache")
    async def cache(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "c"

    system = SystemInitializer([cache])
    errors: list[UnknownComponentError] = []
    for call in (
        lambda: system.ensure_initialized(["cahce"]),
        lambda: system.stop(["cahce"]),
        lambda: system.wait_ready(["cahce"], timeout=0.1),
    ):
        with pytest.raises(UnknownComponentError) as info:
            await call()
        errors.append(info.value)
    for sync_call in (lambda: system.get("cahce"), lambda: system.state("cahce"), lambda: system.override("cahce", 1)):
        with pytest.raises(UnknownComponentError) as info, sync_call():  # type: ignore[attr-defined]
            pass
        errors.append(info.value)

    assert 6 == len(errors)
    assert {"cache"} == {e.suggestion for e in errors}
    assert all(isinstance(e, NotInitializedError) and isinstance(e, infraboot.DependencyError) for e in errors)


async def test_a_bare_string_is_refused_by_every_method_that_takes_names() -> None:
    """stop('cache') is refused as ensure_initialized('cache') is: a string is not a list of names."""

    @infraboot.component("cache")
    async def cache(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "c"

    system = SystemInitializer([cache])
    for call in (system.ensure_initialized, system.stop, system.wait_ready):
        with pytest.raises(ConfigError, match=r"pass a list of names"):
            await call("cache")  # type: ignore[operator]


async def test_a_dependency_chain_thousands_deep_starts_and_stops_in_order() -> None:
    """No recursion anywhere: a 2,000-deep chain starts requirements first and stops them last."""
    order: list[int] = []

    def link(i: int) -> infraboot.Component[int]:
        @infraboot.component(f"n{i}", requires=[f"n{i - 1}"] if i else [])
        async def comp(ctx: infraboot.Context) -> AsyncIterator[int]:
            yield i
            order.append(i)

        return comp

    system = SystemInitializer([link(i) for i in range(2000)])
    report = await system.ensure_initialized(["n1999"])
    await system.shutdown()

    assert "ok" == report.status
    assert list(range(1999, -1, -1)) == order


def test_a_name_with_a_trailing_newline_is_refused() -> None:
    """'redis\\n' is not a name: the pattern must match the whole string."""
    with pytest.raises(ConfigError, match="name="):
        infraboot.Component("redis\n")


async def test_override_restores_the_truth_when_the_component_was_stopped_inside() -> None:
    """After the block, get() follows the component's state, not the value seen when the block began."""

    @infraboot.component("redis")
    async def redis(ctx: infraboot.Context) -> AsyncIterator[object]:
        yield object()

    system = SystemInitializer([redis])
    await system.initialize_all()
    with system.override("redis", "fake"):
        assert "fake" == system.get("redis")
        await system.stop(["redis"])
        assert "fake" == system.get("redis")
    with pytest.raises(NotInitializedError, match="was shut down"):
        system.get("redis")
    with system.override("redis", "fake"):
        await system.ensure_initialized(["redis"])
    live = system.get("redis")
    await system.shutdown()

    assert "fake" != live
    assert S.STOPPED == system.state("redis")


async def test_snapshot_is_a_frozen_view_of_every_component() -> None:
    """snapshot() tells state, requirement, resource presence and last probe without probing."""

    @infraboot.component("a")
    async def a(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "a"

    @infraboot.component("b", requires=["a"], required=False)
    async def b(ctx: infraboot.Context) -> AsyncIterator[str]:
        raise ConnectionRefusedError("down")
        yield "b"

    with infraboot.set_testing():
        system = SystemInitializer([a, b], recovery=False)
        await system.initialize_all()
        snap = system.snapshot()
        await system.shutdown()

    assert (S.READY, True, True) == (snap["a"].state, snap["a"].required, snap["a"].has_resource)
    assert (S.FAILED, False, "refused", ("a",)) == (
        snap["b"].state,
        snap["b"].has_resource,
        snap["b"].error_code,
        snap["b"].requires,
    )
    assert "pass" == snap["a"].health.status
    with pytest.raises(AttributeError):
        snap["a"].state = S.FAILED  # type: ignore[misc]


async def test_teardown_learns_it_runs_in_a_rollback() -> None:
    """ctx.stop_reason is None for an ordinary stop and names the failure in a rollback."""
    reasons: list[str | None] = []

    @infraboot.component("a")
    async def a(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "a"
        reasons.append(ctx.stop_reason)

    @infraboot.component("db", requires=["a"], retries=0)
    async def db(ctx: infraboot.Context) -> AsyncIterator[str]:
        raise ConnectionRefusedError("down")
        yield "db"

    system = SystemInitializer([a, db])
    with pytest.raises(StartupError):
        await system.initialize_all()
    await system.ensure_initialized(["a"])
    await system.shutdown()

    assert 2 == len(reasons)
    assert reasons[0] is not None
    assert "rollback" in reasons[0]
    assert "'db'" in reasons[0]
    assert reasons[1] is None


# -- races found in review ------------------------------------------------------------------------


class Counted(infraboot.Component[str]):
    """Hands out res0, res1, ...; records what it opened and closed."""

    def __init__(self, name: str = "x", *, stop_delay: float = 0.0, **options: object) -> None:
        super().__init__(name, **options)  # type: ignore[arg-type]
        self.opened: list[str] = []
        self.closed: list[str] = []
        self.stop_delay = stop_delay

    async def start(self, ctx: infraboot.Context) -> str:
        resource = f"res{len(self.opened)}"
        self.opened.append(resource)
        return resource

    async def stop(self, resource: str) -> None:
        await asyncio.sleep(self.stop_delay)
        self.closed.append(resource)


async def test_a_start_during_a_stop_waits_for_it_and_keeps_its_new_resource() -> None:
    """ensure_initialized() while stop() runs: the stop ends first, the new resource stays ready and is closed later."""
    comp = Counted(stop_delay=0.2, retries=0)
    system = SystemInitializer([comp], check_interval=None)
    await system.initialize_all()
    stopping = asyncio.create_task(system.stop(["x"]))
    await eventually(lambda: system.state("x") is S.STOPPING)
    await system.ensure_initialized(["x"])
    await stopping
    after_stop = (system.state("x"), system.get("x"))
    await system.shutdown()

    assert (S.READY, "res1") == after_stop
    assert ["res0", "res1"] == comp.closed


async def test_a_startup_overtaken_by_shutdown_does_not_claim_the_system_running() -> None:
    """shutdown() during ensure_initialized(): the call says so, and nothing is left running afterwards."""

    class Slow(infraboot.Component[str]):
        name = "slow"
        required = False
        retries = 0

        async def start(self, ctx: infraboot.Context) -> str:
            await asyncio.sleep(0.3)
            return "s"

    system = SystemInitializer([Slow()], check_interval=0.05)
    starting = asyncio.create_task(system.initialize_all())
    await eventually(lambda: system.state("slow") is S.STARTING)
    await system.shutdown(timeout=2)
    with pytest.raises(NotInitializedError, match="shutdown"):
        await starting

    assert ("stopped", []) == (system.phase, infraboot_tasks())
    assert S.FAILED == system.state("slow")


async def test_joining_a_shutdown_keeps_its_own_timeout() -> None:
    """A second shutdown(timeout=0.5) while a longer one runs returns within its own budget, naming what still stops."""
    stubborn = Stubborn()

    @infraboot.component("sticky", stop_timeout=10)
    async def sticky(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "s"
        await stubborn.hold()

    system = SystemInitializer([sticky], check_interval=None)
    await system.initialize_all()
    first = asyncio.create_task(system.shutdown(timeout=3))
    await eventually(lambda: system.state("sticky") is S.STOPPING)
    t0 = time.monotonic()
    joined = await system.shutdown(timeout=0.5)
    elapsed = time.monotonic() - t0
    stubborn.released.set()
    await first

    assert elapsed < 0.5 + 1.0
    assert ["sticky"] == list(joined.errors)


async def test_an_unhealthy_component_is_not_restarted_over_its_resource() -> None:
    """ensure_initialized() on an unhealthy component keeps its resource (closed once, at shutdown)."""

    class Flaky(Counted):
        async def check(self, resource: str) -> None:
            raise ConnectionError("down")

    comp = Flaky("opt", required=False, retries=0)
    system = SystemInitializer([comp], check_interval=None, recovery=False)
    await system.initialize_all()
    await system.health(fresh=True)
    await system.ensure_initialized(["opt"])
    state = system.state("opt")
    await system.shutdown()

    assert S.UNHEALTHY == state
    assert (["res0"], ["res0"]) == (comp.opened, comp.closed)


async def test_a_late_resource_is_closed_even_when_the_caller_is_cancelled() -> None:
    """Cancelling ensure_initialized() during a stubborn setup: what the setup makes later is closed."""
    stubborn = Stubborn()
    closed: list[str | None] = []

    @infraboot.component("stub", required=False, retries=0)
    async def stub(ctx: infraboot.Context) -> AsyncIterator[str]:
        await stubborn.hold()
        yield "late"
        closed.append(ctx.stop_reason)

    system = SystemInitializer([stub], check_interval=None)
    starting = asyncio.create_task(system.initialize_all())
    await eventually(lambda: system.state("stub") is S.STARTING)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    stubborn.released.set()
    await eventually(lambda: bool(closed))
    await system.shutdown()

    assert S.FAILED == system.state("stub")
    assert closed[0] is not None


async def test_a_dependent_started_inside_an_override_gets_the_override() -> None:
    """ctx.get() sees what get() sees: an overridden requirement hands its override to dependents."""
    seen: list[object] = []

    @infraboot.component("database")
    async def database(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "real"

    @infraboot.component("repo", requires=["database"])
    async def repo(ctx: infraboot.Context) -> AsyncIterator[str]:
        seen.append(ctx.get("database"))
        yield "r"

    system = SystemInitializer([database, repo], check_interval=None)
    with system.override("database", "fake"):
        await system.initialize_all()
    await system.shutdown()

    assert ["fake"] == seen


async def test_work_abandoned_by_one_shutdown_does_not_eat_the_next_shutdowns_budget() -> None:
    """A teardown still running from an earlier shutdown is cancelled again, not waited for."""
    stubborn = Stubborn()

    @infraboot.component("stubborn", stop_timeout=60)
    async def comp(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "s"
        await stubborn.hold()

    @infraboot.component("fine")
    async def fine(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "f"

    system = SystemInitializer([comp, fine], check_interval=None)
    await system.initialize_all()
    await system.shutdown(timeout=1)
    await system.ensure_initialized(["fine"])
    t0 = time.monotonic()
    second = await system.shutdown(timeout=1)
    elapsed = time.monotonic() - t0
    stubborn.released.set()

    assert second.ok
    assert elapsed < 0.3


async def test_recovery_does_not_pile_up_attempts_behind_an_abandoned_one() -> None:
    """While an abandoned attempt still runs, recovery waits for it instead of opening another."""
    live: list[int] = []
    peak = [0]

    @infraboot.component("slow", required=False, timeout=0.2, retries=0)
    async def slow(ctx: infraboot.Context) -> AsyncIterator[str]:
        live.append(1)
        peak[0] = max(peak[0], len(live))
        try:
            await Stubborn().hold(limit=1.0)
        finally:
            live.pop()
        raise ConnectionRefusedError("still down")
        yield "never"

    with infraboot.set_testing():
        system = SystemInitializer([slow], check_interval=None)
        await system.initialize_all()
        await eventually(lambda: not live, timeout=5)
        await eventually(lambda: bool(live), timeout=5)  # recovery tried again once the first was gone
        observed = peak[0]
        await system.shutdown(timeout=2)

    assert 1 == observed


async def test_a_deadline_that_passes_during_the_wait_reports_the_last_real_error() -> None:
    """The wait before a retry may end a hair past the deadline: the error is still the one that happened."""
    from infraboot._engine._retry import OutOfTime, RetryPolicy, retry

    async def attempt(n: int) -> None:
        if n == 1:
            raise ConnectionRefusedError("refused on attempt 1")
        raise OutOfTime("the startup deadline passed before this attempt could begin")

    with infraboot.set_testing(attempts=3), pytest.raises(ConnectionRefusedError, match="attempt 1"):
        await retry(attempt, policy=RetryPolicy(retries=2), retryable=lambda exc: True)


# -- cancelled starts against the real PostgreSQL ------------------------------------------------


def sockets_to(port: int) -> int:
    """How many TCP sockets of this process are connected to *port* (Linux: /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as rows:
            for row in rows.read().splitlines()[1:]:
                fields = row.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                    count += 1
    return count


@pytest.mark.real
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts the process's sockets in /proc")
async def test_no_postgresql_socket_is_left_open_after_shutdown_of_a_cancelled_start(
    real_database: tuple[str, str, int],
) -> None:
    """ensure_initialized() cancelled in connect, check or warmup: once shutdown() returns, no socket is open."""
    from infraboot import DatabaseSettings
    from infraboot._components._database import DatabaseComponent

    url, _, port = real_database
    pick = random.Random(20)
    left: list[tuple[int, int]] = []
    slowest = 0.0
    for round_ in range(60):
        settings = DatabaseSettings(url=url, warmup_connections=3, application_name="infraboot-test-cancelled-start")
        system = SystemInitializer([DatabaseComponent(settings=settings)], shutdown_timeout=5, check_interval=None)
        before = sockets_to(port)
        starting = asyncio.create_task(system.ensure_initialized())
        await asyncio.sleep(pick.uniform(0, 0.04))
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, StartupError):
            await starting
        t0 = time.monotonic()
        await system.shutdown()
        slowest = max(slowest, time.monotonic() - t0)
        open_now = sockets_to(port) - before
        if open_now > 0:
            left.append((round_, open_now))

    assert [] == left
    assert slowest < 5 + 1.0


async def test_a_shutdown_during_a_starts_backoff_returns_at_once() -> None:
    """A start waiting between attempts is cut off by shutdown(), which returns at once, not after stop_timeout."""
    attempts: list[int] = []

    @infraboot.component("flaky", retries=10, backoff_initial=0.5, backoff_max=0.5)
    async def flaky(ctx: infraboot.Context) -> AsyncIterator[str]:
        attempts.append(ctx.attempt)
        raise ConnectionError("refused")
        yield "never"

    system = SystemInitializer([flaky], check_interval=None)
    starting = asyncio.create_task(system.initialize_all())
    await eventually(lambda: bool(attempts))
    t0 = time.monotonic()
    report = await system.shutdown()
    elapsed = time.monotonic() - t0
    with contextlib.suppress(StartupError, NotInitializedError):
        await starting

    assert report.ok
    assert elapsed < 1.0
