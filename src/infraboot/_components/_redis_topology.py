"""Redis Sentinel and Redis Cluster for the built-in ``redis`` component: build the client, check it, describe it.

Used only when ``REDIS_URL`` is ``redis+sentinel://`` or ``redis+cluster://``; redis-py
loads inside the functions, never at ``import infraboot``.

Sentinel: the client is redis-py's ``Sentinel.master_for()``: every new connection asks
the sentinels for the current master, a ``READONLY`` answer from a demoted master drops
the connection, and redis-py (8.x) no longer retries the socket connect against the old
address (redis-py#3560, #3874) -- so writes follow a failover without a restart. The
readiness probe asks the sentinels which node is master (failing while none is known)
and checks that node answers ``ROLE`` as a master.

Cluster: ``RedisCluster`` with ``require_full_coverage`` (a start fails unless all 16384
slots are served) and ``dynamic_startup_nodes`` off when the URL names hosts by DNS, so
a re-read of the topology can always start from the names (redis-py#2472). ``PING``
reaches one node and says nothing about slot coverage; the probe reads ``CLUSTER INFO``
and fails unless ``cluster_state:ok``.

What the last probe saw is kept per client for health details (:func:`topology_details`):
the master's address, or the cluster's state, slot counts and node count -- never a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import weakref
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

from infraboot._base._log import event
from infraboot._engine._backoff import backoff
from infraboot._engine._deadlines import raise_if_cancelled, shielded
from infraboot.exceptions import ConfigError

from ._urls import redis_db, redis_nodes, redis_service_name

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    from infraboot._base._redact import SecretURL

    from ._settings import RedisSettings

__all__ = ["build_topology_client", "check_topology", "is_topology_client", "topology_details"]

_INSTALL = 'the redis component needs redis-py: pip install "infraboot[redis]"'
# URL query parameters a cluster client does not take (RedisCluster has no **kwargs).
_NOT_FOR_CLUSTER = frozenset({"retry_on_timeout"})
_CLUSTER_SLOTS = 16384

# What the last probe of each client saw; weak, so a closed and dropped client leaves nothing behind.
_details: weakref.WeakKeyDictionary[Any, Mapping[str, Any]] = weakref.WeakKeyDictionary()


def build_topology_client(name: str, settings: RedisSettings) -> Redis:
    """A Sentinel-managed master client or a cluster client for *settings* (no I/O yet).

    The cluster client is a ``redis.asyncio.RedisCluster``: typed here as ``Redis``
    because ``get_redis()`` is, it offers the same commands for single-key use.
    """
    url = settings.url
    if url is None:  # pragma: no cover - configure() refuses this first
        msg = f"{name}: redis started before it was configured"
        raise ConfigError(msg)
    try:
        import redis.asyncio  # noqa: F401 - the install hint, before anything else
    except ImportError:
        raise ConfigError(_INSTALL) from None
    kwargs = _connection_kwargs(settings, url)
    nodes = redis_nodes(url)
    if settings.topology == "sentinel":
        client = _sentinel_client(settings, url, nodes, kwargs)
    else:
        client = _cluster_client(settings, nodes, kwargs)
    event(logging.DEBUG, "redis_topology", name, topology=settings.topology, nodes=len(nodes))
    return client


def is_topology_client(resource: object) -> bool:
    """Whether *resource* is a client that :func:`build_topology_client` made."""
    return _kind(resource) is not None


async def check_topology(resource: Redis, settings: RedisSettings | None = None, *, starting: bool = False) -> None:
    """Readiness of a Sentinel or Cluster client (and the start's check); raises when it cannot serve writes.

    Sentinel: the sentinels must name a master (``MasterNotFoundError`` while none is
    known, e.g. between a master's death and the promotion) and that node must answer
    ``ROLE`` as ``master``. When none is named, the sentinels are asked why: a refused
    sentinel password is an ``AuthenticationError``, a service no sentinel monitors a
    :class:`ConfigError`, each one short line. Cluster: some node must answer ``CLUSTER INFO``
    with ``cluster_state:ok`` (``ClusterDownError`` otherwise); a start (*starting*) with
    ``cluster_require_full_coverage`` off only warns.
    """
    kind = _kind(resource)
    if kind == "sentinel":
        await _check_sentinel(resource, settings)
    elif kind == "cluster":
        lenient = starting and settings is not None and not settings.cluster_require_full_coverage
        await _check_cluster(cast("RedisCluster", resource), settings, lenient=lenient)
    else:
        await resource.ping()


def topology_details(resource: object) -> Mapping[str, Any] | None:
    """What the last probe of a Sentinel or Cluster client saw, or ``None`` (not probed, or a plain client).

    Sentinel: ``{"topology": "sentinel", "service": ..., "master": "host:port" | None,
    "sentinels": n}``. Cluster: ``{"topology": "cluster", "state": "ok", "slots_ok": n,
    "slots_pfail": n, "slots_fail": n, "slots_assigned": n, "nodes": n, "size": n}``.
    """
    try:
        return _details.get(resource)
    except TypeError:  # not weak-referenceable: not ours
        return None


# -- building ---------------------------------------------------------------------------------


def _connection_kwargs(settings: RedisSettings, url: SecretURL) -> dict[str, Any]:
    """What every data-node connection gets: the URL's credentials and query, the settings, client_options."""
    from redis.asyncio.connection import parse_url

    from_query: dict[str, Any] = {}
    if url.query:
        # redis-py's own parser turns "?protocol=3&socket_keepalive=true" into typed keywords.
        from_query = {k: v for k, v in parse_url(f"redis://localhost?{url.query}").items() if k != "host"}
    kwargs: dict[str, Any] = {
        **settings.client_options,
        **from_query,
        "socket_connect_timeout": settings.connect_timeout,
        "socket_timeout": settings.socket_timeout,
        "max_connections": settings.max_connections,
        "health_check_interval": int(settings.health_check_interval),
    }
    if url.username:
        kwargs["username"] = url.username
    if url.password is not None:
        kwargs["password"] = url.password
    return kwargs


def _sentinel_client(
    settings: RedisSettings, url: SecretURL, nodes: list[tuple[str, int]], kwargs: dict[str, Any]
) -> Redis:
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import Sentinel
    from redis.backoff import NoBackoff

    sentinel_kwargs: dict[str, Any] = {
        "socket_connect_timeout": settings.connect_timeout,
        "socket_timeout": settings.socket_timeout,
        # One try per sentinel: master discovery moves on to the next one by itself. redis-py 8.2 does
        # this too; before it, each sentinel's retries multiplied its timeout past the check's deadline.
        "retry": Retry(NoBackoff(), 0),
    }
    if settings.sentinel_username:
        sentinel_kwargs["username"] = settings.sentinel_username
    if settings.sentinel_password is not None:
        sentinel_kwargs["password"] = settings.sentinel_password.get_secret_value()
    manager = Sentinel(nodes, sentinel_kwargs=sentinel_kwargs, **kwargs)  # type: ignore[no-untyped-call,unused-ignore]
    client: Redis = manager.master_for(redis_service_name(url), redis_class=_sentinel_redis_class(), db=redis_db(url))
    from ._redis import guard_closed_writes

    guard_closed_writes(client.connection_pool)
    return client


@functools.cache
def _sentinel_redis_class() -> type[Redis]:
    """A ``Redis`` that follows ``+switch-master`` and whose ``aclose()`` also closes its sentinel clients."""
    from redis.asyncio import Redis

    class SentinelMasterRedis(Redis):
        """The current master of a Sentinel service, followed across failovers.

        redis-py alone keeps a connection to the old master until that node is demoted
        (up to ~10 s after a ``SENTINEL FAILOVER``: writes land on the old master). A
        background task listens to ``+switch-master`` on the sentinels and drops the
        idle connections at once; the first command opens its connection to the new master.
        """

        _watcher: asyncio.Task[None] | None = None
        _closed = False

        async def execute_command(self, *args: Any, **options: Any) -> Any:
            result = await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
            # Watched once a command got through: a client that never reached its master (a
            # failed start, a closed client) leaves no task and no sentinel connection behind.
            if not self._closed and (self._watcher is None or self._watcher.done()):
                self._watcher = asyncio.get_running_loop().create_task(
                    _watch_switch_master(self), name="infraboot-sentinel-switch-master"
                )
            return result

        async def aclose(self, close_connection_pool: bool | None = None) -> None:
            self._closed = True
            watcher, self._watcher = self._watcher, None
            try:
                if watcher is not None and not watcher.done():
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await asyncio.wait_for(asyncio.shield(watcher), 2.0)
                await super().aclose(close_connection_pool)
            finally:
                manager = getattr(self.connection_pool, "sentinel_manager", None)
                if manager is not None:
                    if hasattr(manager, "aclose"):  # redis-py >= 8.1
                        await manager.aclose()
                    else:
                        for sentinel in manager.sentinels:
                            await sentinel.aclose()

    return SentinelMasterRedis


async def _follow_master(pool: Any, service: str, *, announced: bool) -> None:
    """Re-read the master; when it moved, the pool drops its idle connections to the old one."""
    from redis.exceptions import RedisError

    before = pool.master_address
    try:
        await pool.get_master_address()
    except RedisError:
        raise_if_cancelled()  # redis-py may turn a cancellation into a connection error
        return  # no master known right now: the next command (or switch message) asks again
    if announced or (before is not None and before != pool.master_address):
        event(logging.INFO, "redis_sentinel_switch_master", None, service=service, announced=announced)


async def _watch_switch_master(client: Redis) -> None:
    """Listen to ``+switch-master`` on one sentinel after another; on a switch, re-read the master."""
    pool: Any = client.connection_pool
    service = str(pool.service_name)
    failures = 0
    index = 0
    while True:
        sentinels = pool.sentinel_manager.sentinels
        sentinel = sentinels[index % len(sentinels)]
        pubsub = sentinel.pubsub()
        try:
            await pubsub.subscribe("+switch-master")
            failures = 0
            # A switch missed while (re)subscribing is caught here: ask for the master once.
            await _follow_master(pool, service, announced=False)
            while True:
                # A bounded wait, not listen(): the socket timeout must not end an idle subscription.
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None or message.get("type") != "message":
                    continue
                data = message.get("data")
                text = data.decode() if isinstance(data, bytes) else str(data)
                if text.split(" ", 1)[0] == service:
                    await _follow_master(pool, service, announced=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise_if_cancelled()  # a cancellation a driver turned into an error still ends the watch
            failures += 1
            index += 1
            event(logging.DEBUG, "redis_sentinel_watch_failed", None, error=type(exc).__name__)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(pubsub.aclose())
        # Full jitter: many clients losing the same sentinel do not come back in step.
        await asyncio.sleep(backoff(failures, initial=0.2, maximum=5.0, forever=True))


def _cluster_client(settings: RedisSettings, nodes: list[tuple[str, int]], kwargs: dict[str, Any]) -> Redis:
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    unsupported = sorted(set(kwargs) & _NOT_FOR_CLUSTER)
    if unsupported:
        label = settings.env("url")
        msg = f"{label}: {', '.join(unsupported)} does not apply to a redis+cluster:// client; remove it"
        raise ConfigError.from_problems([msg])
    dynamic = settings.cluster_dynamic_startup_nodes
    if dynamic is None:
        # Keep DNS names as the startup nodes: the cluster reports IPs, which change under Kubernetes.
        dynamic = all(_is_ip(host) for host, _ in nodes)
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        require_full_coverage=settings.cluster_require_full_coverage,
        dynamic_startup_nodes=dynamic,
        **kwargs,
    )
    return cast("Redis", client)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _kind(resource: object) -> str | None:
    pool = getattr(resource, "connection_pool", None)
    if pool is not None and hasattr(pool, "sentinel_manager") and hasattr(pool, "service_name"):
        return "sentinel"
    if type(resource).__name__ == "RedisCluster" and hasattr(resource, "nodes_manager"):
        return "cluster"
    return None


# -- checking ---------------------------------------------------------------------------------


async def _check_sentinel(resource: Redis, settings: RedisSettings | None) -> None:
    from redis.asyncio.sentinel import MasterNotFoundError

    pool: Any = resource.connection_pool
    service = str(pool.service_name)
    details: dict[str, Any] = {
        "topology": "sentinel",
        "service": service,
        "master": None,
        "sentinels": len(pool.sentinel_manager.sentinels),
    }
    try:
        # Asks the sentinels; when the master moved, idle connections to the old one are dropped.
        host, port = await pool.get_master_address()
    except MasterNotFoundError:
        # redis-py's message holds a repr of every sentinel client (1.4 KB): ask the sentinels why instead.
        _remember(resource, details)
        raise await _why_no_master(pool.sentinel_manager.sentinels, service, settings) from None
    details["master"] = f"{_show_host(host)}:{port}"
    _remember(resource, details)
    role = await resource.execute_command("ROLE")  # type: ignore[no-untyped-call]
    first = role[0] if isinstance(role, list | tuple) and role else role
    answered = first.decode() if isinstance(first, bytes) else str(first)
    if answered != "master":
        details["master_role"] = answered
        msg = f"the sentinels name {details['master']} master of {service!r}, but it answers as {answered}"
        raise MasterNotFoundError(msg)


async def _why_no_master(sentinels: list[Any], service: str, settings: RedisSettings | None) -> Exception:
    """The error for "no master known": each sentinel is asked once which services it monitors.

    A service some sentinel monitors: ``MasterNotFoundError`` (no master right now, retried).
    Sentinels that answer but monitor no such service: :class:`ConfigError` (a typo in the URL).
    Sentinels that refuse the credentials: ``AuthenticationError``. None answering: ``ConnectionError``.
    """
    from redis.asyncio.sentinel import MasterNotFoundError
    from redis.exceptions import AuthenticationError, RedisError
    from redis.exceptions import ConnectionError as RedisConnectionError

    from ._redis import is_auth_error

    refused = 0
    monitored: set[str] = set()
    answered = False
    for sentinel in sentinels:
        try:
            masters = await sentinel.sentinel_masters()
        except (RedisError, OSError) as exc:
            raise_if_cancelled()
            refused += is_auth_error(exc)
            continue
        answered = True
        monitored.update(str(name) for name in masters)
    url = settings.env("url") if settings is not None else "the URL"
    if service in monitored:
        msg = f"no master known for Sentinel service {service!r}: the sentinels name none (failover under way?)"
        return MasterNotFoundError(msg)
    if answered:
        names = ", ".join(repr(n) for n in sorted(monitored)) or "none"
        msg = (
            f"no sentinel monitors a service named {service!r} (they monitor {names}); "
            f"fix the service name in {url} (redis+sentinel://host:port,.../SERVICE/DB)"
        )
        return ConfigError(msg)
    if refused:
        password = settings.env("sentinel_password") if settings is not None else "the sentinel password"
        msg = (
            f"{refused} of {len(sentinels)} sentinels refused the sentinel credentials; set {password} to the "
            "sentinels' own password (their requirepass; unset when they have none), not the data nodes' password"
        )
        return AuthenticationError(msg)
    return RedisConnectionError(f"no sentinel answered ({len(sentinels)} tried) for service {service!r}")


async def _check_cluster(resource: RedisCluster, settings: RedisSettings | None, *, lenient: bool) -> None:
    from redis.exceptions import ClusterDownError, RedisError

    from infraboot._base._errors import error_chain

    from ._redis import is_auth_error

    try:
        await resource.initialize()  # a no-op when the topology is known; re-read after a connection error
    except (RedisError, OSError) as exc:
        raise_if_cancelled()
        if any(is_auth_error(link) for link in error_chain(exc)):
            raise
        # redis-py reads COMMAND from the first master it lists, a dead one as well: ask the nodes we know.
        unready: Exception | None = exc
        nodes = list(resource.nodes_manager.startup_nodes.values())
    else:
        unready = None
        nodes = resource.get_primaries() + [n for n in resource.get_nodes() if n.server_type != "primary"]
    info: Mapping[str, Any] | None = None
    last: Exception | None = unready
    try:
        for node in nodes:
            try:
                info = await _cluster_info(node)
            except (RedisError, OSError) as exc:
                raise_if_cancelled()
                last = exc
                continue
            break
    finally:
        if unready is not None:  # the client's aclose() closes the nodes it knows, not its startup nodes
            await shielded(_disconnect_all(nodes))
    if info is None:
        msg = "no cluster node answered CLUSTER INFO"
        raise ClusterDownError(msg) from last
    details = {
        "topology": "cluster",
        "state": str(info.get("cluster_state", "unknown")),
        "slots_ok": _int(info, "cluster_slots_ok"),
        "slots_pfail": _int(info, "cluster_slots_pfail"),
        "slots_fail": _int(info, "cluster_slots_fail"),
        "slots_assigned": _int(info, "cluster_slots_assigned"),
        "nodes": _int(info, "cluster_known_nodes"),
        "size": _int(info, "cluster_size"),
    }
    _remember(resource, details)
    if details["state"] != "ok":
        msg = (
            f"cluster_state:{details['state']} ({details['slots_ok']} of {_CLUSTER_SLOTS} slots ok, "
            f"{details['slots_fail']} failed)"
        )
        if lenient and settings is not None:  # the user asked to start on a partial cluster: say so, go on
            event(
                logging.WARNING,
                "redis_cluster_down_at_start",
                None,
                state=msg,
                setting=settings.env("cluster_require_full_coverage"),
            )
            return
        raise ClusterDownError(msg)
    if unready is not None:  # the cluster says ok, but the client could not read its topology
        raise unready


async def _disconnect_all(nodes: list[Any]) -> None:
    for node in nodes:
        with contextlib.suppress(Exception):
            await node.disconnect()


async def _cluster_info(node: Any) -> Mapping[str, Any]:
    """``CLUSTER INFO`` of one node, as a mapping (parsed here when redis-py hands back the text)."""
    raw = await node.execute_command("CLUSTER INFO")
    if isinstance(raw, Mapping):
        return raw
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return dict(line.strip().split(":", 1) for line in text.splitlines() if ":" in line)


def _int(info: Mapping[str, Any], key: str) -> int:
    try:
        return int(info.get(key, 0))
    except (TypeError, ValueError):
        return 0


def _show_host(host: object) -> str:
    text = host.decode() if isinstance(host, bytes) else str(host)
    return f"[{text}]" if ":" in text else text


def _remember(resource: object, details: Mapping[str, Any]) -> None:
    try:
        _details[resource] = MappingProxyType(dict(details))
    except TypeError:  # pragma: no cover - redis-py clients are weak-referenceable
        return
