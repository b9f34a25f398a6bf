"""The fault-injecting TCP proxy of infraboot.testing, against the real local Redis."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis
import redis.asyncio

from infraboot.testing import TcpProxy
from infraboot.testing._proxy import proxy_factory

pytestmark = pytest.mark.real

PING = b"*1\r\n$4\r\nPING\r\n"


@pytest.fixture
def redis_url(real_redis: tuple[str, str, int]) -> str:
    return real_redis[0]


@pytest.fixture
def proxy(redis_url: str) -> Iterator[TcpProxy]:
    with TcpProxy(redis_url) as proxy:
        yield proxy
    gc.collect()  # a socket the proxy leaked warns now, in the test that leaked it


def connect(proxy: TcpProxy, timeout: float = 2.0) -> socket.socket:
    return socket.create_connection((proxy.host, proxy.port), timeout=timeout)


def proxy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("infraboot-proxy-")]


async def test_forward_passes_commands_to_the_server(proxy: TcpProxy, redis_url: str) -> None:
    """In forward mode a client pointed at url_for() talks to the real Redis."""
    client = redis.asyncio.Redis.from_url(proxy.url_for(redis_url))
    try:
        pong = await client.ping()
    finally:
        await client.aclose()
    assert (True, "forward", 1) == (pong, proxy.mode, proxy.accepted)


def test_it_listens_on_the_loopback_only(proxy: TcpProxy) -> None:
    """The proxy binds 127.0.0.1, never another interface."""
    with connect(proxy) as sock:
        assert ("127.0.0.1", proxy.port) == sock.getpeername()
    assert "127.0.0.1" == proxy.host


def test_refuse_gives_connection_refused_on_the_same_port(proxy: TcpProxy) -> None:
    """refuse() stops listening; restore() listens again on the same port."""
    port = proxy.port
    proxy.refuse()
    with pytest.raises(ConnectionRefusedError):
        connect(proxy).close()
    proxy.restore()
    with connect(proxy) as sock:
        sock.sendall(PING)
        answer = sock.recv(100)
    assert ("refuse", port, b"+PONG\r\n") == ("refuse", proxy.port, answer)


def test_blackhole_makes_a_client_time_out_within_its_timeout(proxy: TcpProxy, redis_url: str) -> None:
    """A client with 0.3 s timeouts gives up in well under a second against a blackhole; the connection was accepted."""
    proxy.blackhole()
    client = redis.Redis.from_url(proxy.url_for(redis_url), socket_connect_timeout=0.3, socket_timeout=0.3)
    t0 = time.monotonic()
    try:
        with pytest.raises(redis.TimeoutError):
            client.ping()
    finally:
        client.close()
    elapsed = time.monotonic() - t0
    assert (True, True) == (0.3 <= elapsed < 1.5, proxy.accepted >= 1)


def test_reset_resets_the_connection(proxy: TcpProxy) -> None:
    """In reset mode a connection is accepted, then reset: the client reads ConnectionResetError."""
    proxy.reset()
    with pytest.raises(ConnectionResetError):  # on the loopback the reset may even beat connect()
        sock = connect(proxy)
        with sock:
            sock.sendall(PING)
            sock.recv(100)
    assert 1 == proxy.accepted


async def test_delay_adds_at_least_the_delay_to_a_round_trip(proxy: TcpProxy, redis_url: str) -> None:
    """delay(0.3) makes each PING take at least 0.3 s, on new and kept connections; restore() makes it fast again."""
    proxy.delay(0.3)
    client = redis.asyncio.Redis.from_url(proxy.url_for(redis_url))
    try:
        t0 = time.monotonic()
        await client.ping()  # a new connection: every exchange of the handshake waits too
        first = time.monotonic() - t0
        t0 = time.monotonic()
        await client.ping()
        kept = time.monotonic() - t0
        proxy.restore(drop_existing=False)
        t0 = time.monotonic()
        await client.ping()
        fast = time.monotonic() - t0
    finally:
        await client.aclose()
    assert (True, True, True) == (first >= 0.3, kept >= 0.3, fast < 0.3)


def test_restore_heals_after_a_blackhole(proxy: TcpProxy, redis_url: str) -> None:
    """The same client works again after restore(): its timed-out connection was replaced."""
    client = redis.Redis.from_url(proxy.url_for(redis_url), socket_connect_timeout=0.3, socket_timeout=0.3)
    try:
        proxy.blackhole()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        proxy.restore()
        pong = client.ping()
    finally:
        client.close()
    assert (True, "forward") == (pong, proxy.mode)


def test_a_switch_drops_existing_connections(proxy: TcpProxy) -> None:
    """Every mode switch aborts open connections unless drop_existing=False."""
    with connect(proxy) as kept, connect(proxy) as dropped:
        kept.sendall(PING)
        dropped.sendall(PING)
        assert (b"+PONG\r\n", b"+PONG\r\n") == (kept.recv(100), dropped.recv(100))
        proxy.delay(0.0, drop_existing=False)
        kept.sendall(PING)
        assert b"+PONG\r\n" == kept.recv(100)
        proxy.restore()
        with pytest.raises(ConnectionResetError):
            dropped.sendall(PING)
            dropped.recv(100)


def test_blackhole_without_dropping_silences_open_connections(proxy: TcpProxy) -> None:
    """blackhole(drop_existing=False): an open connection stays open and gets no answer."""
    with connect(proxy, timeout=0.3) as sock:
        sock.sendall(PING)
        assert b"+PONG\r\n" == sock.recv(100)
        proxy.blackhole(drop_existing=False)
        sock.sendall(PING)
        with pytest.raises(TimeoutError):
            sock.recv(100)


def test_drop_connections_aborts_open_ones_and_keeps_the_mode(proxy: TcpProxy) -> None:
    """drop_connections() resets what is open; new connections still forward."""
    with connect(proxy) as sock:
        sock.sendall(PING)
        assert b"+PONG\r\n" == sock.recv(100)
        proxy.drop_connections()
        with pytest.raises(ConnectionResetError):
            sock.sendall(PING)
            sock.recv(100)
    with connect(proxy) as again:
        again.sendall(PING)
        assert (b"+PONG\r\n", "forward") == (again.recv(100), proxy.mode)


async def test_it_answers_while_the_tests_loop_is_blocked(proxy: TcpProxy, redis_url: str) -> None:
    """The proxy runs in its own thread: a blocking client inside an async test gets its answer."""
    client = redis.Redis.from_url(proxy.url_for(redis_url), socket_timeout=2)
    try:
        assert client.ping()
    finally:
        client.close()


def test_url_for_keeps_the_password_the_user_and_the_database() -> None:
    """url_for() replaces host and port only; the password stays percent-encoded as given."""
    with TcpProxy("redis://app:p%40ss%2Fw0rd@redis.internal:6380/3?protocol=3") as proxy:
        url = proxy.url_for("redis://app:p%40ss%2Fw0rd@redis.internal:6380/3?protocol=3")
        default = proxy.url_for()
        expected = f"redis://app:p%40ss%2Fw0rd@127.0.0.1:{proxy.port}/3?protocol=3"
        assert (expected, expected) == (url, default)
        assert ("redis.internal", 6380) == proxy.target


def test_url_for_rewrites_a_postgresql_url() -> None:
    """A PostgreSQL URL keeps its driver, credentials, database and query."""
    with TcpProxy(("db.internal", 5432)) as proxy:
        url = proxy.url_for("postgresql+asyncpg://app:pw@db.internal/shop?ssl=disable")
        assert f"postgresql+asyncpg://app:pw@127.0.0.1:{proxy.port}/shop?ssl=disable" == url


def test_repr_never_shows_the_password() -> None:
    """repr() names where the proxy listens and what it fronts, never the secret."""
    proxy = TcpProxy("postgresql://app:pg-canary-secret@127.0.0.1:5432/test")
    before = repr(proxy)
    with proxy:
        proxy.delay(0.5)
        during = repr(proxy)
    after = repr(proxy)
    text = before + during + after
    assert "canary" not in text
    assert "<TcpProxy not started -> 127.0.0.1:5432 mode='forward' accepted=0>" == before
    assert f"<TcpProxy 127.0.0.1:{proxy.port} -> 127.0.0.1:5432 mode='delay', delay=0.5 accepted=0>" == during
    assert "<TcpProxy closed -> 127.0.0.1:5432 mode='delay', delay=0.5 accepted=0>" == after


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("redis://cache/0", ("cache", 6379)),
        ("rediss://:pw@cache:6390", ("cache", 6390)),
        ("postgresql+asyncpg://u@db/x", ("db", 5432)),
        ("redis://[::1]:6379/0", ("::1", 6379)),
    ],
)
def test_the_target_comes_from_the_url(url: str, target: tuple[str, int]) -> None:
    """Host and port are read from the URL, with the driver's default port when it names none."""
    assert target == TcpProxy(url).target


