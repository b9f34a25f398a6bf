"""The built-in ``redis`` component (redis.asyncio; fakeredis for ``memory://``).

Nothing here imports redis at module level: the driver loads when the component starts.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from infraboot._base._errors import classify_error, error_chain
from infraboot._base._log import event
from infraboot._engine._component import Context
from infraboot._engine._deadlines import shielded
from infraboot._engine._traffic import Traffic
from infraboot.exceptions import ConfigError

from ._configured import ConfiguredComponent
from ._warmup import open_group

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry

    from ._settings import RedisSettings  # noqa: F401 - named as a string in the generic base


__all__ = ["RedisComponent", "forget_memory_server", "is_auth_error", "keepalive_options", "memory_server"]

_INSTALL = 'the redis component needs redis-py: pip install "infraboot[redis]"'
_AUTH_MARKERS = (
    "WRONGPASS",
    "NOAUTH",
    "invalid password",
    "invalid username-password",
    "without any password configured",
)
# Named in-process servers for memory://NAME, shared by every client of this process.
_memory_servers: dict[str, Any] = {}
# Retries of a command after a connection error (a stale pooled connection is reconnected once or twice).
_COMMAND_RETRIES = 2


def memory_server(name: str) -> Any:
    """The ``fakeredis.FakeServer`` behind ``memory://<name>`` in this process (created on first use)."""
    import fakeredis

    return _memory_servers.setdefault(name, fakeredis.FakeServer())


def forget_memory_server(name: str) -> None:
    """Drop the in-process server ``memory://<name>``: the next client of that name gets an empty one."""
    _memory_servers.pop(name, None)


