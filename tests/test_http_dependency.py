"""HTTP dependencies against a real local HTTP server, with faults injected through TcpProxy."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from infraboot import ConfigError, HttpDependency, HttpSettings, StartupError, SystemInitializer

from .servers import TcpProxy

CANARY = "canary-pw-http-91c"


class Api:
    """A local HTTP server whose /healthz answers ``status``; every other path answers 200 ``ok``."""

    def __init__(self) -> None:
        self.status = 200
        self.hits: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.hits.append(self.path)
                code = api.status if self.path == "/healthz" or api.status >= 500 else 200
                body = b"ok"
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[Api]:
    server = Api()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def api_proxy(api: Api) -> Iterator[TcpProxy]:
    proxy = TcpProxy(api.port)
    try:
        yield proxy
    finally:
        proxy.close()


def dependency(proxy: TcpProxy, **settings: object) -> HttpDependency:
    return HttpDependency("auth", settings={"url": f"http://{proxy.url_host}/", **settings})


async def test_an_active_dependency_is_ready_when_its_health_url_answers(api: Api, api_proxy: TcpProxy) -> None:
    """Start GETs the health path; the shared client has the base URL; details say 'active'."""
    async with SystemInitializer([dependency(api_proxy, health_path="/healthz")]) as system:
        client = system.get("auth")
        assert 200 == (await client.get("/v1/me")).status_code
        details = (await system.health()).to_dict(details=True)
    assert ["/healthz", "/v1/me"] == api.hits[:2]
    assert "'mode': 'active'" in str(details)


async def test_an_optional_dependency_whose_health_url_fails_degrades(api: Api, api_proxy: TcpProxy) -> None:
    """A 503 from the health URL: optional by default, so startup is degraded, code 'unavailable'."""
    api.status = 503
    system = SystemInitializer([dependency(api_proxy, health_path="/healthz", max_retries=0)])
    report = await system.initialize_all()
    await system.shutdown()
    assert ("degraded", "unavailable") == (report.status, report.components["auth"].error_code)


async def test_a_blackholed_dependency_degrades_at_the_connect_timeout(api_proxy: TcpProxy) -> None:
    """Accepted but silent: the active start gives up at connect_timeout (0.5 s)."""
    api_proxy.set_mode("blackhole")
    system = SystemInitializer([dependency(api_proxy, health_path="/healthz", connect_timeout=0.5)])
    t0 = time.monotonic()
    report = await system.initialize_all()
    elapsed = time.monotonic() - t0
    await system.shutdown()
    assert ("degraded", "timeout") == (report.status, report.components["auth"].error_code)
    assert elapsed < 0.5 + 1.0


async def test_a_passive_dependency_starts_without_io_and_follows_the_requests(api: Api, api_proxy: TcpProxy) -> None:
    """No health path: no request at start; a refused request fails the check, the next answer clears it."""
    component = dependency(api_proxy, request_timeout=1)
    async with SystemInitializer([component], check_interval=None) as system:
        client = system.get("auth")
        assert (0, []) == (api_proxy.accepted, api.hits)
        await component.check(client)
        api_proxy.set_mode("refuse")
        with pytest.raises(httpx.ConnectError):
            await client.get("/v1/me")
        with pytest.raises(ConnectionError, match="the last request to it failed"):
            await component.check(client)
        api_proxy.set_mode("forward")
        assert 200 == (await client.get("/v1/me")).status_code
        await component.check(client)


async def test_a_passive_dependency_counts_a_5xx(api: Api, api_proxy: TcpProxy) -> None:
    """A 500 answer counts as down (count_5xx, the default); once it passes the window it may be tried again."""
    component = dependency(api_proxy, passive_window=0.2)
    async with SystemInitializer([component], check_interval=None) as system:
        client = system.get("auth")
        api.status = 500
        assert 500 == (await client.get("/v1/me")).status_code
        with pytest.raises(ConnectionError, match=r"HTTP 500"):
            await component.check(client)
        await asyncio.sleep(0.25)  # the window itself is what is tested: its time has to pass
        await component.check(client)


async def test_a_reset_connection_fails_a_request_and_counts(api_proxy: TcpProxy) -> None:
    """A reset is a transport error the caller sees, and readiness follows it."""
    component = dependency(api_proxy)
    async with SystemInitializer([component], check_interval=None) as system:
        client = system.get("auth")
        api_proxy.set_mode("reset")
        with pytest.raises(httpx.TransportError):
            await client.get("/v1/me")
        with pytest.raises(ConnectionError):
            await component.check(client)


async def test_an_active_dependency_comes_back_after_a_restart(api: Api, api_proxy: TcpProxy) -> None:
    """Refused at startup (degraded); once the server is back, it is picked up in the background."""
    api_proxy.set_mode("refuse")
    component = dependency(api_proxy, health_path="/healthz", connect_timeout=0.5)
    system = SystemInitializer([component], check_interval=0.1)
    assert "degraded" == (await system.initialize_all()).status
    api_proxy.set_mode("forward")
    t0 = time.monotonic()
    assert await system.wait_ready(["auth"], timeout=30)
    back_after = time.monotonic() - t0
    await system.shutdown()
    assert back_after < 15


async def test_a_required_dependency_names_the_url_without_its_password(api_proxy: TcpProxy) -> None:
    """AUTH_REQUIRED=true: startup fails, naming the URL redacted."""
    api_proxy.set_mode("refuse")
    url = f"http://svc:{CANARY}@{api_proxy.url_host}/"
    settings = {"url": url, "required": True, "health_path": "/healthz", "max_retries": 0}
    with pytest.raises(StartupError) as info:
        await SystemInitializer([HttpDependency("auth", settings=settings)]).initialize_all()
    assert CANARY not in str(info.value)
    assert f"http://svc:***@{api_proxy.url_host}/" in str(info.value)


def test_settings_are_checked_before_any_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each bad field is a line naming AUTH_* and the fix."""
    monkeypatch.setenv("AUTH_URL", f"ftp://u:{CANARY}@host/")
    monkeypatch.setenv("AUTH_HEALTH_PATH", "healthz")
    monkeypatch.setenv("AUTH_CLIENT_OPTIONS", '{"timeout": 3}')
    problems = HttpDependency("auth").settings_problems()
    text = "\n".join(problems)
    assert "unknown scheme 'ftp'; use http:// or https://" in text
    assert "AUTH_HEALTH_PATH='healthz': a path on the dependency's URL starts with '/'" in text
    assert "'timeout' is set by infraboot; use AUTH_REQUEST_TIMEOUT instead" in text
    assert CANARY not in text
    with pytest.raises(ConfigError):
        HttpDependency("auth").configure()


