"""The rabbitmq component against the real RabbitMQ, with faults injected through TcpProxy."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest

import infraboot
from infraboot import ConfigError, RabbitMQComponent, RabbitMQSettings, StartupError, SystemInitializer

from .conftest import _server_or_skip
from .servers import TcpProxy

pytestmark = pytest.mark.real

CANARY = "canary-pw-7f3a"


@pytest.fixture(scope="session")
def real_rabbitmq() -> tuple[str, str, int]:
    return _server_or_skip("INFRABOOT_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/", 5672, "RabbitMQ")


@pytest.fixture
def rabbitmq_proxy(real_rabbitmq: tuple[str, str, int]) -> Iterator[TcpProxy]:
    proxy = TcpProxy(real_rabbitmq[2], target_host=real_rabbitmq[1])
    try:
        yield proxy
    finally:
        proxy.close()


def via(proxy: TcpProxy, secret: str | None = None) -> str:
    return f"amqp://guest:{secret or 'guest'}@{proxy.url_host}/"


async def test_publishes_and_consumes_through_the_real_broker(real_rabbitmq: tuple[str, str, int]) -> None:
    """Start connects and passes the passive declare; a published message reaches a consumer; stop closes."""
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def handler(message: object) -> None:
        async with message.process():  # type: ignore[attr-defined]
            await got.put(message.body)  # type: ignore[attr-defined]

    component = RabbitMQComponent(settings=RabbitMQSettings(url=real_rabbitmq[0]))
    async with SystemInitializer([component]) as system:
        broker = system.get("rabbitmq")
        await broker.consume("infraboot-test-roundtrip", handler, auto_delete=True)
        await broker.publish(b"hello", "infraboot-test-roundtrip")
        assert b"hello" == await asyncio.wait_for(got.get(), 10)
        details = (await system.health()).to_dict(details=True)
    assert broker.connection.is_closed
    text = str(details)
    assert "'consumers': 1" in text
    assert "'connected': True" in text


async def test_a_bad_setting_is_refused_before_any_io_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every bad field is one line naming the variable and the fix; the password never shows."""
    monkeypatch.setenv("RABBITMQ_URL", f"amqp://guest:{CANARY}@127.0.0.1:5672/?heartbeat=5")
    monkeypatch.setenv("RABBITMQ_CHANNEL_POOL_SIZE", "0")
    monkeypatch.setenv("RABBITMQ_CONNECTION_OPTIONS", '{"timeout": 3}')
    with pytest.raises(ConfigError) as info:
        await SystemInitializer([RabbitMQComponent()]).initialize_all()
    message = str(info.value)
    assert "heartbeat is set by infraboot; remove it from the URL and set RABBITMQ_HEARTBEAT=60" in message
    assert "RABBITMQ_CHANNEL_POOL_SIZE=0" in message
    assert "'timeout' is set by infraboot; use RABBITMQ_CONNECT_TIMEOUT instead" in message
    assert CANARY not in message


def test_a_url_of_another_scheme_names_the_right_one() -> None:
    """A redis:// URL in RABBITMQ_URL says which schemes are meant."""
    problems = RabbitMQComponent().settings_problems({"url": "redis://127.0.0.1:6379"})
    expected = "url=redis://127.0.0.1:6379: unknown scheme 'redis'; use amqp:// or amqps://, e.g. amqp://USER:"
    assert [expected] == [p[: len(expected)] for p in problems]


@pytest.mark.parametrize(("mode", "codes"), [("refuse", {"refused"}), ("reset", {"reset", "connection"})])
async def test_an_unreachable_optional_broker_degrades_in_time(
    rabbitmq_proxy: TcpProxy, mode: str, codes: set[str]
) -> None:
    """Refused or reset: the optional broker is reported with its code within its connect timeout."""
    rabbitmq_proxy.set_mode(mode)  # type: ignore[arg-type]
    settings = RabbitMQSettings(url=via(rabbitmq_proxy), required=False, connect_timeout=0.5)
    system = SystemInitializer([RabbitMQComponent(settings=settings)])
    t0 = time.monotonic()
    report = await system.initialize_all()
    elapsed = time.monotonic() - t0
    await system.shutdown()
    assert "degraded" == report.status
    assert report.components["rabbitmq"].error_code in codes
    assert elapsed < 0.5 + 1.0


async def test_a_blackholed_broker_degrades_at_the_connect_timeout(rabbitmq_proxy: TcpProxy) -> None:
    """Accepted but silent: the start gives up at connect_timeout (0.5 s) and nothing is left running."""
    rabbitmq_proxy.set_mode("blackhole")
    settings = RabbitMQSettings(url=via(rabbitmq_proxy), required=False, connect_timeout=0.5)
    system = SystemInitializer([RabbitMQComponent(settings=settings)])
    t0 = time.monotonic()
    report = await system.initialize_all()
    elapsed = time.monotonic() - t0
    await system.shutdown()
    assert ("degraded", "timeout") == (report.status, report.components["rabbitmq"].error_code)
    assert elapsed < 0.5 + 1.0