class RedisComponent(ConfiguredComponent["Redis", "RedisSettings"]):
    """Redis through ``redis.asyncio``: connect and PING under infraboot's deadline, warm the pool.

    ``RedisComponent("cache", env_prefix="CACHE_REDIS_")`` is a second Redis (a named
    instance) read from ``CACHE_REDIS_*``; ``settings=`` gives its settings in code.
    Configured by :class:`~infraboot.RedisSettings` (``REDIS_*`` variables) unless
    *settings* is given. ``memory://`` gives an embedded in-process Redis (fakeredis):
    ``memory://`` alone is private to this component, ``memory://NAME`` is shared by
    every client in the process that uses the same name.
    """

    name = "redis"
    kind = "datastore"

    settings_class = "RedisSettings"
    default_name = "redis"
    _traffic: Traffic | None = None  # where the client's Retry reports (set by start)

    def _client(self) -> Redis:
        settings = self.settings
        if settings is None or settings.url is None:  # pragma: no cover - configure() runs first
            msg = "redis component started before it was configured"
            raise ConfigError(msg)
        if settings.topology != "single":  # redis+sentinel:// or redis+cluster://
            from ._redis_topology import build_topology_client

            return build_topology_client(self.name, settings)
        url = settings.url
        if url.scheme == "memory":
            try:
                import fakeredis
            except ImportError:
                msg = 'memory:// needs fakeredis: pip install "infraboot[redis]"'
                raise ConfigError(msg) from None
            server_name = (url.host or "") + url.path.strip("/")
            server = memory_server(server_name) if server_name else fakeredis.FakeServer()
            client: Redis = fakeredis.FakeAsyncRedis(server=server, **settings.client_options)
            return client
        try:
            from redis.asyncio import Redis
        except ImportError:
            raise ConfigError(_INSTALL) from None
        kwargs: dict[str, Any] = {
            "socket_connect_timeout": settings.connect_timeout,
            "socket_timeout": settings.socket_timeout,
            "max_connections": settings.max_connections,
            "health_check_interval": int(settings.health_check_interval),
        }
        if url.scheme == "rediss":
            if settings.tls_verify:
                kwargs["ssl_cert_reqs"] = "required"
                kwargs["ssl_check_hostname"] = True
            else:
                event(
                    logging.WARNING,
                    "tls_verification_disabled",
                    self.name,
                    hint="REDIS_TLS_VERIFY=false: the server's certificate and hostname are NOT verified",
                )
                kwargs["ssl_cert_reqs"] = "none"
                kwargs["ssl_check_hostname"] = False
            if settings.ssl_ca_certs:
                kwargs["ssl_ca_certs"] = settings.ssl_ca_certs
        # TCP keepalive unless client_options say otherwise: an idle pooled connection (or a subscriber)
        # to a host that vanished is found dead in about 45 s instead of hanging on the next use.
        defaults: dict[str, Any] = {}
        if url.scheme in ("redis", "rediss"):  # a unix:// socket has no TCP options
            defaults = {"socket_keepalive": True, "socket_keepalive_options": keepalive_options()}
        secret, cache = url.get_secret_value(), None
        if settings.credentials is not None:  # user and password from the provider, asked at every connect
            from ._credentials import CredentialCache, provider_from_setting
            from ._rotation import redis_provider, without_userinfo

            provider = provider_from_setting(settings.credentials, host=url.host, port=url.port, user=url.username)
            cache = CredentialCache(provider, component=self.name)
            kwargs["credential_provider"] = redis_provider(cache, url.username)
            secret = without_userinfo(secret)
        redis_client: Redis = Redis.from_url(secret, **{**defaults, **settings.client_options, **kwargs})
        pool = redis_client.connection_pool
        guard_closed_writes(pool)
        if cache is not None:
            from ._rotation import redis_connection_class

            pool.connection_class = redis_connection_class(pool.connection_class, cache)
        return redis_client

    async def start(self, ctx: Context) -> Redis:
        self._traffic = ctx.traffic  # after_fork's client reports to the same place
        client = self._client()
        try:
            if self.settings is not None and self.settings.topology != "single":
                from ._redis_topology import check_topology

                # Not PING: the master's role, the cluster's state, and a short error naming the cause.
                await check_topology(client, self.settings, starting=True)
            else:
                await client.ping()
            await self.warm(client)
        except BaseException:
            # Cancelled at the deadline or failed: close what this attempt opened.
            await shielded(_close_quietly(client))
            raise
        return self._retrying(client)

    def _retrying(self, client: Redis) -> Redis:
        """*client*, its commands retried after a connection error (a stale pooled connection).

        Armed only once started: a start attempt fails fast and infraboot's own retry loop
        decides. The same ``Retry`` reports every command's outcome to passive health: a
        connection error or timeout that reaches the caller counts against the component.
        ``client_options={"retry": ...}`` (a redis-py ``Retry``) replaces it, passive health
        included; Sentinel and Cluster clients keep the retries their topology gives them
        (their outages are seen by the probes only).
        """
        s = self.settings
        if not _is_fake(client) and s is not None and s.topology == "single" and "retry" not in s.client_options:
            client.set_retry(_command_retry(self._traffic or Traffic()))
        return client

    async def warm(self, resource: Redis) -> None:
        """Have ``warmup_connections`` connections open in the pool (at start, and after a recovery).

        They are opened as a group: when one fails (``max number of clients reached``) or the
        start is cancelled, every one opened is disconnected before the error goes on.
        """
        settings = self.settings
        warmup = settings.warmup_connections if settings else 0
        pool = getattr(resource, "connection_pool", None)  # a cluster client has one pool per node: not warmed
        if settings is None or warmup <= 1 or _is_fake(resource) or pool is None:
            return

        async def discard(conn: Any) -> None:
            try:
                await conn.disconnect()
            finally:
                await pool.release(conn)

        async def open_one() -> Any:
            conn = await pool.get_connection()
            try:
                await _ping(conn)  # a pooled connection may be stale: the server restarted since
            except BaseException:
                await discard(conn)
                raise
            return conn

        conns = await open_group(open_one, discard, warmup, budget=settings.connect_timeout, component=self.name)
        for conn in conns:
            await pool.release(conn)

    async def check(self, resource: Redis) -> None:
        if self.settings is not None and self.settings.topology != "single":
            from ._redis_topology import check_topology

            await check_topology(resource, self.settings)  # the master's role, or cluster_state:ok and the slots
            return
        await resource.ping()

    def health_details(self, resource: Redis) -> Mapping[str, Any] | None:
        """Sentinel: the service, its current master and the sentinels; Cluster: state, slots and nodes."""
        if self.settings is None or self.settings.topology == "single":
            return None
        from ._redis_topology import topology_details

        return topology_details(resource)

    async def stop(self, resource: Redis) -> None:
        await resource.aclose()

    def is_retryable(self, exc: Exception) -> bool:
        return self.classify(exc) not in ("auth", "tls", "config") and super().is_retryable(exc)

    def classify(self, exc: BaseException) -> str:
        try:
            from redis import exceptions as rex
        except ImportError:  # pragma: no cover - fakeredis depends on redis
            return classify_error(exc)
        if type(exc).__name__ == "MasterNotFoundError":  # no sentinel knows a master right now
            return "no_master"
        if isinstance(exc, rex.ClusterDownError):
            return "cluster_down"
        if any(is_auth_error(link) for link in error_chain(exc)):  # a cluster wraps it in RedisClusterException
            return "auth"
        if isinstance(exc, rex.BusyLoadingError):
            return "loading"
        if isinstance(exc, rex.TimeoutError):
            return "timeout"
        code = classify_error(exc)
        if code == "error" and isinstance(exc, rex.ConnectionError):
            text = str(exc).lower()
            if "ssl" in text or "certificate" in text:
                return "tls"
            if "name or service not known" in text or "nodename nor servname" in text:
                return "dns"
            return "connection"
        return code

    def pool_stats(self, resource: Redis) -> dict[str, int]:
        """In-use and available connections of the client's pool."""
        pool = resource.connection_pool
        in_use = len(getattr(pool, "_in_use_connections", ()))
        available = len(getattr(pool, "_available_connections", ()))
        return {"in_use": in_use, "available": available, "max": int(getattr(pool, "max_connections", 0) or 0)}

    def after_fork(self, resource: Redis) -> Redis | None:
        """In a forked child the parent's sockets are not ours: a fresh client, the old one untouched."""
        return self._retrying(self._client())


