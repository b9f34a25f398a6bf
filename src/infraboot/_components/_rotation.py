"""Rotating credentials wired into the drivers: every new physical connection asks, old ones roll over.

- Redis: a redis-py ``CredentialProvider`` reading the :class:`CredentialCache` (asked on
  every connect, awaited: never blocking), and a connection class that reconnects a pooled
  connection at checkout once its credentials are stale or replaced, and retries a connect
  refused for its password once the source gives new ones.
- PostgreSQL: SQLAlchemy's ``async_creator_fn`` passes the cached user and password to
  ``asyncpg.connect`` (retried once the same way), and the pool's ``checkout`` event drops a
  connection whose credentials are stale or replaced (SQLAlchemy connects again at once).

Drivers are imported when these are first used, never by ``import infraboot``.
"""

from __future__ import annotations

import functools
import math
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._credentials import HANDSHAKE_RETRIES, ROTATION_GRACE, CredentialCache, Credentials

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["database_connect", "redis_connection_class", "redis_provider", "roll_over_database", "without_userinfo"]

_STAMP = "infraboot_credentials"  # key in a pooled connection's info: (generation, valid until)
# What each new driver connection was opened with, from the creator to the pool's connect event.
_OPENED_WITH: weakref.WeakKeyDictionary[Any, tuple[int, float]] = weakref.WeakKeyDictionary()


def redis_provider(cache: CredentialCache, user: str | None) -> Any:
    """A redis-py ``CredentialProvider`` answering from *cache* (*user*: the URL's, when the credentials name none)."""
    return _redis_provider_class()(cache, user)


@functools.cache
def _redis_provider_class() -> type:
    from redis.credentials import CredentialProvider

    class CachedCredentials(CredentialProvider):
        def __init__(self, cache: CredentialCache, user: str | None) -> None:
            self.cache, self.user = cache, user

        def _args(self, credentials: Credentials) -> tuple[str] | tuple[str, str]:
            user = credentials.user or self.user
            return (user, credentials.password) if user else (credentials.password,)

        def get_credentials(self) -> tuple[str] | tuple[str, str]:
            current = self.cache.current
            if current is None:
                msg = "rotating credentials serve the asyncio client only (redis.asyncio.Redis)"
                raise RuntimeError(msg)
            return self._args(current)

        async def get_credentials_async(self) -> tuple[str] | tuple[str, str]:
            return self._args(await self.cache.get())

        def __repr__(self) -> str:
            return f"<CachedCredentials {self.cache.provider!r}>"

    return CachedCredentials


def redis_connection_class(cls: type, cache: CredentialCache) -> type:
    """*cls* (a pool's connection class), reconnecting at checkout when its credentials rolled over."""
    from redis.exceptions import AuthenticationError, ConnectionError

    base: Any = cls

    class RollingConnection(base):  # type: ignore[misc]
        _infraboot_generation = -1
        _infraboot_valid_until = math.inf
        _infraboot_handshaking = False

        async def connect(self) -> None:
            # The pool calls connect() on every checkout; a connected one is reused unless it rolled over.
            if self.is_connected and cache.rolls_over(self._infraboot_generation, self._infraboot_valid_until):
                await self.disconnect()
            # redis-py connects outside its command Retry (pool checkout): a socket the server drops during the
            # login (a rotation's CLIENT KILL meeting a connection that logged in with the old password a moment
            # before) would fail the request. Reconnect then, a bounded number of times; a server that refuses
            # the TCP connection never reached the handshake and fails at once, as before.
            for attempt in range(HANDSHAKE_RETRIES + 1):
                self._infraboot_handshaking = False
                try:
                    await super().connect()
                    return
                except ConnectionError as exc:
                    dropped = self._infraboot_handshaking and not isinstance(exc, AuthenticationError)
                    if not dropped or attempt == HANDSHAKE_RETRIES:
                        raise
                    await self.disconnect()

        async def on_connect_check_health(self, check_health: bool = True) -> None:
            self._infraboot_handshaking = True
            # Refused for its password: ask the source again and log in with each new answer, until one works or
            # the source stops changing for ROTATION_GRACE (rotations closer together than a slow login included).
            end = time.monotonic() + ROTATION_GRACE
            while True:
                await cache.get()  # the credentials this connection authenticates with, stamped below
                stamp = cache.stamp()
                try:
                    await super().on_connect_check_health(check_health=check_health)
                    break
                except AuthenticationError:
                    if not await cache.refreshed(max(0.0, end - time.monotonic()), since=stamp[0]):
                        raise
            self._infraboot_generation, self._infraboot_valid_until = stamp

    RollingConnection.__name__ = RollingConnection.__qualname__ = cls.__name__
    return RollingConnection


def database_connect(
    cache: CredentialCache, connect: Callable[..., Awaitable[Any]], is_auth_error: Callable[[BaseException], bool]
) -> Callable[..., Awaitable[Any]]:
    """*connect* (``asyncpg.connect``) with the user and password from *cache*, retried once after a rotation."""

    async def connect_with_credentials(*args: Any, **kwargs: Any) -> Any:
        # Refused for its password: ask the source again and connect with each new answer, until one works or the
        # source stops changing for ROTATION_GRACE (rotations closer together than a slow login included).
        end = time.monotonic() + ROTATION_GRACE
        while True:
            credentials = await cache.get()
            stamp = cache.stamp()
            try:
                conn = await connect(*args, **_with(kwargs, credentials))
                break
            except Exception as exc:
                wait = max(0.0, end - time.monotonic())
                if not is_auth_error(exc) or not await cache.refreshed(wait, since=stamp[0]):
                    raise
        _OPENED_WITH[conn] = stamp
        return conn

    return connect_with_credentials


def _with(kwargs: dict[str, Any], credentials: Credentials) -> dict[str, Any]:
    out = {**kwargs, "password": credentials.password}
    if credentials.user:
        out["user"] = credentials.user
    return out


def roll_over_database(engine: AsyncEngine, cache: CredentialCache) -> None:
    """Stamp each new pooled connection with its credentials; drop one at checkout once they rolled over."""
    from sqlalchemy import event as sa_event
    from sqlalchemy.exc import DisconnectionError

    pool = engine.sync_engine.pool

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        stamp = _OPENED_WITH.pop(record.driver_connection, None)
        record.info[_STAMP] = stamp if stamp is not None else cache.stamp()

    def on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        generation, valid = record.info.get(_STAMP, (cache.generation, math.inf))
        if cache.rolls_over(generation, valid):
            raise DisconnectionError("credentials rolled over")

    sa_event.listen(pool, "connect", on_connect)
    sa_event.listen(pool, "checkout", on_checkout)


def without_userinfo(url: str) -> str:
    """*url* without its user and password (the credential provider gives them)."""
    scheme, sep, rest = url.partition("://")
    ends = [i for i in (rest.find(c) for c in "/?#") if i != -1]
    end = min(ends) if ends else len(rest)
    _, _, hostport = rest[:end].rpartition("@")
    return f"{scheme}{sep}{hostport}{rest[end:]}"