async def test_a_wrong_password_is_one_attempt_and_never_printed(
    rabbitmq_proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """ACCESS_REFUSED cannot heal by waiting: code 'auth', one attempt, the canary nowhere."""
    caplog.set_level(logging.DEBUG)
    settings = RabbitMQSettings(url=via(rabbitmq_proxy, CANARY), max_retries=3)
    with pytest.raises(StartupError) as info:
        await SystemInitializer([RabbitMQComponent(settings=settings)]).initialize_all()
    result = info.value.report.components["rabbitmq"]
    assert ("auth", 1) == (result.error_code, result.attempts)
    assert CANARY not in str(info.value)
    assert CANARY not in caplog.text
    assert f"at amqp://***:***@{rabbitmq_proxy.url_host}/ failed after 1 attempt (auth" in str(info.value)
    assert "check the user and password in url (amqp://USER:PASSWORD@HOST:5672/" in str(info.value)  # the fix


async def test_an_unknown_virtual_host_names_the_fix(real_rabbitmq: tuple[str, str, int]) -> None:
    """The broker closes the connection at open: the message names the vhost and how to create it."""
    url = real_rabbitmq[0].rstrip("/") + "/no-such-vhost-infraboot"
    with pytest.raises(StartupError) as info:
        await SystemInitializer([RabbitMQComponent(settings=RabbitMQSettings(url=url))]).initialize_all()
    result = info.value.report.components["rabbitmq"]
    assert ("not_allowed", 1) == (result.error_code, result.attempts)
    assert "rabbitmqctl add_vhost" in str(info.value)


async def test_consumers_are_restored_after_the_broker_comes_back(rabbitmq_proxy: TcpProxy) -> None:
    """aio-pika#231: the connection is cut and refused, then restored; the consumer gets the next message."""
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def handler(message: object) -> None:
        async with message.process():  # type: ignore[attr-defined]
            await got.put(message.body)  # type: ignore[attr-defined]

    settings = RabbitMQSettings(url=via(rabbitmq_proxy), reconnect_interval=0.2, check_timeout=1)
    async with SystemInitializer([RabbitMQComponent(settings=settings)], check_interval=None) as system:
        broker = system.get("rabbitmq")
        await broker.consume("infraboot-test-restore", handler, auto_delete=False)
        try:
            rabbitmq_proxy.set_mode("refuse")  # drops the live connection: a restart, as the client sees it
            with pytest.raises(ConnectionError):
                await broker.ping()
            await asyncio.sleep(0.5)  # a few refused reconnects
            rabbitmq_proxy.set_mode("forward")
            t0 = time.monotonic()
            while not broker.connected and time.monotonic() - t0 < 10:
                await asyncio.sleep(0.02)
            reconnected = time.monotonic() - t0
            await broker.ping()
            await broker.publish(b"after", "infraboot-test-restore")
            assert b"after" == await asyncio.wait_for(got.get(), 10)
            assert 1 <= broker.reconnects
            assert reconnected < 2.0
        finally:
            async with broker.channel() as channel:
                await channel.queue_delete("infraboot-test-restore")


async def test_a_stuck_connection_fails_readiness_then_recovers_with_its_channels(rabbitmq_proxy: TcpProxy) -> None:
    """aio-pika#577: a silent line is found stuck by the heartbeat; after it the pool's channels work again."""
    settings = RabbitMQSettings(url=via(rabbitmq_proxy), heartbeat=1, reconnect_interval=0.2, check_timeout=0.5)
    async with SystemInitializer([RabbitMQComponent(settings=settings)], check_interval=None) as system:
        broker = system.get("rabbitmq")
        async with broker.channel():
            pass  # one pooled channel, idle through the outage
        rabbitmq_proxy.set_mode("blackhole", drop_existing=False)
        t0 = time.monotonic()
        while broker.connected and time.monotonic() - t0 < 15:
            await asyncio.sleep(0.05)
        stuck_after = time.monotonic() - t0
        with pytest.raises((ConnectionError, TimeoutError)):
            await broker.ping()
        rabbitmq_proxy.set_mode("forward")
        t0 = time.monotonic()
        while not broker.connected and time.monotonic() - t0 < 10:
            await asyncio.sleep(0.02)
        await broker.ping()
        await broker.publish(b"x", "infraboot-no-such-queue", mandatory=False)
    assert stuck_after < 5.0


async def test_get_message_broker_on_the_default_system(
    real_rabbitmq: tuple[str, str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registered on the default system and configured from RABBITMQ_URL, the accessor returns the broker."""
    monkeypatch.setenv("RABBITMQ_URL", real_rabbitmq[0])
    infraboot.register(RabbitMQComponent())
    try:
        await infraboot.ensure_initialized(["rabbitmq"])
        assert infraboot.get_message_broker().connected
    finally:
        await infraboot.shutdown()


def test_import_infraboot_loads_no_broker_driver() -> None:
    """aio_pika stays out of ``import infraboot`` and of the settings module's import."""
    import subprocess
    import sys

    code = "import sys, infraboot; infraboot.RabbitMQSettings; print('aio_pika' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "False" == out.strip()


async def test_the_fastapi_broker_dependency(rabbitmq_proxy: TcpProxy) -> None:
    """``ib.Broker`` hands out the broker while it is up, and a 503 with Retry-After while it is not."""
    from fastapi import HTTPException

    import infraboot.fastapi as ib

    settings = RabbitMQSettings(url=via(rabbitmq_proxy), required=False, connect_timeout=0.5, max_retries=0)
    async with SystemInitializer([RabbitMQComponent(settings=settings)], check_interval=None) as system:
        assert system.get("rabbitmq") is ib.message_broker(system)
    rabbitmq_proxy.set_mode("refuse")
    async with SystemInitializer([RabbitMQComponent(settings=settings)], check_interval=None) as down:
        with pytest.raises(HTTPException) as info:
            ib.message_broker(down)
    assert (503, "rabbitmq is unavailable; try again later") == (info.value.status_code, info.value.detail)
    assert info.value.headers is not None
    assert "Retry-After" in info.value.headers
