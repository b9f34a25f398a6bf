"""Passive health and deadlines on the request path, against the real servers through a TcpProxy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

import infraboot
from infraboot import ComponentState, ComponentUnavailableError, ConfigError, SystemInitializer
from infraboot._base._errors import error_chain
from infraboot._components._settings import validate_config as validate_settings
from infraboot._engine._traffic import Traffic, is_outage
from infraboot._front._accessors import session_scope
from infraboot.testing import TcpProxy

pytestmark = pytest.mark.real

# Generous bounds: the machine is shared and loaded.
SLACK = 3.0


async def until_state(system: SystemInitializer, name: str, state: ComponentState, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while system.state(name) is not state:
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.02)
    return True


def redis_system(proxy: TcpProxy, url: str, **settings: object) -> SystemInitializer:
    options = {"url": proxy.url_for(url), "socket_timeout": 0.5, "connect_timeout": 0.5, **settings}
    return SystemInitializer([infraboot.RedisComponent(settings=options)], failure_threshold=3, check_interval=60)


def database_system(proxy: TcpProxy, url: str, **settings: object) -> SystemInitializer:
    options = {"url": proxy.url_for(url), "statement_timeout": 0.5, "connect_timeout": 0.5, **settings}
    return SystemInitializer([infraboot.DatabaseComponent(settings=options)], failure_threshold=3, check_interval=60)


async def select(system: SystemInitializer, sql: str = "SELECT 1") -> object:
    async with session_scope(system.get("database")) as session:
        return (await session.execute(text(sql))).scalar_one()


async def timed(work: object) -> tuple[float, BaseException | None]:
    t0 = time.perf_counter()
    try:
        await work  # type: ignore[misc]
    except Exception as exc:
        return time.perf_counter() - t0, exc
    return time.perf_counter() - t0, None


def other_tasks() -> set[str]:
    return {t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()}


# -- Redis ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["blackhole", "refuse", "reset"])
async def test_redis_outage_seen_by_commands_makes_the_component_unhealthy_without_a_probe(
    redis_url: str, mode: str
) -> None:
    """Each command fails within its socket timeout; after 3 failures get() raises and readiness fails, no probe run."""
    async with TcpProxy(redis_url) as proxy, redis_system(proxy, redis_url) as system:
        client = system.get("redis")
        checks = system.snapshot()["redis"].checks.count
        getattr(proxy, mode)(drop_existing=mode != "blackhole")  # a blackhole as a partition: the line goes silent
        durations = []
        while system.state("redis") is ComponentState.READY and len(durations) < 5:
            duration, error = await timed(client.get("k"))
            assert isinstance(error, RedisConnectionError | RedisTimeoutError)
            durations.append(duration)
        checks_at_flip = system.snapshot()["redis"].checks.count
        with pytest.raises(ComponentUnavailableError):
            system.get("redis")
        report = await system.readiness()
        proxy.restore()
        recovered = await until_state(system, "redis", ComponentState.READY)

    assert len(durations) <= 3
    assert max(durations) < 0.5 + SLACK
    assert checks == checks_at_flip  # no probe ran: live traffic alone decided
    assert "fail" == report.status
    assert recovered


async def test_a_redis_success_resets_the_count_of_failures(redis_url: str) -> None:
    """Two timeouts, then a command that works: the run is over, two more timeouts leave it ready."""
    async with TcpProxy(redis_url) as proxy, redis_system(proxy, redis_url) as system:
        client = system.get("redis")
        for _ in range(2):
            proxy.blackhole(drop_existing=False)
            for _ in range(2):
                with pytest.raises(RedisTimeoutError):
                    await client.get("k")
            proxy.restore()
            assert await client.ping()
        state = system.state("redis")
        failures = system.snapshot()["redis"].health.consecutive_failures

    assert ComponentState.READY is state
    assert 0 == failures


async def test_redis_commands_answered_with_an_error_do_not_count(redis_url: str) -> None:
    """A server's error answer (WRONGTYPE) is no outage: the component stays ready with no failure counted."""
    async with TcpProxy(redis_url) as proxy, redis_system(proxy, redis_url) as system:
        client = system.get("redis")
        await client.set("ib-traffic-str", "v")
        for _ in range(5):
            with pytest.raises(aioredis.ResponseError):
                await client.lpush("ib-traffic-str", "x")
        await client.delete("ib-traffic-str")
        state = system.state("redis")

    assert ComponentState.READY is state


