"""The built-in redis component against real servers (and memory://)."""

from __future__ import annotations

import asyncio
import multiprocessing
import time

import pytest
import redis.asyncio as aioredis

import infraboot
from infraboot import ComponentState, RedisSettings, StartupError, SystemInitializer
from infraboot._components._redis import RedisComponent

from .servers import RedisServer, TcpProxy

pytestmark = pytest.mark.real


async def connected_clients(port: int) -> int:
    probe = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        info = await probe.info("clients")
        return int(info["connected_clients"]) - 1  # not counting the probe itself
    finally:
        await probe.aclose()


async def test_starts_against_the_real_redis(redis_url: str) -> None:
    """Start connects and PINGs; the client works; stop closes it."""
    async with SystemInitializer([RedisComponent(RedisSettings(url=redis_url))]) as system:
        client = system.get("redis")
        await client.set("infraboot:test", "1")
        assert b"1" == await client.get("infraboot:test")
        await client.delete("infraboot:test")


async def test_warmup_opens_the_configured_connections_and_shutdown_closes_them(redis_server: RedisServer) -> None:
    """Server-side client count equals the warmup after start and the baseline after shutdown."""
    baseline = await connected_clients(redis_server.port)
    system = SystemInitializer([RedisComponent(RedisSettings(url=redis_server.url(), warmup_connections=4))])
    await system.initialize_all()
    assert baseline + 4 == await connected_clients(redis_server.port)
    await system.shutdown()
    assert baseline == await connected_clients(redis_server.port)


async def test_memory_urls_need_no_server(clean_env: pytest.MonkeyPatch) -> None:
    """memory:// is an embedded Redis; memory://NAME is shared inside the process."""
    clean_env.setenv("REDIS_URL", "memory://shared-one")
    client = await infraboot.init_redis()
    await client.set("k", "v")
    other = SystemInitializer([RedisComponent(RedisSettings(url="memory://shared-one"), name="other")])
    async with other:
        assert b"v" == await other.get("other").get("k")
    await infraboot.close_redis()
    assert ComponentState.STOPPED == infraboot.state("redis")


async def test_optional_redis_refused_degrades_within_the_connect_timeout(redis_proxy: TcpProxy) -> None:
    """A refused optional Redis leaves startup degraded within its connect timeout plus a margin."""
    redis_proxy.set_mode("refuse")
    settings = RedisSettings(url=f"redis://{redis_proxy.url_host}/0", required=False, connect_timeout=0.5)
    system = SystemInitializer([RedisComponent(settings)])
    t0 = time.monotonic()
    report = await system.initialize_all()
    elapsed = time.monotonic() - t0
    await system.shutdown()

    assert "degraded" == report.status
    assert "refused" == report.components["redis"].error_code
    assert elapsed < 0.5 + 0.5


async def test_blackholed_host_cannot_outlast_the_deadline(redis_proxy: TcpProxy) -> None:
    """Accepted-but-silent connections are cut at connect_timeout even with a long driver timeout."""
    redis_proxy.set_mode("blackhole")
    settings = RedisSettings(
        url=f"redis://{redis_proxy.url_host}/0", required=False, connect_timeout=0.4, socket_timeout=30
    )
    system = SystemInitializer([RedisComponent(settings)])
    t0 = time.monotonic()
    report = await system.initialize_all()
    elapsed = time.monotonic() - t0
    await system.shutdown()

    assert "timeout" == report.components["redis"].error_code
    assert elapsed < 0.4 + 0.6


async def test_required_redis_down_fails_within_the_budget_naming_the_url(redis_proxy: TcpProxy) -> None:
    """A required Redis that stays down raises StartupError in time, naming the redacted URL."""
    redis_proxy.set_mode("blackhole")
    url = f"redis://:hunter2-canary@{redis_proxy.url_host}/0"
    system = SystemInitializer(
        [RedisComponent(RedisSettings(url=url, connect_timeout=0.3, max_retries=1))], startup_timeout=2.0
    )
    t0 = time.monotonic()
    with pytest.raises(StartupError) as info:
        await system.initialize_all()
    elapsed = time.monotonic() - t0

    message = str(info.value)
    assert f"required component 'redis' at redis://:***@{redis_proxy.url_host}/0 failed after 2 attempts" in message
    assert "hunter2-canary" not in message
    assert elapsed < 2.0 + 0.5


