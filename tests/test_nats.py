"""The nats component against real NATS servers, with faults injected through TcpProxy."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infraboot import ConfigError, NatsComponent, NatsSettings, StartupError, SystemInitializer

from .conftest import _server_or_skip
from .servers import TcpProxy, free_port, wait_for_port

pytestmark = pytest.mark.real

CANARY = "canary-pw-nats-5d1"


@pytest.fixture(scope="session")
def real_nats() -> tuple[str, str, int]:
    return _server_or_skip("INFRABOOT_TEST_NATS_URL", "nats://127.0.0.1:4222", 4222, "NATS")


@pytest.fixture
def nats_proxy(real_nats: tuple[str, str, int]) -> Iterator[TcpProxy]:
    proxy = TcpProxy(real_nats[2], target_host=real_nats[1])
    try:
        yield proxy
    finally:
        proxy.close()


class NatsServer:
    """A nats-server process owned by one test (JetStream on), restartable on the same port."""

    def __init__(self, workdir: Path, *, user: str | None = None, password: str | None = None) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.credentials = [] if user is None else ["--user", user, "--pass", password or ""]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("nats-server") or "nats-server"
        args = [binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.workdir), *self.credentials]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    if shutil.which("nats-server") is None:
        pytest.skip("no nats-server binary (apt-get install nats-server)")
    server = NatsServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def via(proxy: TcpProxy) -> str:
    return f"nats://{proxy.url_host}"


async def test_publishes_and_subscribes_through_the_real_server(real_nats: tuple[str, str, int]) -> None:
    """Start connects and flushes; a message reaches a subscriber; the JetStream context is there; stop drains."""
    async with SystemInitializer([NatsComponent(settings=NatsSettings(url=real_nats[0]))]) as system:
        conn = system.get("nats")
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def handler(msg: object) -> None:
            await got.put(msg.data)  # type: ignore[attr-defined]

        await conn.client.subscribe("infraboot.test", cb=handler)
        await conn.client.publish("infraboot.test", b"hello")
        assert b"hello" == await asyncio.wait_for(got.get(), 10)
        assert conn.jetstream is not None
        details = (await system.health()).to_dict(details=True)
    assert conn.client.is_closed
    assert "'connected': True" in str(details)


@pytest.mark.parametrize(("mode", "codes"), [("refuse", {"refused"}), ("reset", {"reset", "connection"})])
async def test_an_unreachable_optional_server_degrades_with_the_cause(
    nats_proxy: TcpProxy, mode: str, codes: set[str]
) -> None:
    """nats.py#645: its first connect keeps trying; infraboot ends it at connect_timeout with the real cause."""
    nats_proxy.set_mode(mode)  # type: ignore[arg-type]
    # One attempt: a retry started in the deadline's last moments would end as a timeout.
    settings = NatsSettings(url=via(nats_proxy), required=False, connect_timeout=0.5, max_retries=0)
    system = SystemInitializer([NatsComponent(settings=settings)])
    t0 = time.monotonic()
    report = await system.initialize_all()
    elapsed = time.monotonic() - t0
    await system.shutdown()
    assert "degraded" == report.status
    assert report.components["nats"].error_code in codes
    assert elapsed < 0.5 + 1.0


async def test_a_blackholed_server_degrades_at_the_connect_timeout(nats_proxy: TcpProxy) -> None:
    """Accepted but silent: the start gives up at connect_timeout (0.5 s) with 'timeout'."""
    nats_proxy.set_mode("blackhole")
    settings = NatsSettings(url=via(nats_proxy), required=False, connect_timeout=0.5)
    system = SystemInitializer([NatsComponent(settings=settings)])
    t0 = time.monotonic()
    report = await system.initialize_all()
    elapsed = time.monotonic() - t0
    await system.shutdown()
    assert ("degraded", "timeout") == (report.status, report.components["nats"].error_code)
    assert elapsed < 0.5 + 1.0


async def test_a_silent_line_fails_the_check_while_the_client_still_says_connected(nats_proxy: TcpProxy) -> None:
    """nats.py#806: no disconnect is reported for a silent line; the bounded flush fails all the same."""
    settings = NatsSettings(url=via(nats_proxy), check_timeout=0.5)
    component = NatsComponent(settings=settings)
    async with SystemInitializer([component], check_interval=None) as system:
        conn = system.get("nats")
        nats_proxy.set_mode("blackhole", drop_existing=False)
        t0 = time.monotonic()
        with pytest.raises(Exception, match=r"(?i)timeout|^$") as info:  # nats-py's own TimeoutError
            await component.check(conn)
        elapsed = time.monotonic() - t0
        assert conn.client.is_connected
        assert "timeout" == component.classify(info.value)
        assert elapsed < 0.5 + 1.0
        nats_proxy.set_mode("forward", drop_existing=True)


async def test_the_client_reconnects_after_a_server_restart(nats_server: NatsServer) -> None:
    """The server is killed and started again: the check fails meanwhile and passes once the client is back."""
    url = f"nats://127.0.0.1:{nats_server.port}"
    component = NatsComponent(settings=NatsSettings(url=url, reconnect_interval=0.1, check_timeout=0.5))
    async with SystemInitializer([component], check_interval=None) as system:
        conn = system.get("nats")
        nats_server.kill()
        with pytest.raises(Exception):  # noqa: B017, PT011 - nats-py raises its own timeout or closed error
            await component.check(conn)
        nats_server.start()
        t0 = time.monotonic()
        while not conn.client.is_connected and time.monotonic() - t0 < 15:
            await asyncio.sleep(0.02)
        back_after = time.monotonic() - t0
        await component.check(conn)
        assert 1 <= conn.reconnects
        assert 1 <= conn.disconnects
    assert back_after < 5


