"""Outages as a request sees them, under a real uvicorn: 503 with Retry-After at once, readiness right after."""

from __future__ import annotations

import time

import pytest

httpx = pytest.importorskip("httpx")

from tests.integrations.conftest import APPS, Serve, uvicorn_args
from tests.servers import TcpProxy

pytestmark = pytest.mark.real

OP_TIMEOUT = 1.0  # REDIS_SOCKET_TIMEOUT, DATABASE_STATEMENT_TIMEOUT, both connect timeouts
SLACK = 4.0  # a loaded machine


def uvicorn(port: int) -> list[str]:
    return uvicorn_args("outage_app:app", port, "--log-level", "warning", app_dir=APPS)


@pytest.mark.parametrize("mode", ["blackhole", "refuse", "reset"])
@pytest.mark.parametrize("path", ["/redis", "/db"])
async def test_an_outage_answers_503_within_the_operation_timeout_and_readiness_fails_after_the_threshold(
    serve: Serve,
    port: int,
    redis_proxy: TcpProxy,
    database_proxy: TcpProxy,
    redis_url: str,
    database_url: str,
    path: str,
    mode: str,
) -> None:
    """A blackholed, refusing or resetting server: every request 503 + Retry-After, /readyz 503 after 3 requests."""
    app = serve(
        uvicorn(port),
        port=port,
        REDIS_URL=redis_proxy.url_for(redis_url),
        DATABASE_URL=database_proxy.url_for(database_url),
        REDIS_SOCKET_TIMEOUT=str(OP_TIMEOUT),
        REDIS_CONNECT_TIMEOUT=str(OP_TIMEOUT),
        DATABASE_STATEMENT_TIMEOUT=str(OP_TIMEOUT),
        DATABASE_CONNECT_TIMEOUT=str(OP_TIMEOUT),
        INFRABOOT_FAILURE_THRESHOLD="3",
        INFRABOOT_CHECK_INTERVAL="60",  # no probe in the test's time: live traffic alone decides
    )
    app.wait_listening()
    proxy = redis_proxy if path == "/redis" else database_proxy
    # Keep-alive on: a 503 the server will close the connection after says so (Connection: close), so the
    # client's next request never lands in a closing connection (a reset instead of an answer).
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        assert 200 == (await client.get("/readyz")).status_code, app.output[-3000:]
        assert 200 == (await client.get(path)).status_code, app.output[-3000:]
        proxy.set_mode(mode, drop_existing=mode != "blackhole")  # a blackhole as a partition: the line goes silent
        t0 = time.perf_counter()
        answers: list[tuple[int, str | None, float]] = []
        ready = 200
        while ready == 200 and len(answers) < 6:
            start = time.perf_counter()
            response = await client.get(path)
            answers.append((response.status_code, response.headers.get("retry-after"), time.perf_counter() - start))
            ready = (await client.get("/readyz")).status_code
        unready_after = time.perf_counter() - t0
        proxy.set_mode("forward")
    app.terminate()
    app.wait(timeout=30)
    figures = ", ".join(f"{s} in {d:.3f}s" for s, _, d in answers)
    print(f"\n{path} {mode}: {figures}; /readyz 503 after {unready_after:.3f}s")  # the figures in docs/performance.md

    assert [(503, "5")] * len(answers) == [(s, r) for s, r, _ in answers]
    assert len(answers) <= 3
    assert 503 == ready
    # The worst first request: the Postgres pre-ping on a silent connection, then a connect into the blackhole.
    assert answers[0][2] < 2 * OP_TIMEOUT + SLACK


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("redis_connection", (503, "5")),
        ("redis_timeout", (503, "5")),
        ("refused", (503, "5")),
        ("timeout", (503, "5")),
        ("disconnect", (503, "5")),
        ("value", (500, None)),
        ("file", (500, None)),
        ("response", (500, None)),
    ],
)
async def test_the_exception_handlers_answer_503_for_an_outage_and_500_for_a_bug(
    error: str, expected: tuple[int, str | None]
) -> None:
    """A driver's connection error or timeout escaping a handler is 503 + Retry-After; any other error a 500."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import OperationalError
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    import infraboot.starlette

    errors: dict[str, Exception] = {
        "redis_connection": RedisConnectionError("Error 111 connecting to 127.0.0.1:6379"),
        "redis_timeout": RedisTimeoutError("Timeout reading from 127.0.0.1:6379"),
        "refused": ConnectionRefusedError("Connect call failed"),
        "timeout": TimeoutError(),
        "disconnect": OperationalError("SELECT 1", {}, Exception("gone"), connection_invalidated=True),
        "value": ValueError("a bug"),
        "file": FileNotFoundError("templates/x.html"),
        "response": ResponseError("WRONGTYPE"),
    }

    async def handler(request: Request) -> Response:
        raise errors[error]

    app = Starlette(routes=[Route("/", handler)], exception_handlers=infraboot.starlette.exception_handlers)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/")

    assert expected == (response.status_code, response.headers.get("retry-after"))


async def test_an_answer_after_which_the_server_closes_the_connection_says_connection_close() -> None:
    """A driver outage or a bug (re-raised by Starlette, so the server drops the line) answers Connection: close."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    import infraboot.starlette

    async def outage(request: Request) -> Response:
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379")

    async def bug(request: Request) -> Response:
        raise ValueError("a bug")

    app = Starlette(
        routes=[Route("/outage", outage), Route("/bug", bug)], exception_handlers=infraboot.starlette.exception_handlers
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answers = [await client.get("/outage"), await client.get("/bug")]

    assert [(503, "close"), (500, "close")] == [(r.status_code, r.headers.get("connection")) for r in answers]