@pytest.mark.parametrize(
    "url", ["unix:///run/redis.sock", "memory://", "redis://:pw@/0", "http+custom://h/", "redis://h:port/0"]
)
def test_a_url_without_host_and_port_is_refused(url: str) -> None:
    """A URL with nothing to proxy is a ValueError that shows no password."""
    with pytest.raises(ValueError, match="TcpProxy") as caught:
        TcpProxy(url)
    assert ":pw@" not in str(caught.value)


def test_a_target_of_the_wrong_type_is_refused() -> None:
    """The target is a URL or a (host, port) pair."""
    with pytest.raises(TypeError, match="URL or a \\(host, port\\) pair"):
        TcpProxy(("127.0.0.1", "6379"))  # type: ignore[arg-type]


def test_url_for_needs_a_url_when_built_from_a_pair() -> None:
    """Built from (host, port), url_for() needs the URL to rewrite."""
    with TcpProxy(("127.0.0.1", 6379)) as proxy, pytest.raises(ValueError, match="needs a URL"):
        proxy.url_for()


def test_a_proxy_is_used_after_start_and_not_after_close(redis_url: str) -> None:
    """Before start() and after close() the proxy says so; close() twice is fine."""
    proxy = TcpProxy(redis_url)
    with pytest.raises(RuntimeError, match="not started"):
        proxy.port  # noqa: B018 - the property raises
    with pytest.raises(RuntimeError, match="not started"):
        proxy.blackhole()
    proxy.start()
    proxy.close()
    proxy.close()
    with pytest.raises(RuntimeError, match="closed"):
        proxy.restore()
    with pytest.raises(RuntimeError, match="closed"):
        proxy.start()


