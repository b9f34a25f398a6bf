"""The built-in ``redis`` component (redis.asyncio; fakeredis for ``memory://``).

Nothing here imports redis at module level: the driver loads when the component starts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ._component import Context
from ._configured import ConfiguredComponent
from ._errors import classify_error
from ._log import event
from .exceptions import ConfigError

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._settings import RedisSettings  # noqa: F401 - named as a string in the generic base


__all__ = ["RedisComponent"]

_INSTALL = 'the redis component needs redis-py: pip install "infraboot[redis]"'
_AUTH_MARKERS = ("WRONGPASS", "NOAUTH", "invalid password", "invalid username-password")
# Named in-process servers for memory://NAME, shared by every client of this process.
_memory_servers: dict[str, Any] = {}


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

    def _client(self) -> Redis:
        settings = self.settings
        if settings is None or settings.url is None:  # pragma: no cover - configure() runs first
            msg = "redis component started before it was configured"
            raise ConfigError(msg)
        url = settings.url
        if url.scheme == "memory":
            try:
                import fakeredis
            except ImportError:
                msg = 'memory:// needs fakeredis: pip install "infraboot[redis]"'
                raise ConfigError(msg) from None
            server_name = (url.host or "") + url.path.strip("/")
            if server_name:
                server = _memory_servers.setdefault(server_name, fakeredis.FakeServer())
            else:
                server = fakeredis.FakeServer()
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
        redis_client: Redis = Redis.from_url(url.get_secret_value(), **{**settings.client_options, **kwargs})
        return redis_client

    async def start(self, ctx: Context) -> Redis:
        client = self._client()
        try:
            await client.ping()
            warmup = self.settings.warmup_connections if self.settings else 0
            if warmup > 1 and not _is_fake(client):
                pool = client.connection_pool
                conns = await asyncio.gather(*(pool.get_connection() for _ in range(warmup)))  # type: ignore[no-untyped-call]
                for conn in conns:
                    await pool.release(conn)
        except BaseException:
            # Cancelled at the deadline or failed: close what this attempt opened.
            await asyncio.shield(_close_quietly(client))
            raise
        return client

    async def check(self, resource: Redis) -> None:
        await resource.ping()

    async def stop(self, resource: Redis) -> None:
        await resource.aclose()

    def is_retryable(self, exc: Exception) -> bool:
        return self.classify(exc) not in ("auth", "tls", "config") and super().is_retryable(exc)

    def classify(self, exc: BaseException) -> str:
        try:
            from redis import exceptions as rex
        except ImportError:  # pragma: no cover - fakeredis depends on redis
            return classify_error(exc)
        if isinstance(exc, rex.AuthenticationError | rex.AuthorizationError | rex.NoPermissionError):
            return "auth"
        if isinstance(exc, rex.ResponseError) and any(m in str(exc) for m in _AUTH_MARKERS):
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
        return self._client()


def _is_fake(client: Any) -> bool:
    return type(client).__module__.startswith("fakeredis")


async def _close_quietly(client: Redis) -> None:
    try:
        await client.aclose()
    except Exception as exc:
        event(logging.DEBUG, "close_after_failed_start_failed", "redis", error=type(exc).__name__)