async def test_a_wrong_password_is_one_attempt_and_never_printed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Authorization Violation cannot heal by waiting: code 'auth', no retry after it, the canary nowhere."""
    if shutil.which("nats-server") is None:
        pytest.skip("no nats-server binary")
    caplog.set_level(logging.DEBUG)
    server = NatsServer(tmp_path, user="app", password="right-one-xyz")
    server.start()
    try:
        settings = NatsSettings(url=f"nats://app:{CANARY}@127.0.0.1:{server.port}", connect_timeout=1, max_retries=3)
        with pytest.raises(StartupError) as info:
            await SystemInitializer([NatsComponent(settings=settings)]).initialize_all()
    finally:
        server.kill()
    result = info.value.report.components["nats"]
    # nats-server answers -ERR 'Authorization Violation' and closes: now and then the client reads the close
    # first (a reset, which is retried) and the -ERR on the next try. Either way no third try is made.
    assert "auth" == result.error_code
    assert result.attempts <= 2
    assert CANARY not in str(info.value)
    assert CANARY not in caplog.text


@pytest.mark.parametrize(
    "value", ["nats://127.0.0.1:4222,nats://127.0.0.2:4222", ' ["nats://127.0.0.1:4222", "nats://127.0.0.2:4222"]']
)
def test_servers_is_a_json_list_or_comma_separated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str) -> None:
    """NATS_SERVERS=nats://a,nats://b is the list it looks like, in the environment and in an env file (#25)."""
    from infraboot._components._client_settings import NatsSettings
    from infraboot._components._settings import load_settings

    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("NATS_SERVERS", value)
    expected = ["nats://127.0.0.1:4222", "nats://127.0.0.2:4222"]
    assert expected == load_settings(NatsSettings, None).servers
    monkeypatch.delenv("NATS_SERVERS")
    env_file = tmp_path / ".env"
    env_file.write_text(f"NATS_SERVERS={value}\n")
    assert expected == load_settings(NatsSettings, None, env_file=env_file).servers


@pytest.mark.parametrize(
    ("value", "why"), [("[nats://x", "is not valid JSON"), ('{"a": 1}', "is not a list of strings")]
)
def test_a_bad_servers_list_names_a_usable_fix(monkeypatch: pytest.MonkeyPatch, value: str, why: str) -> None:
    """Not '...must be a valid value, e.g. NATS_SERVERS=...': a real example of both forms, and no value (#25)."""
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("NATS_SERVERS", value)
    with pytest.raises(ConfigError) as info:
        NatsComponent().configure()
    (line,) = info.value.problems
    assert line.startswith(f"NATS_SERVERS {why}")
    assert """give a JSON list, e.g. NATS_SERVERS='["nats://127.0.0.1:4222", "nats://127.0.0.2:4222"]'""" in line
    assert "or comma-separated items, e.g. NATS_SERVERS=nats://127.0.0.1:4222,nats://127.0.0.2:4222" in line
    assert "..." not in line
    with pytest.raises(ConfigError, match=r"servers must be a list of strings, e\.g\. servers=\['nats://"):
        NatsComponent(settings={"url": "nats://127.0.0.1:4222", "servers": "nats://x"}).configure()


def test_every_list_or_dict_setting_has_a_concrete_example() -> None:
    """No list/dict setting of a built-in component falls back to 'must be a valid value, e.g. X=...' (#25)."""
    from infraboot._components import _client_settings, _settings

    classes = [_settings.RedisSettings, _settings.DatabaseSettings]
    classes += [_client_settings.RabbitMQSettings, _client_settings.NatsSettings, _client_settings.HttpSettings]
    examples = {**_settings._JSON_EXAMPLES, **_settings._LIST_EXAMPLES}
    for cls in classes:
        for field, info in cls.model_fields.items():
            if str(info.annotation).startswith(("list", "dict")):
                assert field in examples, f"{cls.__name__}.{field}"


def test_settings_are_checked_before_any_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each bad field is a line naming NATS_* and the fix; the password never shows."""
    monkeypatch.setenv("NATS_URL", f"nats://u:{CANARY}@127.0.0.1:4222/path")
    monkeypatch.setenv("NATS_SERVERS", '["redis://127.0.0.1:6379"]')
    monkeypatch.setenv("NATS_JETSTREAM", "false")
    monkeypatch.setenv("NATS_CHECK_STREAM", "orders")
    monkeypatch.setenv("NATS_CONNECTION_OPTIONS", '{"allow_reconnect": false}')
    problems = NatsComponent().settings_problems()
    text = "\n".join(problems)
    assert "a NATS URL has no path or query" in text
    assert "NATS_SERVERS[0]=redis://127.0.0.1:6379: unknown scheme 'redis'" in text
    assert "NATS_CHECK_STREAM needs NATS_JETSTREAM=true" in text
    assert "'allow_reconnect' is set by infraboot; use NATS_RECONNECT_INTERVAL instead" in text
    assert CANARY not in text
    with pytest.raises(ConfigError):
        NatsComponent().configure()
