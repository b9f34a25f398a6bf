"""PostgreSQL failover: a pool that follows the writable primary instead of failing forever.

After a switchover the old primary often keeps answering as a standby: ``SELECT 1``
(the pool's pre-ping) passes there, every write fails with SQLSTATE 25006 and nothing
ever reconnects. Here the errors that mean "this server is no longer the one you
want" -- a read-only transaction, an administrator's shutdown, a conflict with
recovery, credentials the server no longer accepts -- are treated by SQLAlchemy as a
disconnect: the connection is dropped and the whole pool is invalidated, so the next
checkout connects again and ``target_session_attrs`` finds the new primary. A read-only
error on a primary counts only when the server's role says so (:func:`server_is_read_only`):
an application's own ``SET TRANSACTION READ ONLY`` must not replace a healthy pool.

Nothing here imports SQLAlchemy at module level: the database component calls
:func:`follow_primary` after it built its engine.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from infraboot._base._errors import OwnMessage, error_chain
from infraboot._base._log import event

if TYPE_CHECKING:
    from sqlalchemy.engine import ExceptionContext
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "NotPrimaryError",
    "follow_primary",
    "lost_primary_reason",
    "read_only_server_settings",
    "server_is_read_only",
]

#: SQLSTATEs after which this connection -- and every other one in the pool -- should be replaced.
RECONNECT_SQLSTATES = {
    "25006": "read_only",  # read_only_sql_transaction: a write reached a standby (or a demoted primary)
    "57P01": "admin_shutdown",  # terminated by an administrator, or by a failover tool
    "57P02": "crash_shutdown",
    "57P03": "cannot_connect_now",  # the server is starting up or shutting down
    "28P01": "credentials",  # invalid_password: credentials rotated or expired under a live pool
    "28000": "credentials",  # invalid_authorization_specification
}
_RECOVERY_CONFLICT = "conflict with recovery"  # 40001 / 40P01 with this text: a standby cancelled us
# Where the server does not report its role (before PostgreSQL 14, some poolers): a read-only error
# invalidates the pool at most this often, so an application's own read-only transactions cannot churn it.
_UNKNOWN_ROLE_EVERY = 5.0


class NotPrimaryError(OwnMessage, ConnectionError):
    """A database meant to be writable answered from a standby (``pg_is_in_recovery()`` is true).

    A :class:`ConnectionError`, so that startup and recovery retry it: a failover heals by waiting.
    """


def lost_primary_reason(exc: BaseException) -> str | None:
    """Why *exc* means "reconnect elsewhere" (``read_only``, ``admin_shutdown``, ...), or ``None``."""
    for link in error_chain(exc):
        state = getattr(link, "sqlstate", None) or getattr(link, "pgcode", None)
        if not isinstance(state, str):
            continue
        if state in RECONNECT_SQLSTATES:
            return RECONNECT_SQLSTATES[state]
        if state in ("40001", "40P01") and _RECOVERY_CONFLICT in str(link):
            return "recovery_conflict"
    return None


def server_is_read_only(driver_connection: object) -> bool | None:
    """What the server reported about itself on *driver_connection*, with no query: ``True`` when it is a
    standby or read-only by default, ``False`` when it is a writable primary, ``None`` when it does not say.

    PostgreSQL 14 and later report ``in_hot_standby`` and ``default_transaction_read_only`` on every
    connection and again whenever they change (a promotion, ``ALTER SYSTEM`` and a reload); asyncpg
    keeps them in ``get_settings()``.
    """
    get_settings = getattr(driver_connection, "get_settings", None)
    if get_settings is None:
        return None
    try:
        reported = get_settings()
        values = [getattr(reported, name, None) for name in ("in_hot_standby", "default_transaction_read_only")]
    except Exception:
        return None
    if any(v is None for v in values):
        return None
    return any(str(v).lower() == "on" for v in values)


def follow_primary(engine: AsyncEngine, component: str, *, role: str = "primary") -> None:
    """Make *engine* drop its pool when a server says it is no longer the one wanted (see the module).

    On a ``replica`` a read-only error is the caller's mistake (a write sent to the replica),
    not a failover: it is left alone, so that a buggy route does not churn the pool. On a
    primary, a read-only error (25006) drops the pool only when the server's role says so:
    a standby, or read-only by default. The application's own ``SET TRANSACTION READ ONLY``
    on a healthy primary leaves the pool alone. A server that does not report its role
    drops the pool at most once every few seconds.
    """
    from sqlalchemy import event as sa_event

    last_unknown = [float("-inf")]

    def on_error(context: ExceptionContext) -> None:
        if context.is_disconnect:
            return
        reason = lost_primary_reason(context.original_exception)
        if reason is None or (reason == "read_only" and role == "replica"):
            return
        if reason == "read_only":
            proxied = getattr(context.connection, "connection", None) if context.connection is not None else None
            verdict = server_is_read_only(getattr(proxied, "driver_connection", None))
            if verdict is False:  # a writable primary: the transaction itself was read-only
                return
            if verdict is None:
                now = time.monotonic()
                if now - last_unknown[0] < _UNKNOWN_ROLE_EVERY:
                    return
                last_unknown[0] = now
        # SQLAlchemy then invalidates this connection and, by default, every one checked in before it.
        context.is_disconnect = True
        event(logging.WARNING, "database_pool_invalidated", component, reason=reason)

    sa_event.listen(engine.sync_engine, "handle_error", on_error)


def read_only_server_settings() -> dict[str, Any]:
    """asyncpg ``server_settings`` that make every transaction of a session read-only (a replica's sessions)."""
    return {"default_transaction_read_only": "on"}
