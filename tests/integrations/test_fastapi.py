"""infraboot.fastapi under real servers: uvicorn and gunicorn processes, real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi import Depends, FastAPI, Request, Response

import infraboot
import infraboot.fastapi as ib
import infraboot.testing
from tests.integrations.conftest import Serve, gunicorn_args, pg_connections, redis_clients, uvicorn_args
from tests.servers import RedisServer, TcpProxy, free_port

pytestmark = pytest.mark.real

LOOP_ERRORS = ("attached to a different loop", "Event loop is closed", "Traceback")
# uvicorn re-raises the SIGTERM it handled once it has shut down gracefully; gunicorn exits 0.
GRACEFUL = (0, -signal.SIGTERM)


async def get(port: int, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        return await client.get(path)


async def test_probes_with_everything_up(serve: Serve, port: int, redis_url: str, database_url: str) -> None:
    """Every probe path answers 200 with application/health+json; /metrics serves Prometheus text."""
    app = serve(uvicorn_args("fastapi_app:app", port), port=port, REDIS_URL=redis_url, DATABASE_URL=database_url)
    app.wait_listening()
    answers = {p: await get(port, p) for p in ("/livez", "/readyz", "/startupz", "/health", "/ready")}
    metrics = await get(port, "/metrics")
    app.terminate()
    assert dict.fromkeys(answers, 200) == {p: r.status_code for p, r in answers.items()}
    assert {"application/health+json"} == {r.headers["content-type"] for r in answers.values()}
    assert "pass" == answers["/readyz"].json()["status"]
    assert 'infraboot_component_up{component="redis"} 1.0' in metrics.text
    assert app.wait(15) in GRACEFUL


async def test_optional_redis_down_is_warn_and_its_dependency_answers_503(
    serve: Serve, port: int, database_url: str
) -> None:
    """With an optional Redis refused, the service starts, readiness is warn (200), and /hits is 503."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    app = serve(
        uvicorn_args("fastapi_app:app", port),
        port=port,
        REDIS_URL=dead,
        REDIS_REQUIRED="false",
        REDIS_CONNECT_TIMEOUT="0.5",
        DATABASE_URL=database_url,
    )
    app.wait_listening()
    ready, hits = await get(port, "/readyz"), await get(port, "/hits")
    app.terminate()
    assert (200, "warn") == (ready.status_code, ready.json()["status"])
    assert (503, "5") == (hits.status_code, hits.headers.get("retry-after"))
    assert app.wait(15) in GRACEFUL


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
async def test_required_database_down_exits_non_zero_with_a_clear_message(serve: Serve, port: int, server: str) -> None:
    """A required database that refuses: the process exits non-zero once, naming the component; no boot loop."""
    settings = {
        "REDIS_URL": "memory://",
        "DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test",
        "DATABASE_CONNECT_TIMEOUT": "0.5",
        "DATABASE_MAX_RETRIES": "1",
    }
    args = uvicorn_args("fastapi_app:app", port) if server == "uvicorn" else gunicorn_args("fastapi_app:app", port)
    app = serve(args, port=port, **settings)
    status = app.wait(60)
    assert 0 != status
    assert "required component 'database'" in app.output
    assert app.output.count("startup_failed") <= 2  # one per worker attempt, never a loop


async def test_sigterm_during_traffic_closes_every_connection(
    serve: Serve, port: int, redis_server: RedisServer, database_url: str, app_name: str
) -> None:
    """SIGTERM under load: the process exits within the budget; Redis and PostgreSQL connections go back to 0."""
    app = serve(
        uvicorn_args("fastapi_app:app", port, "--timeout-graceful-shutdown", "5"),
        port=port,
        REDIS_URL=redis_server.url(),
        DATABASE_URL=database_url,
        DATABASE_APPLICATION_NAME=app_name,
        INFRABOOT_SHUTDOWN_TIMEOUT="5",
    )
    app.wait_listening()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        warm = await asyncio.gather(*(client.get("/hits") for _ in range(20)))
        during_redis, during_pg = await redis_clients(redis_server.port), await pg_connections(database_url, app_name)
        traffic = [asyncio.ensure_future(client.get("/notes/count")) for _ in range(20)]
        t0 = time.monotonic()
        app.terminate()
        await asyncio.gather(*traffic, return_exceptions=True)
    status = app.wait(15)
    took = time.monotonic() - t0
    after_redis, after_pg = await redis_clients(redis_server.port), await pg_connections(database_url, app_name)
    assert {200} == {r.status_code for r in warm}
    assert during_redis >= 1 and during_pg >= 1
    assert (0, 0) == (after_redis, after_pg)
    assert took < 12
    assert status in GRACEFUL
    assert not [e for e in LOOP_ERRORS if e in app.output], app.output[-3000:]