async def test_every_connection_of_the_pool_reports_to_the_one_component(redis_url: str) -> None:
    """redis-py copies the Retry into each connection: failures on several connections still add up."""
    async with TcpProxy(redis_url) as proxy, redis_system(proxy, redis_url, max_connections=10) as system:
        client = system.get("redis")
        await asyncio.gather(*(client.ping() for _ in range(5)))  # five pooled connections
        proxy.blackhole(drop_existing=False)
        results = await asyncio.gather(*(client.get("k") for _ in range(3)), return_exceptions=True)
        state = system.state("redis")

    assert [RedisTimeoutError] * 3 == [type(r) for r in results]
    assert ComponentState.UNHEALTHY is state


# -- PostgreSQL -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["blackhole", "refuse", "reset"])
async def test_database_outage_seen_by_sessions_makes_the_component_unhealthy_without_a_probe(
    database_url: str, mode: str
) -> None:
    """Each session fails within the statement timeout plus the connect timeout; after 3 the component is down."""
    async with TcpProxy(database_url) as proxy, database_system(proxy, database_url) as system:
        getattr(proxy, mode)(drop_existing=mode != "blackhole")
        durations = []
        while system.state("database") is ComponentState.READY and len(durations) < 5:
            duration, error = await timed(select(system))
            assert error is not None and is_outage(error), repr(error)
            durations.append(duration)
        with pytest.raises(ComponentUnavailableError):
            system.get("database")
        report = await system.readiness()
        proxy.restore()
        recovered = await until_state(system, "database", ComponentState.READY)

    assert len(durations) <= 3
    # pre-ping of the silent pooled connection (0.5 s + 1 s margin), then a connect into the blackhole (0.5 s)
    assert max(durations) < 2.0 + SLACK
    assert "fail" == report.status
    assert recovered


async def test_a_query_hung_on_a_blackhole_fails_within_the_statement_timeout_and_its_connection_is_dropped(
    database_url: str,
) -> None:
    """pg_sleep under way when the line goes silent: TimeoutError within statement_timeout + 1 s, connection gone."""
    async with (
        TcpProxy(database_url) as proxy,
        database_system(proxy, database_url, statement_timeout=1.0, pre_ping=False) as system,
    ):
        engine = system.get("database")
        used: list[object] = []
        event.listen(
            engine.sync_engine.pool, "checkout", lambda dbapi, record, proxy: used.append(record.driver_connection)
        )
        baseline = other_tasks()
        query = asyncio.ensure_future(select(system, "SELECT pg_sleep(0.3), 1"))
        await asyncio.sleep(0.1)
        proxy.blackhole(drop_existing=False)
        duration, error = await timed(query)
        checked_out = engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]
        await asyncio.sleep(0.3)  # any task the driver left behind would still run now
        left = other_tasks() - baseline

    assert isinstance(error, TimeoutError | DBAPIError), repr(error)
    assert 1.0 + 1.0 - 0.1 <= duration + 0.05  # the query began 0.1 s before the line went silent
    assert duration < 2.0 + SLACK
    assert 0 == checked_out
    assert [True] == [conn.is_closed() for conn in used]  # type: ignore[attr-defined]  # dropped, not pooled again
    assert set() == {n for n in left if not n.startswith("infraboot-")}


async def test_a_warm_pool_on_a_silent_line_costs_one_connect_timeout_per_session(database_url: str) -> None:
    """Four pooled connections go silent: after the first session each costs the connect timeout, no close waits."""
    async with (
        TcpProxy(database_url) as proxy,
        database_system(
            proxy, database_url, connect_timeout=1.0, warmup_connections=4, statement_timeout=1.0
        ) as system,
    ):
        system.configure(failure_threshold=10)  # keep it ready: every session goes through the pool
        proxy.blackhole(drop_existing=False)
        durations = [(await timed(select(system)))[0] for _ in range(4)]
        left = [t.get_coro().__qualname__ for t in asyncio.all_tasks() if t is not asyncio.current_task()]  # type: ignore[union-attr]

    assert durations[0] < 2.0 + SLACK  # the pre-ping's deadline, then a connect into the blackhole
    assert max(durations[1:]) < 2.0  # a connect timeout each (1 s), not + 2 s of polite close per old connection
    assert [] == [n for n in left if "graceful" in n or "_cancel" in n]