def is_auth_error(exc: BaseException) -> bool:
    """Whether redis-py's *exc* says the credentials were refused (wrong password, no password, no permission)."""
    from redis import exceptions as rex

    if isinstance(exc, rex.AuthenticationError | rex.AuthorizationError | rex.NoPermissionError):
        return True
    return isinstance(exc, rex.ResponseError) and any(m in str(exc) for m in _AUTH_MARKERS)


def _command_retry(traffic: Traffic) -> Retry:
    """Two retries of a command that met a connection error, after a full-jitter wait of up to 0.1 s, then 0.2 s.

    Timeouts are not retried (a slow server is not made slower). A retried command may
    have run once already: a non-idempotent one (``INCR``, ``LPUSH``) can apply twice.
    What the caller finally gets is reported to *traffic* (passive health).
    """
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    backoff = ExponentialWithJitterBackoff(cap=0.5, base=0.05)
    return _observed_retry_class()(traffic, backoff, _COMMAND_RETRIES, supported_errors=(RedisConnectionError,))


@functools.cache
def _observed_retry_class() -> Callable[..., Retry]:
    """redis-py's asyncio ``Retry``, reporting each call's final outcome to passive health (made on first use)."""
    from redis.asyncio.retry import Retry
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    outages = (RedisConnectionError, RedisTimeoutError, OSError)

    class ObservedRetry(Retry):
        # Every command, pipeline and connect of the client goes through call_with_retry: one frame more.
        def __init__(self, traffic: Traffic, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.traffic = traffic

        def __deepcopy__(self, memo: dict[int, Any]) -> Any:
            # redis-py gives each connection a deep copy of the client's Retry: they must all report to
            # the one Traffic of the component, never to copies of it.
            memo[id(self.traffic)] = self.traffic
            clone = object.__new__(type(self))
            memo[id(self)] = clone
            for key, value in _attributes(self):
                setattr(clone, key, copy.deepcopy(value, memo))
            return clone

        async def call_with_retry(self, *args: Any, **kwargs: Any) -> Any:
            try:
                result = await super().call_with_retry(*args, **kwargs)
            except outages as exc:
                self.traffic.failed(exc)
                raise
            traffic = self.traffic
            if traffic.failures:
                traffic.succeeded()
            return result

    return ObservedRetry


def guard_closed_writes(pool: Any) -> None:
    """Make *pool*'s connections refuse to write into a socket the server already closed (redis-py < 8.2).

    Before 8.2, a command written into a pooled connection the server had closed (a restart,
    an idle timeout, a proxy cutting the line) failed with whatever the transport raised:
    uvloop's ``RuntimeError: unable to perform operation on <TCPTransport closed=True ...>``,
    or a ``TypeError``/``AttributeError`` on some CPython versions. That is no
    ``ConnectionError``: the command was not retried on a fresh connection, passive health
    did not count it, and a request met it as a 500 instead of a 503. redis-py 8.2 checks the
    transport before writing; this gives older versions the same check (a subclass of the
    pool's own connection class, so TLS, unix sockets and Sentinel keep theirs).
    """
    cls = getattr(pool, "connection_class", None)
    if cls is not None:
        pool.connection_class = _guarded_connection_class(cls)


@functools.cache
def _guarded_connection_class(cls: type) -> type:
    import redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    major, minor = (int(part) for part in redis.__version__.split(".")[:2])
    if (major, minor) >= (8, 2) or not hasattr(cls, "_send_packed_command"):
        return cls

    written = cls._send_packed_command

    async def _send_packed_command(self: Any, command: Any) -> None:
        writer = self._writer
        if writer is None or writer.transport.is_closing():
            msg = "Connection closed by the server before write"
            raise RedisConnectionError(msg)
        await written(self, command)

    return type(cls.__name__, (cls,), {"_send_packed_command": _send_packed_command, "__module__": __name__})


def _attributes(obj: Any) -> list[tuple[str, Any]]:
    """Every attribute *obj* holds: its ``__dict__`` and the ``__slots__`` of its classes (redis-py 6's ``Retry``)."""
    found: list[tuple[str, Any]] = []
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                found.append((name, getattr(obj, name)))
    found.extend(vars(obj).items())
    return found


def keepalive_options() -> dict[int, int]:
    """TCP keepalive after 30 s idle, then a probe every 5 s, given up after 3 (the options this platform has)."""
    import socket

    wanted = (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    return {getattr(socket, name): value for name, value in wanted if hasattr(socket, name)}


async def _ping(conn: Any) -> None:
    """PING on *conn* itself; once more on a fresh socket when the pooled one turns out dead."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    try:
        await conn.send_command("PING")
        await conn.read_response()
    except (RedisConnectionError, OSError):
        await conn.disconnect()
        await conn.send_command("PING")  # reconnects first
        await conn.read_response()


def _is_fake(client: Any) -> bool:
    return type(client).__module__.startswith("fakeredis")


async def _close_quietly(client: Redis) -> None:
    try:
        await client.aclose()
    except Exception as exc:
        event(logging.DEBUG, "close_after_failed_start_failed", "redis", error=type(exc).__name__)
