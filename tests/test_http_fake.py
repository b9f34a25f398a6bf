"""A fake HTTP dependency for tests: ``httpx.MockTransport`` given through ``client_options``."""

from __future__ import annotations

import httpx
import pytest

import infraboot
from infraboot import ConfigError


def dependency(handler: object, **settings: object) -> infraboot.HttpDependency:
    options = {"transport": httpx.MockTransport(handler)}  # type: ignore[arg-type]
    return infraboot.HttpDependency(
        "auth", settings={"url": "https://auth.example.com/", "client_options": options, **settings}
    )


async def test_requests_reach_the_fake_with_the_base_url_and_passive_readiness_follows_it() -> None:
    """The handler sees each request on the base URL; its 5xx makes readiness fail, its 2xx brings it back."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(503 if request.url.path == "/down" else 200, json={"ok": True})

    system = infraboot.SystemInitializer()
    system.register(dependency(handler))
    try:
        await system.ensure_initialized(["auth"])
        client: httpx.AsyncClient = system.get("auth")
        first = await client.get("/v1/me")
        statuses = [(await system.health(fresh=True)).components["auth"].status]
        await client.get("/down")
        statuses.append((await system.health(fresh=True)).components["auth"].status)
        await client.get("/v1/me")
        statuses.append((await system.health(fresh=True)).components["auth"].status)
    finally:
        await system.shutdown()
    assert (200, {"ok": True}) == (first.status_code, first.json())
    assert ["https://auth.example.com/v1/me", "https://auth.example.com/down", "https://auth.example.com/v1/me"] == seen
    assert ["pass", "warn", "pass"] == statuses


async def test_an_active_health_probe_goes_to_the_fake() -> None:
    """With a health path the start probes it through the fake: a 500 there fails a required dependency's start."""
    probes: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        probes.append(request.url.path)
        return httpx.Response(500)

    system = infraboot.SystemInitializer()
    system.register(dependency(handler, health_path="/healthz", required=True, max_retries=0))
    try:
        with pytest.raises(infraboot.StartupError) as caught:
            await system.ensure_initialized(["auth"])
    finally:
        await system.shutdown()
    assert (True, True) == ("/healthz" in probes, "answered 500" in str(caught.value)), str(caught.value)


async def test_a_transport_that_is_not_one_is_refused_before_any_io() -> None:
    """``transport`` from JSON (a string) is a configuration error naming the field and the fix."""
    system = infraboot.SystemInitializer()
    system.register(
        infraboot.HttpDependency(
            "auth", settings={"url": "https://auth.example.com/", "client_options": {"transport": "mock"}}
        )
    )
    try:
        with pytest.raises(ConfigError) as caught:
            await system.ensure_initialized(["auth"])
    finally:
        await system.shutdown()
    message = str(caught.value)
    assert ("client_options" in message, "httpx.MockTransport" in message) == (True, True), message