async def test_a_slow_query_on_a_live_server_is_cancelled_by_the_server_and_does_not_count(database_url: str) -> None:
    """Past DATABASE_STATEMENT_TIMEOUT a live server cancels the statement: no outage counted, the pool kept."""
    async with TcpProxy(database_url) as proxy, database_system(proxy, database_url) as system:
        for _ in range(4):
            with pytest.raises(DBAPIError) as caught:
                await select(system, "SELECT pg_sleep(5)")
            assert not is_outage(caught.value)
        state = system.state("database")
        answer = await select(system)

    assert "57014" in [getattr(link, "sqlstate", None) for link in error_chain(caught.value)]  # query_canceled
    assert ComponentState.READY is state
    assert 1 == answer


async def test_database_probes_on_a_silent_line_never_pile_up(database_url: str) -> None:
    """On a silent line probes time out at check_timeout: never two alive at once, no driver task left behind."""
    async with (
        TcpProxy(database_url) as proxy,
        database_system(proxy, database_url, statement_timeout=30, check_timeout=0.3) as system,
    ):
        proxy.blackhole(drop_existing=False)
        counts: list[int] = []

        async def sample() -> None:
            while True:
                counts.append(sum(t.get_name() == "infraboot-probe-database" for t in asyncio.all_tasks()))
                await asyncio.sleep(0.01)

        sampler = asyncio.ensure_future(sample())
        end = time.monotonic() + 3.0
        while time.monotonic() < end:  # the readiness endpoint, hammered, while the recovery probes too
            await system.readiness()
            await asyncio.sleep(0.02)
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        most = max(counts)
        mine = asyncio.current_task()
        driver_tasks = [t for t in asyncio.all_tasks() if t is not mine and not t.get_name().startswith("infraboot-")]
        failures = system.snapshot()["database"].health.consecutive_failures

    assert 1 == most
    assert failures >= 2
    assert [] == [t.get_coro().__qualname__ for t in driver_tasks]  # type: ignore[union-attr]


async def test_a_probe_that_ignores_its_deadline_is_never_doubled() -> None:
    """While an abandoned probe still runs, readiness answers timeout without starting a second one."""
    release = asyncio.Event()

    async def stuck(resource: str) -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:  # a driver that swallows its cancellation
                continue

    @infraboot.component("stuck", check=stuck, check_timeout=0.1)
    async def comp(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "r"

    async with SystemInitializer([comp], check_interval=None) as system:
        reports = [await system.health(fresh=True) for _ in range(4)]
        alive = [n for n in other_tasks() if n == "infraboot-probe-stuck"]
        release.set()

    assert ["fail"] * 4 == [r.status for r in reports]
    assert ["timeout"] * 4 == [r.components["stuck"].error_code for r in reports]
    assert ["infraboot-probe-stuck"] == alive


# -- what counts ----------------------------------------------------------------------------------


async def test_a_custom_component_reports_through_ctx_traffic() -> None:
    """ctx.traffic.failed() with an outage-class error counts; a ValueError does not; succeeded() resets."""
    seen: list[Traffic] = []

    @infraboot.component("search")
    async def search(ctx: infraboot.Context) -> AsyncIterator[str]:
        seen.append(ctx.traffic)
        yield "client"

    async with SystemInitializer([search], failure_threshold=2, check_interval=None) as system:
        traffic = seen[0]
        counted = [traffic.failed(ValueError("bad query")), traffic.failed(ConnectionRefusedError())]
        traffic.succeeded()
        after_success = traffic.failures
        counted += [traffic.failed(TimeoutError()), traffic.failed(ConnectionResetError())]
        state = system.state("search")

    assert [False, True, True, True] == counted
    assert 0 == after_success
    assert ComponentState.UNHEALTHY is state


def test_outside_a_system_ctx_traffic_is_a_no_op() -> None:
    """A Context made by hand (a unit test of a component) takes reports and ignores them."""
    ctx = infraboot.Context("search", {})

    assert False is ctx.traffic.failed(ConnectionRefusedError())
    assert 0 == ctx.traffic.failures


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (RedisConnectionError("Error 111 connecting"), True),
        (RedisTimeoutError("Timeout reading"), True),
        (AuthenticationError("invalid password"), False),
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (asyncio.CancelledError(), False),
        (ValueError("bad"), False),
        (aioredis.ResponseError("WRONGTYPE"), False),
    ],
)
def test_is_outage_tells_an_unreachable_server_from_an_answer(exc: BaseException, expected: bool) -> None:
    """Connection errors and timeouts are outages; a server's answer, a wrong password, a cancellation are not."""
    assert expected is is_outage(exc)


# -- settings -------------------------------------------------------------------------------------


