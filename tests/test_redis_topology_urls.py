"""redis+sentinel:// and redis+cluster:// URLs and their settings, checked before any I/O, never showing a password."""

from __future__ import annotations

import pytest

from infraboot import ConfigError, RedisSettings
from infraboot._base._redact import SecretURL
from infraboot._components._redis import RedisComponent
from infraboot._components._redis_topology import build_topology_client, is_topology_client, topology_details
from infraboot._components._settings import load_settings
from infraboot._components._urls import redis_db, redis_nodes, redis_service_name, redis_url_problems

CANARY = "s3cr3t-canary"


def problems(url: str) -> list[str]:
    return redis_url_problems(SecretURL(url), "REDIS_URL")


def test_a_sentinel_url_lists_sentinels_a_service_and_a_db() -> None:
    """Hosts with and without ports (26379 by default, IPv6 in brackets), the service, then the db."""
    url = SecretURL(f"redis+sentinel://:{CANARY}@s1:26380,s2,[::1]:26381/mymaster/2")
    assert [] == redis_url_problems(url, "REDIS_URL")
    assert [("s1", 26380), ("s2", 26379), ("::1", 26381)] == redis_nodes(url)
    assert "mymaster" == redis_service_name(url)
    assert 2 == redis_db(url)
    assert CANARY not in str(url) + repr(url)


def test_a_cluster_url_lists_nodes_with_6379_by_default_and_only_db_0() -> None:
    """redis+cluster:// takes a host list; the db is 0 and nothing else."""
    url = SecretURL("redis+cluster://n1,n2:7001")
    assert [] == redis_url_problems(url, "REDIS_URL")
    assert [("n1", 6379), ("n2", 7001)] == redis_nodes(url)
    assert 0 == redis_db(url)
    assert [] == problems("redis+cluster://n1:7000/0")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis+sentinel://s1:26379", "missing service name"),
        ("redis+sentinel://s1:26379/bad name", "bad service name"),
        ("redis+sentinel://s1:26379/mymaster/x", "bad path"),
        ("redis+sentinel://s1:26379/mymaster/0?db=1", "?db= does not apply"),
        ("redis+sentinel://s1:port/mymaster", "bad port 'port'"),
        ("redis+sentinel://s1,,s2/mymaster", "an empty host"),
        ("redis+sentinel:///mymaster", "missing host"),
        ("redis+sentinel://[::1/mymaster", "malformed IPv6"),
        ("redis+cluster://n1:7000/3", "a Redis Cluster has only db 0"),
        ("redis+cluster://n1:99999", "bad port '99999'"),
        ("redis+cluster://n1?foo=1", "unknown query parameter 'foo'"),
        ("redis+cluster://n1?socket_timeout=1", "socket_timeout is set by infraboot"),
    ],
)
def test_each_bad_part_is_named_with_its_fix(url: str, expected: str) -> None:
    """Every problem is one line naming the variable, the bad part and an example of the fix."""
    found = problems(url)
    assert any(expected in p and "REDIS_URL=" in p for p in found), found


def test_the_password_never_shows_in_url_problems() -> None:
    """A bad topology URL's problems show the URL redacted."""
    found = problems(f"redis+sentinel://:{CANARY}@s1:bad/mymaster/x")
    assert found
    assert all(CANARY not in p and "***" in p for p in found)


def test_sentinel_credentials_are_settings_and_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    """REDIS_SENTINEL_PASSWORD is read from the environment and hidden in the settings' repr."""
    monkeypatch.setenv("REDIS_URL", "redis+sentinel://s1/mymaster")
    monkeypatch.setenv("REDIS_SENTINEL_USERNAME", "watcher")
    monkeypatch.setenv("REDIS_SENTINEL_PASSWORD", CANARY)
    settings = load_settings(RedisSettings)
    assert isinstance(settings, RedisSettings)
    assert "sentinel" == settings.topology
    assert settings.sentinel_password is not None and CANARY == settings.sentinel_password.get_secret_value()
    assert CANARY not in repr(settings) + str(settings)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"url": "redis://h", "sentinel_password": "x-canary"}, "sentinel_password only applies to redis+sentinel"),
        ({"url": "redis://h", "cluster_require_full_coverage": False}, "only applies to redis+cluster"),
        ({"url": "redis+sentinel://h/m", "cluster_dynamic_startup_nodes": True}, "only applies to redis+cluster"),
        ({"url": "redis+cluster://h", "warmup_connections": 4}, "set warmup_connections=1"),
    ],
)
def test_topology_settings_only_go_with_their_url(given: dict[str, object], expected: str) -> None:
    """A setting of another topology is a configuration error naming it and the fix."""
    with pytest.raises(ConfigError) as caught:
        load_settings(RedisSettings, given)
    assert any(expected in p for p in caught.value.problems), caught.value.problems


async def test_clients_are_built_without_io_and_keep_dns_startup_nodes() -> None:
    """Building a client opens nothing; a cluster named by DNS keeps its startup nodes, one named by IP does not."""
    sentinel = build_topology_client("redis", RedisSettings(url=f"redis+sentinel://:{CANARY}@h1,h2/svc/3"))
    try:
        assert is_topology_client(sentinel)
        assert topology_details(sentinel) is None  # not probed yet
        assert 3 == sentinel.connection_pool.connection_kwargs["db"]
        assert CANARY not in repr(sentinel)
    finally:
        await sentinel.aclose()
    by_name = build_topology_client("redis", RedisSettings(url="redis+cluster://cache-0.cache:6379"))
    by_ip = build_topology_client("redis", RedisSettings(url="redis+cluster://10.0.0.1:6379,10.0.0.2"))
    try:
        assert by_name.nodes_manager._dynamic_startup_nodes is False  # type: ignore[attr-defined]
        assert by_ip.nodes_manager._dynamic_startup_nodes is True  # type: ignore[attr-defined]
    finally:
        await by_name.aclose()
        await by_ip.aclose()


def test_the_component_builds_a_topology_client_from_its_settings() -> None:
    """RedisComponent hands redis+cluster:// to the topology module (a RedisCluster, not a Redis)."""
    comp = RedisComponent(RedisSettings(url="redis+cluster://127.0.0.1:7000"))
    client = comp._client()
    assert "RedisCluster" == type(client).__name__