def test_an_http_settings_object_in_code() -> None:
    """HttpSettings given in code: optional by default, timeouts taken from it."""
    component = HttpDependency("payments", settings=HttpSettings(url="https://pay.example.com/", connect_timeout=2))
    assert (False, 2.0) == (component.required, component.timeout)


def test_a_transport_error_is_an_outage_for_the_web_adapters() -> None:
    """httpx's connect and read errors make a 503 (is_outage); an HTTP status error does not."""
    from infraboot._engine._traffic import is_outage

    request = httpx.Request("GET", "http://x/")
    assert is_outage(httpx.ConnectError("refused", request=request))
    assert is_outage(httpx.ReadTimeout("silent", request=request))
    assert not is_outage(httpx.HTTPStatusError("404", request=request, response=httpx.Response(404)))


async def test_passive_readiness_follows_the_requests_through_the_monitor(api: Api, api_proxy: TcpProxy) -> None:
    """With the monitor running: a refused request turns the dependency's health to fail, a good one back to pass."""
    component = dependency(api_proxy, request_timeout=1)
    async with SystemInitializer([component], check_interval=0.05, check_ttl=0.01, failure_threshold=1) as system:
        client = system.get("auth")

        async def status() -> str:
            report = (await system.health()).to_dict()
            return str(report["checks"]["auth:responseTime"][0]["status"])

        assert "pass" == await status()
        api_proxy.set_mode("refuse")
        with pytest.raises(httpx.ConnectError):
            await client.get("/v1/me")
        assert "pass" != await status()
        api_proxy.set_mode("forward")
        assert 200 == (await client.get("/v1/me")).status_code
        t0 = time.monotonic()
        while await status() != "pass" and time.monotonic() - t0 < 10:
            await asyncio.sleep(0.05)
        assert "pass" == await status()