def test_statement_timeout_reaches_the_server_and_the_driver(database_url: str) -> None:
    """DATABASE_STATEMENT_TIMEOUT=2: server statement_timeout 2000 ms, asyncpg command_timeout 3 s."""
    comp = infraboot.DatabaseComponent(settings={"url": database_url, "statement_timeout": 2})
    comp.configure()
    kwargs = comp.engine_kwargs()

    assert 3.0 == kwargs["connect_args"]["command_timeout"]
    assert "2000" == kwargs["connect_args"]["server_settings"]["statement_timeout"]


def test_behind_pgbouncer_only_the_client_deadline_is_set(database_url: str) -> None:
    """PgBouncer refuses startup parameters it does not know: no server statement_timeout is sent there."""
    comp = infraboot.DatabaseComponent(settings={"url": database_url, "statement_timeout": 2, "pgbouncer": True})
    comp.configure()
    kwargs = comp.engine_kwargs()

    assert 3.0 == kwargs["connect_args"]["command_timeout"]
    assert "statement_timeout" not in kwargs["connect_args"].get("server_settings", {})


def test_statement_timeout_zero_switches_the_deadline_off(database_url: str) -> None:
    """DATABASE_STATEMENT_TIMEOUT=0: no command_timeout, no server statement_timeout."""
    comp = infraboot.DatabaseComponent(settings={"url": database_url, "statement_timeout": 0})
    comp.configure()
    connect_args = comp.engine_kwargs()["connect_args"]

    assert "command_timeout" not in connect_args
    assert "statement_timeout" not in connect_args.get("server_settings", {})


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_a_bad_statement_timeout_names_the_variable_and_the_fix(clean_env: pytest.MonkeyPatch, value: str) -> None:
    """DATABASE_STATEMENT_TIMEOUT must be seconds >= 0: the error names it with an example."""
    clean_env.setenv("DATABASE_URL", "postgresql+asyncpg://app@db/app")
    clean_env.setenv("DATABASE_STATEMENT_TIMEOUT", value)
    with pytest.raises(ConfigError) as caught:
        infraboot.validate_config()

    assert "DATABASE_STATEMENT_TIMEOUT=" in str(caught.value)


def test_command_timeout_in_engine_options_names_the_setting_to_use(clean_env: pytest.MonkeyPatch) -> None:
    """connect_args={"command_timeout": ...} is infraboot's: the error points at DATABASE_STATEMENT_TIMEOUT."""
    settings = infraboot.DatabaseSettings(
        url="postgresql+asyncpg://app@db/app", engine_options={"connect_args": {"command_timeout": 5}}
    )
    with pytest.raises(ConfigError) as caught:
        validate_settings(database=settings)

    assert "'command_timeout' is set by infraboot; use DATABASE_STATEMENT_TIMEOUT instead" in str(caught.value)


async def test_redis_connections_have_tcp_keepalive_on(redis_url: str) -> None:
    """The client's sockets have SO_KEEPALIVE set, with a 30 s idle time where the platform has it."""
    import socket

    async with TcpProxy(redis_url) as proxy, redis_system(proxy, redis_url) as system:
        client = system.get("redis")
        conn = await client.connection_pool.get_connection()
        try:
            await conn.connect()
            sock = conn._writer.get_extra_info("socket")
            keepalive = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            idle = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) if hasattr(socket, "TCP_KEEPIDLE") else 30
        finally:
            await client.connection_pool.release(conn)

    assert (1, 30) == (keepalive, idle)


async def test_a_component_s_own_failure_threshold_beats_the_system_s() -> None:
    """failure_threshold=3 on the component: two outage errors leave it ready under a system threshold of 1."""
    seen: list[Traffic] = []

    @infraboot.component("search", failure_threshold=3)
    async def search(ctx: infraboot.Context) -> AsyncIterator[str]:
        seen.append(ctx.traffic)
        yield "client"

    async with SystemInitializer([search], failure_threshold=1, check_interval=None) as system:
        states = []
        for _ in range(3):
            seen[0].failed(ConnectionRefusedError())
            states.append(system.state("search"))

    assert [ComponentState.READY, ComponentState.READY, ComponentState.UNHEALTHY] == states


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "3"])
def test_a_bad_component_failure_threshold_names_the_field(value: object) -> None:
    """failure_threshold must be a whole number >= 1 (or None): the error says so."""
    with pytest.raises(ConfigError) as caught:
        infraboot.Component("search", failure_threshold=value)  # type: ignore[arg-type]

    assert f"failure_threshold={value!r}: must be a whole number >= 1" in str(caught.value)