def test_delay_needs_seconds(proxy: TcpProxy) -> None:
    """A negative or non-numeric delay is a ValueError."""
    with pytest.raises(ValueError, match="seconds >= 0"):
        proxy.delay(-1)
    with pytest.raises(ValueError, match="seconds >= 0"):
        proxy.delay(float("nan"))


async def test_async_with_closes_everything(redis_url: str) -> None:
    """Leaving `async with` stops the thread and the listener and resets open connections, leaking nothing."""
    async with TcpProxy(redis_url) as proxy:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(PING)
        assert b"+PONG\r\n" == await reader.readline()
    try:
        assert b"" == await reader.read(100)
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(proxy.host, proxy.port)
    gc.collect()  # a leaked socket or transport warns here, and warnings are errors
    assert [] == proxy_threads()


def test_plain_start_and_close_close_everything(redis_url: str) -> None:
    """start() / close() used without a with block leave no thread and no socket behind."""
    proxy = TcpProxy(redis_url).start()
    with connect(proxy) as sock:
        sock.sendall(PING)
        assert b"+PONG\r\n" == sock.recv(100)
        proxy.close()
        with pytest.raises(ConnectionResetError):
            sock.sendall(PING)
            sock.recv(100)
    with pytest.raises(ConnectionRefusedError):
        connect(proxy).close()
    gc.collect()
    assert [] == proxy_threads()


def test_closing_is_bounded_with_blackholed_clients_connected(redis_url: str) -> None:
    """Clients hanging on a blackhole do not hold up close(): it returns at once and resets them."""
    proxy = TcpProxy(redis_url).start()
    proxy.blackhole()
    clients = [connect(proxy, timeout=5) for _ in range(5)]
    try:
        for sock in clients:
            sock.sendall(PING)
        deadline = time.monotonic() + 2
        while proxy.accepted < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.monotonic()
        proxy.close()
        took = time.monotonic() - t0
        ends = []
        for sock in clients:
            try:
                ends.append(sock.recv(100))
            except ConnectionResetError:
                ends.append(b"reset")
    finally:
        for sock in clients:
            sock.close()
    assert (5, True) == (proxy.accepted, took < 1.0)
    assert [b"reset"] * 5 == ends
    assert [] == proxy_threads()


def test_the_fixture_hands_out_a_started_proxy(infraboot_proxy: Callable[[str], TcpProxy], redis_url: str) -> None:
    """infraboot_proxy(target) is a started proxy in forward mode."""
    proxy = infraboot_proxy(redis_url)
    with connect(proxy) as sock:
        sock.sendall(PING)
        assert (b"+PONG\r\n", "forward") == (sock.recv(100), proxy.mode)


def test_the_fixture_factory_closes_every_proxy_it_made(redis_url: str) -> None:
    """proxy_factory() (the infraboot_proxy fixture) hands out started proxies and closes them all."""
    factory = proxy_factory()
    make = next(factory)
    first, second = make(redis_url), make(("127.0.0.1", 6379))
    ports = (first.port, second.port)
    assert "forward" == first.mode
    with pytest.raises(StopIteration):
        next(factory)
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert [] == proxy_threads()