async def test_sigterm_during_startup_exits_and_leaves_nothing_open(
    serve: Serve, port: int, redis_proxy: TcpProxy, database_url: str, app_name: str
) -> None:
    """SIGTERM while a component is still connecting: the process exits within connect timeout + shutdown budget."""
    redis_proxy.set_mode("blackhole")
    app = serve(
        uvicorn_args("fastapi_app:app", port),
        port=port,
        REDIS_URL=f"redis://{redis_proxy.url_host}/0",
        REDIS_CONNECT_TIMEOUT="3",
        REDIS_REQUIRED="false",
        DATABASE_URL=database_url,
        DATABASE_APPLICATION_NAME=app_name,
        INFRABOOT_SHUTDOWN_TIMEOUT="5",
    )
    app.wait_for_output("Waiting for application startup")
    t0 = time.monotonic()
    app.terminate()
    app.wait(30)
    took = time.monotonic() - t0
    assert took < 3 + 5 + 2
    assert 0 == await pg_connections(database_url, app_name)


async def test_per_request_session_commits_or_rolls_back(serve: Serve, port: int, database_url: str) -> None:
    """A handler that returns commits its insert; one that raises after inserting leaves nothing behind."""
    app = serve(uvicorn_args("fastapi_app:app", port), port=port, REDIS_URL="memory://", DATABASE_URL=database_url)
    app.wait_listening()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        before = (await client.get("/notes/count")).json()["count"]
        kept = await client.post("/notes", params={"body": "kept"})
        failed = await client.post("/notes", params={"body": "dropped", "fail": "true"})
        after = (await client.get("/notes/count")).json()["count"]
    app.terminate()
    assert (200, 409, 1) == (kept.status_code, failed.status_code, after - before)
    assert app.wait(15) in GRACEFUL


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(lambda p: uvicorn_args("fastapi_app:app", p, "--workers", "2"), id="uvicorn-workers-2"),
        pytest.param(lambda p: gunicorn_args("fastapi_app:app", p, "-w", "2"), id="gunicorn-2"),
        pytest.param(lambda p: gunicorn_args("fastapi_app:app", p, "-w", "2", "--preload"), id="gunicorn-preload"),
    ],
)
async def test_several_workers_each_have_their_own_connections(
    serve: Serve, port: int, redis_server: RedisServer, database_url: str, app_name: str, args: object
) -> None:
    """Under worker processes every request succeeds, no loop errors appear, and shutdown closes everything."""
    app = serve(
        args(port),  # type: ignore[operator]
        port=port,
        REDIS_URL=redis_server.url(),
        DATABASE_URL=database_url,
        DATABASE_APPLICATION_NAME=app_name,
    )
    # Both workers up before the stop: a SIGTERM during a worker's startup fails that startup on purpose.
    app.wait_for_output("Application startup complete", count=2)
    app.wait_listening()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        responses = await asyncio.gather(
            *(client.get(p) for _ in range(30) for p in ("/hits", "/notes/count", "/readyz"))
        )
    # Both workers up before SIGTERM: one still in its startup would stop it and fail the boot (gunicorn exits 1).
    deadline = time.monotonic() + 30
    while app.output.count("Application startup complete") < 2:
        assert time.monotonic() < deadline, app.output[-3000:]
        await asyncio.sleep(0.02)
    app.terminate()
    status = app.wait(30)
    assert {200} == {r.status_code for r in responses}
    assert status in GRACEFUL
    assert (0, 0) == (await redis_clients(redis_server.port), await pg_connections(database_url, app_name))
    assert not [e for e in LOOP_ERRORS if e in app.output], app.output[-3000:]


# -- in process ------------------------------------------------------------------------------------


async def test_probe_middleware_answers_before_the_applications_middleware() -> None:
    """Probe paths never reach the app's own (slow, authenticating) middleware; other paths do."""
    seen: list[str] = []
    app = FastAPI()

    @app.middleware("http")
    async def slow_auth(request: object, call_next: object) -> object:
        seen.append(request.url.path)  # type: ignore[attr-defined]
        await asyncio.sleep(0.05)
        return await call_next(request)  # type: ignore[operator]

    @app.get("/work")
    async def work() -> dict[str, bool]:
        return {"ok": True}

    system = infraboot.SystemInitializer(check_interval=None)
    wrapped = ib.ProbeMiddleware(app, system=system)
    await system.initialize_all()
    transport = httpx.ASGITransport(app=wrapped)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        ready, live, work_response = await client.get("/readyz"), await client.get("/livez"), await client.get("/work")
    await system.shutdown()
    assert (200, 200, 200) == (ready.status_code, live.status_code, work_response.status_code)
    assert ["/work"] == seen


