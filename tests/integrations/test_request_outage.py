"""Redis dying inside a request, before infraboot notices: a clean 503, one log line, no traceback, no raise.

Real Redis behind a proxy that resets every connection; the failure threshold is high, so the request meets
redis-py's own ``ConnectionError`` (not infraboot's ``ComponentUnavailableError``).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi import FastAPI

import infraboot
import infraboot.fastapi as ib
import infraboot.starlette
import infraboot.testing
from tests.integrations.conftest import APPS, Serve, uvicorn_args
from tests.servers import TcpProxy

pytestmark = pytest.mark.real


def _system(url: str) -> infraboot.SystemInitializer:
    settings = {"url": url, "socket_timeout": 1.0, "connect_timeout": 1.0}
    return infraboot.SystemInitializer([infraboot.RedisComponent("redis", settings=settings)], failure_threshold=100)


def _fastapi_app(system: infraboot.SystemInitializer) -> Any:
    app = FastAPI(lifespan=ib.lifespan(system=system), exception_handlers=ib.exception_handlers)

    @app.get("/count")
    async def count(redis: ib.RedisClient) -> dict[str, Any]:
        return {"n": await redis.incr("ib:friction:outage")}

    @app.get("/bug")
    async def bug() -> dict[str, Any]:
        raise ValueError("a bug")

    return app


def _starlette_app(system: infraboot.SystemInitializer) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def count(request: Request) -> JSONResponse:
        return JSONResponse({"n": await infraboot.starlette.resource(request, "redis").incr("ib:friction:outage")})

    async def bug(request: Request) -> JSONResponse:
        raise ValueError("a bug")

    return Starlette(
        lifespan=infraboot.starlette.lifespan(system=system),
        routes=[Route("/count", count), Route("/bug", bug)],
        exception_handlers=infraboot.starlette.exception_handlers,
    )


@pytest.mark.parametrize("framework", ["fastapi", "starlette"])
async def test_redis_dying_inside_a_request_is_a_quiet_503_in_process(
    redis_proxy: TcpProxy, redis_url: str, framework: str, caplog: pytest.LogCaptureFixture
) -> None:
    """httpx's ASGITransport (raise_app_exceptions left on) gets the 503 + Retry-After; one log line, no exc_info."""
    system = _system(redis_proxy.url_for(redis_url))
    app = _fastapi_app(system) if framework == "fastapi" else _starlette_app(system)
    async with infraboot.testing.lifespan(app):
        transport = httpx.ASGITransport(app=app)  # raises what the app re-raises
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert 200 == (await client.get("/count")).status_code
            redis_proxy.set_mode("refuse", drop_existing=True)
            caplog.clear()
            with caplog.at_level(logging.DEBUG):
                response = await client.get("/count")
            redis_proxy.set_mode("forward")
            with pytest.raises(ValueError, match="a bug"):  # a bug still reaches the test (and the server's log)
                await client.get("/bug")

    assert (503, "5") == (response.status_code, response.headers.get("retry-after"))
    assert "unavailable" in response.json()["detail"]
    assert response.headers.get("connection") != "close"
    ours = [r for r in caplog.records if getattr(r, "event", None) == "request_outage"]
    assert 1 == len(ours), [r.getMessage() for r in caplog.records]
    assert "path=/count" in ours[0].getMessage()
    assert "ConnectionError" in ours[0].getMessage()
    assert [] == [r.getMessage() for r in caplog.records if r.exc_info]


async def test_redis_dying_inside_a_request_under_uvicorn_logs_one_line_and_no_traceback(
    serve: Serve, port: int, redis_proxy: TcpProxy, redis_url: str, database_url: str
) -> None:
    """Under a real uvicorn: 503 + Retry-After, the connection kept, one request_outage line, no traceback."""
    app = serve(
        uvicorn_args("outage_app:app", port, "--log-level", "warning", app_dir=APPS),
        port=port,
        REDIS_URL=redis_proxy.url_for(redis_url),
        DATABASE_URL=database_url,
        REDIS_SOCKET_TIMEOUT="1",
        REDIS_CONNECT_TIMEOUT="1",
        INFRABOOT_FAILURE_THRESHOLD="100",
        INFRABOOT_CHECK_INTERVAL="60",
    )
    app.wait_listening()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        assert 200 == (await client.get("/redis")).status_code, app.output[-3000:]
        redis_proxy.set_mode("refuse", drop_existing=True)
        response = await client.get("/redis")
        redis_proxy.set_mode("forward")
    app.terminate()
    app.wait(timeout=30)
    output = app.output

    assert (503, "5") == (response.status_code, response.headers.get("retry-after")), output[-3000:]
    assert response.headers.get("connection") != "close"
    assert "Traceback" not in output, output[-3000:]
    assert 1 == output.count("request_outage"), output[-3000:]


async def test_a_driver_error_that_is_no_outage_stays_a_500_and_an_own_handler_is_kept() -> None:
    """Keyed on the drivers' classes, the handler answers outages only; an entry of the app's own wins."""
    from sqlalchemy.exc import IntegrityError, OperationalError
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    from infraboot._web._asgi import adopt_driver_outages

    errors = {
        "/duplicate": IntegrityError("INSERT", {}, Exception("duplicate key")),
        "/gone": OperationalError("SELECT 1", {}, Exception("gone"), connection_invalidated=True),
    }

    async def handler(request: Request) -> Response:
        raise errors[request.url.path]

    async def teapot(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("mine", status_code=418)

    plain = Starlette(
        routes=[Route(path, handler) for path in errors], exception_handlers=infraboot.starlette.exception_handlers
    )
    own = Starlette(
        routes=[Route(path, handler) for path in errors],
        exception_handlers={**infraboot.starlette.exception_handlers, IntegrityError.__mro__[1]: teapot},
    )
    answers: list[int] = []
    for app in (plain, own):
        async with infraboot.testing.lifespan(app):  # builds the middleware stack
            adopt_driver_outages(app)  # what ib.lifespan does once the components are up
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                answers += [(await client.get(path)).status_code for path in errors]
    assert [500, 503, 418, 418] == answers