async def test_connection_reset_is_classified(redis_proxy: TcpProxy) -> None:
    """A server that resets the connection is reported as such, not as a timeout."""
    redis_proxy.set_mode("reset")
    settings = RedisSettings(url=f"redis://{redis_proxy.url_host}/0", required=False, connect_timeout=1)
    async with SystemInitializer([RedisComponent(settings)]) as system:
        code = system.report.components["redis"].error_code
    assert code in ("reset", "connection")


async def test_wrong_password_is_not_retried(tmp_path: pytest.TempPathFactory) -> None:
    """Authentication failures cannot heal by waiting: one attempt, code 'auth'."""
    server = RedisServer(tmp_path, password="right-password")  # type: ignore[arg-type]
    server.start()
    try:
        settings = RedisSettings(url=server.url("wrong-password"), max_retries=5)
        with pytest.raises(StartupError) as info:
            await SystemInitializer([RedisComponent(settings)]).initialize_all()
    finally:
        server.kill()
    result = info.value.report.components["redis"]
    assert ("auth", 1) == (result.error_code, result.attempts)
    assert "wrong-password" not in str(info.value)


async def test_a_server_that_comes_back_is_picked_up_in_the_background(redis_server: RedisServer) -> None:
    """An optional component that failed at startup recovers by itself once its server is back."""
    settings = RedisSettings(url=redis_server.url(), required=False, connect_timeout=0.5)
    system = SystemInitializer([RedisComponent(settings)])
    redis_server.kill()
    assert "degraded" == (await system.initialize_all()).status
    redis_server.start()
    assert await system.wait_ready(["redis"], timeout=30)
    assert "ok" == system.report.status
    assert await system.get("redis").ping()
    await system.shutdown()


def _child_pings(queue: multiprocessing.Queue[object]) -> None:
    async def use() -> object:
        client = infraboot.get_redis()
        result = await client.ping()
        await infraboot.shutdown()
        return result

    try:
        queue.put(asyncio.run(use()))
    except BaseException as exc:  # report anything to the parent
        queue.put(repr(exc))


def test_a_forked_child_gets_its_own_client(clean_env: pytest.MonkeyPatch, redis_url: str) -> None:
    """After fork the child uses a fresh client and the parent's connections keep working."""
    clean_env.setenv("REDIS_URL", redis_url)

    async def start() -> None:
        await infraboot.ensure_initialized(["redis"])

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(start())
        parent_client = infraboot.get_redis()
        ctx = multiprocessing.get_context("fork")
        queue: multiprocessing.Queue[object] = ctx.Queue()
        child = ctx.Process(target=_child_pings, args=(queue,))
        child.start()
        child.join(timeout=30)
        assert True is queue.get(timeout=5)
        assert 0 == child.exitcode
        assert loop.run_until_complete(parent_client.ping())
        loop.run_until_complete(infraboot.shutdown())
    finally:
        loop.close()


