"""Serve while starting, and drain before stopping: in process, through the ASGI adapters."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import infraboot
import infraboot.fastapi as ib
import infraboot.starlette as ibs
import infraboot.testing
from infraboot import ComponentState, ConfigError, StartupError, SystemInitializer


class Gate:
    """A component that starts only when the test opens the gate (or fails then, if told to)."""

    def __init__(self, name: str = "gated", *, fail: bool = False, required: bool = True) -> None:
        self.opened = asyncio.Event()
        self.fail = fail
        self.starts = 0
        self.stops = 0

        @infraboot.component(name, required=required, retries=0, timeout=30)
        async def gated(ctx: infraboot.Context) -> AsyncIterator[str]:
            self.starts += 1
            await self.opened.wait()
            if self.fail:
                raise ConnectionRefusedError("gated backend refused")
            try:
                yield "resource"
            finally:
                self.stops += 1

        self.component = gated


async def started(system: SystemInitializer, app: object, timeout: float = 5.0) -> None:
    """Wait until the system's startup has finished (its startup probe passes) and the app's background startup too.

    The components are up a moment before the background startup settles (the app's own
    lifespan runs in between): the probes say "starting" until both are done.
    """
    deadline = time.monotonic() + timeout
    while system.startup().status != "pass":
        assert time.monotonic() < deadline, f"startup not finished: {system.phase}"
        await asyncio.sleep(0.005)
    behind = getattr(getattr(app, "state", None), "infraboot_startup", None)
    assert isinstance(behind, asyncio.Future), "no background startup on the app's state"
    await asyncio.wait_for(asyncio.shield(behind), max(0.0, deadline - time.monotonic()))


def client_for(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")  # type: ignore[arg-type]


def fastapi_app(system: SystemInitializer, **lifespan_options: object) -> FastAPI:
    app = FastAPI(
        lifespan=ib.lifespan(["gated"], system=system, background=True, **lifespan_options),  # type: ignore[arg-type]
        exception_handlers=ib.exception_handlers,
    )
    app.include_router(ib.health_router(system))

    @app.get("/work")
    async def work() -> dict[str, str]:
        return {"resource": system.get("gated")}

    return app


# -- serve while starting -------------------------------------------------------------------------


async def test_background_lifespan_serves_probes_while_a_component_is_still_starting() -> None:
    """Liveness answers at once; startup, readiness and handlers needing the component answer 503 until it is up."""
    gate = Gate()
    system = SystemInitializer([gate.component], check_interval=None)
    app = fastapi_app(system)
    async with infraboot.testing.lifespan(app, started=False), client_for(app) as client:
        live, startup, ready, work = [await client.get(p) for p in ("/livez", "/startupz", "/readyz", "/work")]
        gate.opened.set()
        await started(system, app)
        after = [await client.get(p) for p in ("/startupz", "/readyz", "/work")]

    assert (200, 503, 503, 503) == tuple(r.status_code for r in (live, startup, ready, work))
    assert "starting" == startup.json()["output"]
    assert "5" == work.headers["retry-after"]
    assert [200, 200, 200] == [r.status_code for r in after]
    assert {"resource": "resource"} == after[2].json()
    assert (1, 1) == (gate.starts, gate.stops)


async def test_stopping_during_a_background_startup_cancels_it_and_leaves_nothing_running() -> None:
    """The server stopping before the start finished: the start is cancelled, nothing is left running."""
    gate = Gate()
    system = SystemInitializer([gate.component], check_interval=None)
    app = fastapi_app(system)
    async with infraboot.testing.lifespan(app, started=False):
        assert ComponentState.STARTING == system.state("gated")
    assert ComponentState.STARTING != system.state("gated")
    assert "stopped" == system.phase
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("infraboot-") and not t.done()]


async def test_invalid_configuration_still_fails_the_servers_startup_with_background() -> None:
    """A setting that cannot work is refused before the server listens, as without background."""
    system = SystemInitializer([infraboot.RedisComponent(settings={"url": "redis://h:notaport/0"})])
    app = FastAPI(lifespan=ib.lifespan(["redis"], system=system, background=True))
    with pytest.raises(RuntimeError, match="startup failed"):
        async with infraboot.testing.lifespan(app):
            pass  # pragma: no cover - the startup fails


async def test_a_required_failure_in_the_background_calls_on_failure_with_the_startup_error() -> None:
    """on_failure=an async function hears of the StartupError; the app stays unready meanwhile."""
    heard: list[BaseException] = []
    told = asyncio.Event()

    async def on_failure(exc: BaseException) -> None:
        heard.append(exc)
        told.set()

    gate = Gate(fail=True)
    system = SystemInitializer([gate.component], check_interval=None)
    app = fastapi_app(system, on_failure=on_failure)
    async with infraboot.testing.lifespan(app, started=False), client_for(app) as client:
        gate.opened.set()
        await asyncio.wait_for(told.wait(), 5)
        ready, live, startup = [await client.get(p) for p in ("/readyz", "/livez", "/startupz")]

    assert isinstance(heard[0], StartupError)
    assert "gated" in str(heard[0])
    assert (503, 200, 503) == (ready.status_code, live.status_code, startup.status_code)
    assert "startup failed" == startup.json()["output"]


async def test_on_failure_retry_starts_again_until_the_component_comes_up() -> None:
    """on_failure="retry": a failed startup is tried again with backoff, and readiness passes once it works."""
    gate = Gate(fail=True)
    gate.opened.set()
    system = SystemInitializer([gate.component], check_interval=None)
    app = fastapi_app(system, on_failure="retry")
    with infraboot.set_testing():
        async with infraboot.testing.lifespan(app, started=False), client_for(app) as client:
            deadline = time.monotonic() + 5
            while gate.starts < 2:
                assert time.monotonic() < deadline, "no second startup"
                await asyncio.sleep(0.01)
            unready = await client.get("/readyz")
            gate.fail = False
            await started(system, app)
            ready = await client.get("/readyz")

    assert (503, 200) == (unready.status_code, ready.status_code)
    assert gate.starts >= 3


def test_on_failure_is_checked_when_the_lifespan_is_made() -> None:
    """A misspelt on_failure is refused with the choices, before any server starts."""
    with pytest.raises(ConfigError, match='"exit", "retry"'):
        ib.lifespan(["redis"], background=True, on_failure="restart")  # type: ignore[arg-type]


async def test_starlette_lifespan_serves_while_starting_too() -> None:
    """The Starlette adapter takes background=True the same way."""
    gate = Gate()
    system = SystemInitializer([gate.component], check_interval=None)
    app = Starlette(
        lifespan=ibs.lifespan(["gated"], system=system, background=True), routes=[*ibs.health_routes(system)]
    )
    async with infraboot.testing.lifespan(app, started=False), client_for(app) as client:
        before = await client.get("/readyz")
        gate.opened.set()
        await started(system, app)
        after = await client.get("/readyz")
    assert (503, 200) == (before.status_code, after.status_code)


async def test_the_test_kit_lifespan_waits_for_a_background_startup_by_default() -> None:
    """infraboot.testing.lifespan(app) begins the block once the background startup has finished."""
    gate = Gate()
    gate.opened.set()
    system = SystemInitializer([gate.component], check_interval=None)
    app = fastapi_app(system)
    async with infraboot.testing.lifespan(app), client_for(app) as client:
        phase = system.phase
        work = await client.get("/work")
    assert ("running", 200) == (phase, work.status_code)


# -- the app's own lifespan (inner) with background=True -----------------------------------------------


async def until_started(app: FastAPI, client: httpx.AsyncClient, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (await client.get("/startupz")).status_code != 200:
        assert time.monotonic() < deadline, "the background startup never finished"
        await asyncio.sleep(0.005)


@pytest.mark.real
async def test_background_inner_runs_once_the_components_are_up_and_its_state_reaches_requests(
    database_url: str,
) -> None:
    """inner uses the real database in background mode; probes fail until it has yielded; it ends before shutdown."""
    gate = Gate()
    system = SystemInitializer(
        [gate.component, infraboot.DatabaseComponent("database", settings={"url": database_url})],
        check_interval=None,
    )
    seen: list[str] = []
    entered = asyncio.Event()
    go_on = asyncio.Event()

    @contextlib.asynccontextmanager
    async def create_tables(app: FastAPI) -> AsyncIterator[dict[str, int]]:
        async with system.get("database").connect() as conn:  # failed the startup before: not up yet
            answer = (await conn.execute(text("SELECT 41 + 1"))).scalar_one()
        seen.append(f"entered with gated {system.state('gated').value}")
        entered.set()
        await go_on.wait()
        yield {"answer": answer}
        seen.append(f"exited with database {system.state('database').value}")

    app = FastAPI(lifespan=ib.lifespan(system=system, background=True, inner=create_tables))
    app.include_router(ib.health_router(system))

    @app.get("/answer")
    async def answer(request: Request) -> dict[str, int]:
        return {"answer": request.app.state.answer}

    async with infraboot.testing.lifespan(app, started=False), client_for(app) as client:
        while_starting = [(await client.get(p)).status_code for p in ("/livez", "/startupz", "/readyz")]
        gate.opened.set()
        await entered.wait()
        while_inner_runs = [(await client.get(p)).status_code for p in ("/startupz", "/readyz")]
        output = (await client.get("/readyz")).json().get("output")
        go_on.set()
        await until_started(app, client)
        served = (await client.get("/answer")).json()
    assert [200, 503, 503] == while_starting
    assert ([503, 503], "starting") == (while_inner_runs, output)
    assert {"answer": 42} == served
    assert ["entered with gated ready", "exited with database ready"] == seen
    assert ComponentState.STOPPED == system.state("database")


async def test_a_failing_background_inner_is_a_failed_startup_and_on_failure_hears_of_it() -> None:
    """An error in inner is a StartupError naming it (the cause kept); the components are shut down after on_failure."""
    gate = Gate()
    gate.opened.set()
    system = SystemInitializer([gate.component], check_interval=None)
    heard: list[BaseException] = []

    @contextlib.asynccontextmanager
    async def broken(app: FastAPI) -> AsyncIterator[None]:
        raise RuntimeError("no migrations table")
        yield

    async def on_failure(exc: BaseException) -> None:
        heard.append(exc)

    app = FastAPI(lifespan=ib.lifespan(system=system, background=True, inner=broken, on_failure=on_failure))
    async with infraboot.testing.lifespan(app):
        pass
    assert 1 == len(heard)
    assert isinstance(heard[0], StartupError)
    assert "the app's own lifespan (broken) failed once the components were up" in str(heard[0])
    assert isinstance(heard[0].__cause__, RuntimeError)


async def test_on_failure_retry_enters_a_failing_background_inner_again_with_the_components_kept_up() -> None:
    """on_failure="retry": inner fails twice, is entered a third time; the component started once."""
    gate = Gate()
    gate.opened.set()
    system = SystemInitializer([gate.component], check_interval=None)
    tries = 0

    @contextlib.asynccontextmanager
    async def flaky(app: FastAPI) -> AsyncIterator[None]:
        nonlocal tries
        tries += 1
        if tries < 3:
            raise ConnectionResetError("not yet")
        yield

    app = FastAPI(lifespan=ib.lifespan(system=system, background=True, inner=flaky, on_failure="retry"))
    app.include_router(ib.health_router(system))
    with infraboot.set_testing():
        async with infraboot.testing.lifespan(app), client_for(app) as client:
            ready = (await client.get("/readyz")).status_code
    assert (3, 1, 200) == (tries, gate.starts, ready)


# -- drain --------------------------------------------------------------------------------------------


async def test_drain_fails_readiness_at_once_while_resources_stay_usable() -> None:
    """drain(): readiness says "draining" from the first moment; get() still hands out the resource."""
    gate = Gate()
    gate.opened.set()
    system = SystemInitializer([gate.component], check_interval=None, drain_delay=0.2)
    await system.initialize_all()
    before = await system.readiness()
    draining = asyncio.ensure_future(system.drain())
    await asyncio.sleep(0)
    during = await system.readiness()
    resource = system.get("gated")
    report = await draining
    await system.shutdown()

    assert ("pass", "fail", "draining") == (before.status, during.status, during.output)
    assert "resource" == resource
    assert report.idle
    assert 0.2 <= report.waited < 0.2 + 1.0


async def test_drain_waits_for_tracked_work_in_flight_but_never_past_twice_its_delay() -> None:
    """Work in drainer.track() holds the drain past its delay until it ends; at most 2 x delay in all."""
    system = SystemInitializer(check_interval=None, drain_delay=0.1)
    await system.initialize_all()
    release = asyncio.Event()

    async def job() -> None:
        with system.drainer.track():
            await release.wait()

    running = asyncio.ensure_future(job())
    await asyncio.sleep(0)
    held = asyncio.ensure_future(system.drain())
    done, _ = await asyncio.wait({held}, timeout=0.15)
    release.set()
    report = await held
    await running

    stuck = asyncio.ensure_future(job())
    release.clear()
    await asyncio.sleep(0)
    system.drainer.reset()
    capped = await system.drain()
    release.set()
    await stuck
    await system.shutdown()

    assert not done, "the drain returned with work still in flight"
    assert report.idle
    assert 1 == capped.in_flight
    assert 0.2 <= capped.waited < 0.2 + 1.0


async def test_concurrent_drains_share_one_start_and_a_new_startup_serves_again() -> None:
    """Two /drainz calls end together; after shutdown and a fresh start, readiness passes again."""
    system = SystemInitializer(check_interval=None, drain_delay=0.1)
    await system.initialize_all()
    first, second = await asyncio.gather(system.drain(), system.drain())
    await system.shutdown()
    await system.initialize_all()
    again = await system.readiness()
    await system.shutdown()

    assert abs(first.waited - second.waited) < 0.05
    assert "pass" == again.status


async def test_drainz_through_the_middleware_counts_requests_in_flight() -> None:
    """/drainz turns readiness off at once and answers only when the slow request in flight has finished."""
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow(request: Request) -> PlainTextResponse:
        entered.set()
        await release.wait()
        return PlainTextResponse("done")

    system = SystemInitializer(check_interval=None, drain_delay=0.3)
    app = ibs.ProbeMiddleware(Starlette(routes=[Route("/slow", slow)]), system=system)
    await system.initialize_all()
    async with client_for(app) as client:
        request = asyncio.ensure_future(client.get("/slow"))
        await entered.wait()
        in_flight = system.drainer.in_flight
        drain = asyncio.ensure_future(client.post("/drainz"))
        deadline = time.monotonic() + 5
        while not system.drainer.active:
            assert time.monotonic() < deadline, "/drainz never reached the system"
            await asyncio.sleep(0.001)
        ready = await client.get("/readyz")
        early, _ = await asyncio.wait({drain}, timeout=0.35)  # past the delay, before the 0.6 s cap
        release.set()
        answered, served = await drain, await request
    await system.shutdown()

    assert 1 == in_flight
    assert 503 == ready.status_code
    assert "draining" == ready.json()["output"]
    assert not early, "/drainz answered with a request still in flight"
    assert (200, "draining", 0) == (answered.status_code, answered.json()["status"], answered.json()["in_flight"])
    assert (200, "done") == (served.status_code, served.text)


async def test_drainz_can_be_left_out() -> None:
    """drain=False: /drainz is not served (a 404 from the app), so nothing can drain the pod by mistake."""
    system = SystemInitializer(check_interval=None)
    app = ib.ProbeMiddleware(FastAPI(), system=system, drain=False)
    await system.initialize_all()
    async with client_for(app) as client:
        answer = await client.get("/drainz")
    await system.shutdown()
    assert 404 == answer.status_code
    assert not system.drainer.active


@pytest.mark.parametrize("value", [-1, float("nan"), "5", True])
def test_a_bad_drain_delay_is_refused_with_the_setting_named(value: object) -> None:
    """drain_delay must be a finite number of seconds >= 0 (0: no drain)."""
    with pytest.raises(ConfigError, match="drain_delay="):
        SystemInitializer(drain_delay=value)  # type: ignore[arg-type]


def test_infraboot_drain_delay_comes_from_the_environment_and_is_checked() -> None:
    """INFRABOOT_DRAIN_DELAY sets the default system's drain; a bad value names the variable."""
    from infraboot._front._default import settings_from_env

    assert {"drain_delay": 0.0} == settings_from_env({"INFRABOOT_DRAIN_DELAY": "0"})
    with pytest.raises(ConfigError, match="INFRABOOT_DRAIN_DELAY='-2'"):
        settings_from_env({"INFRABOOT_DRAIN_DELAY": "-2"})
