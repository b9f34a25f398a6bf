"""Who may drain: POST /drainz from loopback or with the token; GET and HEAD never drain; DELETE undoes it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette

import infraboot.fastapi as ib
import infraboot.starlette as ibs
from infraboot import ConfigError, SystemInitializer
from infraboot._web._asgi import is_loopback

TOKEN = "s3cret-drain-token-canary-0123456789"
STRANGER = ("203.0.113.7", 40000)  # a peer on another host (TEST-NET-3)
LOOPBACK = ("127.0.0.1", 40000)


def middleware_app(system: SystemInitializer) -> object:
    return ib.ProbeMiddleware(FastAPI(), system=system)


def router_app(system: SystemInitializer) -> object:
    app = FastAPI()
    app.include_router(ib.health_router(system))
    return app


def routes_app(system: SystemInitializer) -> object:
    return Starlette(routes=ibs.health_routes(system))


APPS = [middleware_app, router_app, routes_app]


@pytest.fixture
async def system() -> AsyncIterator[SystemInitializer]:
    system = SystemInitializer(check_interval=None, drain_delay=0.05)
    await system.initialize_all()
    yield system
    await system.shutdown()


def client(app: object, peer: tuple[str, int] = LOOPBACK) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=peer)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://pod:8000")


@pytest.mark.parametrize("make_app", APPS)
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT"])
async def test_a_safe_or_unknown_method_never_drains(
    system: SystemInitializer, make_app: Callable[[SystemInitializer], object], method: str
) -> None:
    """GET, HEAD (a probe pointed at it by mistake, a crawler) and PUT answer 405 with Allow and leave readiness on."""
    async with client(make_app(system)) as c:
        answer = await c.request(method, "/drainz")
        ready = await c.get("/readyz")

    assert 405 == answer.status_code
    assert "POST, DELETE" == answer.headers["allow"]
    assert (False, 200) == (system.drainer.active, ready.status_code)


@pytest.mark.parametrize("make_app", APPS)
async def test_a_post_from_another_host_is_refused_without_a_token(
    system: SystemInitializer, make_app: Callable[[SystemInitializer], object]
) -> None:
    """No drain_token: a POST from a non-loopback peer is 403 and names the fix; readiness stays on."""
    async with client(make_app(system), STRANGER) as c:
        answer = await c.post("/drainz")
        undo = await c.delete("/drainz")

    assert (403, 403) == (answer.status_code, undo.status_code)
    assert "INFRABOOT_DRAIN_TOKEN" in answer.json()["detail"]
    assert not system.drainer.active


@pytest.mark.parametrize("make_app", APPS)
async def test_a_post_from_loopback_drains_without_a_token(
    system: SystemInitializer, make_app: Callable[[SystemInitializer], object]
) -> None:
    """No drain_token: a preStop `curl -X POST 127.0.0.1:8000/drainz` (loopback) drains; readiness fails."""
    async with client(make_app(system)) as c:
        answer = await c.post("/drainz")
        ready = await c.get("/readyz")

    assert (200, "draining") == (answer.status_code, answer.json()["status"])
    assert (503, "draining") == (ready.status_code, ready.json()["output"])


@pytest.mark.parametrize("make_app", APPS)
@pytest.mark.parametrize(
    ("peer", "authorization"),
    [
        (STRANGER, None),
        (STRANGER, "Bearer wrong-token-of-the-right-length"),
        (STRANGER, f"Basic {TOKEN}"),
        (STRANGER, f"Bearer {TOKEN}x"),
        (LOOPBACK, None),  # with a token set, loopback needs it too (a sidecar proxy is loopback)
        (LOOPBACK, f"Bearer {TOKEN[:-1]}"),
    ],
)
async def test_a_missing_or_wrong_token_is_401_from_anywhere(
    system: SystemInitializer,
    make_app: Callable[[SystemInitializer], object],
    peer: tuple[str, int],
    authorization: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """drain_token set: without the right bearer token a POST is 401 + WWW-Authenticate, logged, token unsaid."""
    system.configure(drain_token=TOKEN)
    headers = {} if authorization is None else {"authorization": authorization}
    with caplog.at_level(logging.DEBUG):
        async with client(make_app(system), peer) as c:
            answer = await c.post("/drainz", headers=headers)

    assert (401, "Bearer") == (answer.status_code, answer.headers["www-authenticate"])
    assert not system.drainer.active
    assert 1 == sum("drain_refused" in r.getMessage() for r in caplog.records)
    assert TOKEN[:12] not in caplog.text + answer.text + repr(system)


@pytest.mark.parametrize("make_app", APPS)
async def test_the_right_token_drains_from_another_host(
    system: SystemInitializer, make_app: Callable[[SystemInitializer], object], caplog: pytest.LogCaptureFixture
) -> None:
    """drain_token set: a POST with Authorization: Bearer <token> drains from any peer; the token is never logged."""
    system.configure(drain_token=TOKEN)
    with caplog.at_level(logging.DEBUG):
        async with client(make_app(system), STRANGER) as c:
            answer = await c.post("/drainz", headers={"Authorization": f"bearer {TOKEN}"})

    assert (200, "draining") == (answer.status_code, answer.json()["status"])
    assert system.drainer.active
    assert TOKEN[:12] not in caplog.text


@pytest.mark.parametrize("make_app", APPS)
async def test_delete_undoes_a_drain_and_the_waiting_post_returns_at_once(
    system: SystemInitializer, make_app: Callable[[SystemInitializer], object]
) -> None:
    """DELETE /drainz: readiness passes again, the POST still waiting answers "resumed" long before its delay."""
    system.configure(drain_delay=30)
    async with client(make_app(system)) as c:
        post = asyncio.ensure_future(c.post("/drainz"))
        for _ in range(5000):
            if system.drainer.active:
                break
            await asyncio.sleep(0.001)
        draining = await c.get("/readyz")
        undo = await c.delete("/drainz")
        drained = await asyncio.wait_for(post, 10)
        ready = await c.get("/readyz")
        again = await c.delete("/drainz")

    assert 503 == draining.status_code
    assert (200, {"status": "serving", "undone": True}) == (undo.status_code, undo.json())
    assert (200, "resumed") == (drained.status_code, drained.json()["status"])
    assert 200 == ready.status_code
    assert {"status": "serving", "undone": False} == again.json()


async def test_undrain_turns_readiness_back_on_and_ends_every_waiting_drain() -> None:
    """system.undrain(): True when a drain was under way; both drain() calls return resumed, readiness passes."""
    system = SystemInitializer(check_interval=None, drain_delay=30)
    await system.initialize_all()
    first = asyncio.ensure_future(system.drain())
    second = asyncio.ensure_future(system.drain())
    await asyncio.sleep(0)
    undone = system.undrain()
    reports = await asyncio.wait_for(asyncio.gather(first, second), 10)
    ready = await system.readiness()
    not_draining = system.undrain()
    await system.shutdown()

    assert (True, False) == (undone, not_draining)
    assert [True, True] == [r.resumed for r in reports]
    assert "pass" == ready.status


async def test_a_drain_after_an_undrain_runs_its_full_delay_again() -> None:
    """Drain, undo, drain again: the second drain starts afresh and holds its delay."""
    system = SystemInitializer(check_interval=None, drain_delay=0.2)
    await system.initialize_all()
    first = asyncio.ensure_future(system.drain())
    await asyncio.sleep(0)
    system.undrain()
    await first
    second = await system.drain()
    await system.shutdown()

    assert (False, True) == (second.resumed, second.waited >= 0.2)


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        (("127.0.0.1", 1), True),
        (("127.8.9.10", 1), True),
        (("::1", 1), True),
        (("::ffff:127.0.0.1", 1), True),
        (None, True),  # a Unix socket: only this host can reach it
        (("testclient", 50000), True),  # Starlette's TestClient, in process
        (("10.0.0.8", 1), False),
        (("::ffff:10.0.0.8", 1), False),
        (("fd00::2", 1), False),
        (("localhost", 1), False),  # servers report addresses, never names: a name is not trusted
        (("", 0), False),
    ],
)
def test_loopback_is_the_loopback_addresses_and_nothing_else(peer: tuple[str, int] | None, expected: bool) -> None:
    """is_loopback: 127/8, ::1 (and its IPv4-mapped form), a Unix socket; every other peer is another host."""
    assert expected == is_loopback(peer)


@pytest.mark.parametrize("token", ["short", " " + TOKEN, 12345678901234567890])
def test_a_weak_drain_token_is_refused_without_echoing_it(token: object) -> None:
    """drain_token must be a string of at least 16 characters; the message names the setting, never the value."""
    with pytest.raises(ConfigError, match="drain_token") as caught:
        SystemInitializer(drain_token=token)  # type: ignore[arg-type]
    assert str(token).strip() not in str(caught.value)


def test_infraboot_drain_token_comes_from_the_environment_and_is_never_echoed() -> None:
    """INFRABOOT_DRAIN_TOKEN sets the default system's token; a short one names the variable, not the value."""
    from infraboot._front._default import settings_from_env

    assert {"drain_token": TOKEN} == settings_from_env({"INFRABOOT_DRAIN_TOKEN": TOKEN})
    with pytest.raises(ConfigError, match="INFRABOOT_DRAIN_TOKEN") as caught:
        settings_from_env({"INFRABOOT_DRAIN_TOKEN": "tiny-secret"})
    assert "tiny-secret" not in str(caught.value)