def cache_publicly_app(*, probes_last: bool) -> FastAPI:
    """An app whose own middleware stamps Cache-Control: public on every answer, with ProbeMiddleware added."""
    app = FastAPI(lifespan=ib.lifespan([]))
    if probes_last:

        @app.middleware("http")
        async def cache_publicly(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            response = await call_next(request)
            response.headers["Cache-Control"] = "public, max-age=60"
            return response

        app.add_middleware(ib.ProbeMiddleware)
    else:
        app.add_middleware(ib.ProbeMiddleware)

        @app.middleware("http")
        async def cache_publicly_outside(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            response = await call_next(request)
            response.headers["Cache-Control"] = "public, max-age=60"
            return response

    @app.get("/work")
    async def work(value: Annotated[str, Depends(the_value)]) -> dict[str, str]:
        return {"value": value}

    return app


def the_value() -> str:
    return "real"


async def test_probe_middleware_added_last_keeps_the_app_object_and_probes_uncacheable() -> None:
    """app.add_middleware(ProbeMiddleware) last: probes say no-store under the app's public stamp; overrides work."""
    app = cache_publicly_app(probes_last=True)
    app.dependency_overrides[the_value] = lambda: "overridden"
    transport = httpx.ASGITransport(app=app)
    async with infraboot.testing.lifespan(app), httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answers = {p: await client.get(p) for p in ("/readyz", "/livez", "/startupz", "/work")}
    caching = {p: (a.status_code, a.headers["cache-control"]) for p, a in answers.items()}
    assert {
        "/readyz": (200, "no-store"),
        "/livez": (200, "no-store"),
        "/startupz": (200, "no-store"),
        "/work": (200, "public, max-age=60"),
    } == caching
    assert {"value": "overridden"} == answers["/work"].json()


async def test_a_middleware_added_after_probe_middleware_is_named_in_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Added before the app's own middleware, the probes are wrapped by it: a startup warning says so and the fix."""
    app = cache_publicly_app(probes_last=False)
    with caplog.at_level(logging.WARNING, logger="infraboot"):
        async with infraboot.testing.lifespan(app):
            pass
    warnings = [r.getMessage() for r in caplog.records if "probes_wrapped" in r.getMessage()]
    assert 1 == len(warnings)
    assert "BaseHTTPMiddleware" in warnings[0]
    assert "add ProbeMiddleware last" in warnings[0]


async def test_probe_middleware_says_fail_with_503_when_shutting_down() -> None:
    """After shutdown the readiness path answers 503 while liveness stays 200."""
    system = infraboot.SystemInitializer(check_interval=None)
    wrapped = ib.ProbeMiddleware(FastAPI(), system=system, prefix="/k8s")
    await system.initialize_all()
    await system.shutdown()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url="http://t") as client:
        ready, live = await client.get("/k8s/readyz"), await client.get("/k8s/livez")
    assert (503, 200) == (ready.status_code, live.status_code)
    assert "stopped" == ready.json()["output"]


async def test_lifespan_composes_with_the_applications_own() -> None:
    """The user's lifespan runs inside ours, sees the components up, and its state is merged with ours."""
    seen: dict[str, object] = {}

    @infraboot.component("thing")
    async def thing(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "T"

    @contextlib.asynccontextmanager
    async def mine(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        seen["inside"] = infraboot.get("thing")
        yield {"mine": "yes"}
        seen["after"] = infraboot.state("thing").value

    infraboot.register(thing)
    app = FastAPI(lifespan=ib.lifespan(["thing"], inner=mine))
    async with app.router.lifespan_context(app) as state:
        keys = sorted(state or {})
    assert ["infraboot", "mine"] == keys
    assert {"inside": "T", "after": "ready"} == seen
    assert infraboot.ComponentState.STOPPED == infraboot.state("thing")


def test_lifespan_refuses_a_bare_string() -> None:
    """lifespan('redis') is a mistake that would start r, e, d, i, s: it is refused with the fix."""
    with pytest.raises(infraboot.ConfigError, match=r"lifespan\(\['redis'\]\)"):
        ib.lifespan("redis")