async def test_unix_socket_urls_connect(tmp_path: pytest.TempPathFactory) -> None:
    """unix:// reaches a redis-server listening on a socket file."""
    import shutil
    import subprocess

    sock = f"{tmp_path}/redis.sock"
    binary = shutil.which("redis-server")
    assert binary is not None
    proc = subprocess.Popen(  # noqa: ASYNC220 - the test owns this server; starting it blocks for microseconds
        [binary, "--port", "0", "--unixsocket", sock, "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = aioredis.Redis(unix_socket_path=sock)
        for _ in range(200):
            try:
                await client.ping()
                break
            except (OSError, aioredis.ConnectionError):
                await asyncio.sleep(0.02)
        await client.aclose()
        async with SystemInitializer([RedisComponent(RedisSettings(url=f"unix://{sock}"))]) as system:
            assert await system.get("redis").ping()
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_rediss_verifies_by_default_and_warns_when_told_not_to(caplog: pytest.LogCaptureFixture) -> None:
    """rediss:// checks certificate and hostname; REDIS_TLS_VERIFY=false logs a warning."""
    import ssl

    strict = RedisComponent(RedisSettings(url="rediss://cache.internal:6380/0"))
    client = strict._client()
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] in ("required", ssl.CERT_REQUIRED)
    assert True is kwargs["ssl_check_hostname"]
    lax = RedisComponent(RedisSettings(url="rediss://cache.internal:6380/0", tls_verify=False))
    with caplog.at_level("WARNING", logger="infraboot"):
        lax._client()
    assert ["tls_verification_disabled"] == [r.event for r in caplog.records]  # type: ignore[attr-defined]


async def _status_within(system: SystemInitializer, expected: str, seconds: float) -> float:
    """Seconds until readiness says *expected*; fails after *seconds*."""
    t0 = time.monotonic()
    async with asyncio.timeout(seconds):
        while (await system.readiness()).status != expected:
            await asyncio.sleep(0.01)
    return time.monotonic() - t0


@pytest.mark.parametrize(("required", "down"), [(False, "warn"), (True, "fail")])
async def test_readiness_follows_a_redis_server_that_dies_and_comes_back(
    redis_server: RedisServer, required: bool, down: str
) -> None:
    """Killing the server flips readiness within interval + check deadline.

    Restarting it brings back pass and a working client, with no restart of the system.
    """
    interval, check_deadline = 0.2, 1.0
    settings = RedisSettings(url=redis_server.url(), required=required, check_timeout=check_deadline)
    # A long TTL: readiness only reads the cache here, so the background monitor must notice.
    system = SystemInitializer([RedisComponent(settings)], check_interval=interval, check_ttl=3600)
    await system.initialize_all()
    assert "pass" == (await system.readiness()).status
    redis_server.kill()
    await _status_within(system, down, interval + check_deadline + 1.0)
    redis_server.start()
    await _status_within(system, "pass", 15.0)
    assert await system.get("redis").ping()
    assert 1 == system.report.components["redis"].attempts
    await system.shutdown()


async def test_a_blackholed_check_times_out_at_its_deadline_while_readiness_answers_in_time(
    redis_proxy: TcpProxy,
) -> None:
    """PING into a blackhole times out at check_timeout; readiness keeps answering within health_timeout meanwhile."""
    settings = RedisSettings(url=f"redis://{redis_proxy.url_host}/9", check_timeout=0.5)
    system = SystemInitializer([RedisComponent(settings)], check_interval=None, check_ttl=0.01, health_timeout=0.1)
    await system.initialize_all()
    redis_proxy.set_mode("blackhole", drop_existing=False)
    await asyncio.sleep(0.02)  # past the TTL: the next readiness call must probe
    t0 = time.monotonic()
    first = await system.readiness()
    answered = time.monotonic() - t0
    timed_out = await _status_within(system, "fail", 5.0) + answered
    report = await system.readiness()
    await system.shutdown()
    assert ("pass", True) == (first.status, answered < 0.5)
    assert 0.5 <= timed_out < 3.0
    assert "timeout" == report.components["redis"].error_code


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_connection_the_server_closed_is_replaced_before_a_command_is_written_into_it(
    redis_proxy: TcpProxy, redis_url: str, loop: str
) -> None:
    """The next command after the server cut an idle pooled connection succeeds, on either event loop.

    Before redis-py 8.2, writing into such a connection under uvloop raised a ``RuntimeError``
    (no retry, not counted by passive health, a 500 in a request); infraboot's pool checks first.
    """

    async def scenario() -> bytes | None:
        system = SystemInitializer([RedisComponent(RedisSettings(url=redis_proxy.url_for(redis_url)))])
        await system.initialize_all()
        try:
            client = system.get("redis")
            await client.set("ib-closed-idle", "v")
            pooled = list(client.connection_pool._available_connections)
            redis_proxy.drop_connections()  # the server side of every idle connection goes away
            for _ in range(1000):  # until the client's loop has read the EOF of each of them
                if all(c._writer is None or c._writer.transport.is_closing() for c in pooled):
                    break
                await asyncio.sleep(0.005)
            return await client.get("ib-closed-idle")  # type: ignore[no-any-return]
        finally:
            await system.shutdown()

    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        assert b"v" == uvloop.run(scenario())
    else:
        assert b"v" == asyncio.run(scenario())
