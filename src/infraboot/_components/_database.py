"""The built-in ``database`` component (SQLAlchemy 2 async: asyncpg or aiosqlite).

Nothing here imports SQLAlchemy at module level: it loads when the component starts.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from infraboot._base._errors import classify_error, error_chain
from infraboot._base._log import event
from infraboot._engine._component import Context
from infraboot._engine._deadlines import shielded
from infraboot._engine._traffic import is_outage
from infraboot.exceptions import ConfigError

from ._configured import ConfiguredComponent
from ._mysql import mysql_code, recycle_problem
from ._pg_failover import NotPrimaryError, follow_primary, read_only_server_settings
from ._urls import ASYNC_POSTGRES, database_driver_url
from ._warmup import open_group

if TYPE_CHECKING:
    from sqlalchemy.engine import ExceptionContext
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from infraboot._base._redact import SecretURL
    from infraboot._engine._traffic import Traffic

    from ._settings import DatabaseSettings

__all__ = [
    "STATEMENT_MARGIN",
    "DatabaseComponent",
    "dedicated_engine",
    "observed_connect",
    "pgbouncer_connect_args",
    "watch_traffic",
]

_TIMEOUT = "statement_timeout"
#: Seconds the client waits past ``DATABASE_STATEMENT_TIMEOUT`` (the server's own cancel) before it drops the line.
STATEMENT_MARGIN = 1.0

_AUTH_ERRORS = ("InvalidPasswordError", "InvalidAuthorizationSpecificationError")
_NOT_FOUND_ERRORS = ("InvalidCatalogNameError",)
_LOADING_ERRORS = ("CannotConnectNowError", "TooManyConnectionsError")
# A writable database reached a standby: a failover is under way or the URL lists no primary.
_NOT_PRIMARY_ERRORS = ("NotPrimaryError", "TargetServerAttributeNotMatched", "ReadOnlySQLTransactionError")
_SHUTDOWN_ERRORS = ("AdminShutdownError", "CrashShutdownError")


def pgbouncer_connect_args() -> dict[str, Any]:
    """asyncpg arguments that work behind PgBouncer in transaction pooling.

    PgBouncer hands each transaction to any server connection, so a prepared
    statement made on one may be missing -- or clash by name -- on the next.
    The statement caches are off, and every statement SQLAlchemy still prepares
    gets a unique name.
    """
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unique_statement_name,
    }


def _unique_statement_name() -> str:
    return f"__infraboot_{uuid.uuid4().hex}__"


# What each engine this component built was made from: the URL and the connect arguments, for
# dedicated_engine(). Keyed weakly by the sync engine, so a disposed and dropped engine leaves nothing.
_MADE_FROM: weakref.WeakKeyDictionary[Any, tuple[str, dict[str, Any]]] = weakref.WeakKeyDictionary()


def dedicated_engine(engine: AsyncEngine) -> AsyncEngine:
    """An engine of unpooled connections to where *engine* connects, with the same connect arguments.

    Its connections do not compete with *engine*'s pool (a lock held for the length of a
    migration must not take one of ``pool_size`` connections from the migration itself), and
    closing one ends its session. For an engine infraboot did not build (a test override),
    the engine's URL alone. Dispose of it when done.
    """
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    made = _MADE_FROM.get(engine.sync_engine)
    if made is None:
        return create_async_engine(engine.url, poolclass=NullPool)
    url, connect_args = made
    return create_async_engine(url, poolclass=NullPool, connect_args=connect_args)


class DatabaseComponent(ConfiguredComponent["AsyncEngine", "DatabaseSettings"]):
    """A SQLAlchemy ``AsyncEngine``: built inside the running loop, checked with ``SELECT 1``, warmed.

    ``DatabaseComponent("replica", env_prefix="REPLICA_DATABASE_")`` is a second database
    (a named instance); ``settings=`` gives its settings in code.
    Configured by :class:`~infraboot.DatabaseSettings` (``DATABASE_*`` variables)
    unless *settings* is given.
    """

    name = "database"
    kind = "datastore"

    settings_class = "DatabaseSettings"
    default_name = "database"

    @property
    def session_options(self) -> dict[str, Any]:
        """Keyword arguments for every ``AsyncSession`` of this engine (``DatabaseSettings.session_options``)."""
        return dict(self.settings.session_options) if self.settings is not None else {}

    def engine_kwargs(self) -> dict[str, Any]:
        """The keyword arguments given to ``create_async_engine`` (no URL, no secret).

        ``engine_options`` from the settings come on top (their ``connect_args`` merged with
        infraboot's), except what infraboot owns, which the settings check refuses.
        """
        kwargs = self._own_engine_kwargs()
        extra = dict(self.settings.engine_options) if self.settings is not None else {}
        connect_args = {**kwargs.get("connect_args", {}), **extra.pop("connect_args", {})}
        kwargs.update(extra)
        if connect_args:
            kwargs["connect_args"] = connect_args
        return kwargs

    def _own_engine_kwargs(self) -> dict[str, Any]:
        s = self.settings
        if s is None or s.url is None:  # pragma: no cover - configure() runs first
            msg = "database component started before it was configured"
            raise ConfigError(msg)
        kwargs: dict[str, Any] = {"echo": s.echo, "pool_pre_ping": s.pre_ping}
        if s.is_sqlite:
            path = s.url.path.lstrip("/")
            if path in ("", ":memory:") or "mode=memory" in (s.url.query or ""):
                from sqlalchemy.pool import StaticPool

                # One in-memory database shared by every session needs one shared connection.
                kwargs["poolclass"] = StaticPool
                kwargs["connect_args"] = {"check_same_thread": False}
            return kwargs
        kwargs.update(
            pool_size=s.pool_size,
            max_overflow=s.max_overflow,
            pool_timeout=s.pool_timeout,
            pool_recycle=int(s.pool_recycle),
        )
        if s.is_mysql:
            # The driver's connect_timeout bounds the TCP connect only; infraboot's attempt deadline bounds the rest.
            # No server-side statement timeout is sent (MySQL and MariaDB name it differently).
            kwargs["connect_args"] = {"connect_timeout": s.connect_timeout}
            return kwargs
        connect_args: dict[str, Any] = {"timeout": s.connect_timeout}
        if s.application_name:
            connect_args["server_settings"] = {"application_name": s.application_name}
        if s.statement_timeout:
            # The server cancels a slow statement at statement_timeout (the connection lives on); the client
            # gives up a margin later, which only a dead line reaches: that connection is then dropped.
            connect_args["command_timeout"] = s.statement_timeout + STATEMENT_MARGIN
            if not s.pgbouncer:  # PgBouncer refuses unknown startup parameters
                millis = str(max(1, round(s.statement_timeout * 1000)))
                connect_args["server_settings"] = {**connect_args.get("server_settings", {}), _TIMEOUT: millis}
        if s.effective_role == "replica":  # read-only sessions, even where prefer-standby lands on the primary
            connect_args["server_settings"] = {**connect_args.get("server_settings", {}), **read_only_server_settings()}
        if s.pgbouncer:
            connect_args.update(pgbouncer_connect_args())
        kwargs["connect_args"] = connect_args
        return kwargs

    async def start(self, ctx: Context) -> AsyncEngine:
        try:
            from sqlalchemy.ext.asyncio import create_async_engine
        except ImportError:
            msg = 'the database component needs SQLAlchemy: pip install "infraboot[postgres]" (or "infraboot[sqlite]")'
            raise ConfigError(msg) from None
        kwargs = self.engine_kwargs()  # raises when configure() has not run
        settings = cast("DatabaseSettings", self.settings)
        url, note = database_driver_url(cast("SecretURL", settings.url), var=settings.env("url"))
        if note is not None and ctx.attempt == 1:
            event(logging.INFO, "database_driver_chosen", self.name, note=note)
        cache = None
        if url.scheme == ASYNC_POSTGRES:  # connect failures count for passive health too
            creator = observed_connect(ctx.traffic)
            if settings.credentials is not None:  # user and password from the provider, asked at every connect
                from ._credentials import CredentialCache, provider_from_setting
                from ._rotation import database_connect

                provider = provider_from_setting(settings.credentials, host=url.host, port=url.port, user=url.username)
                cache = CredentialCache(provider, component=self.name)
                creator = database_connect(cache, creator, lambda exc: self.classify(exc) == "auth")
            kwargs["connect_args"] = {**kwargs.get("connect_args", {}), "async_creator_fn": creator}
        try:
            engine = create_async_engine(url.get_secret_value(), **kwargs)
        except ImportError as exc:
            driver = next((d for d in ("asyncpg", "asyncmy", "aiomysql", "pymysql") if d in str(exc)), "aiosqlite")
            extra = {"asyncpg": "postgres", "aiosqlite": "sqlite", "asyncmy": "mysql"}.get(driver)
            command = f'"infraboot[{extra}]"' if extra else "aiomysql (or use mysql+asyncmy://)"
            msg = f"the database URL needs the {driver} driver: pip install {command}"
            raise ConfigError(msg) from None
        _MADE_FROM[engine.sync_engine] = (url.get_secret_value(), dict(kwargs.get("connect_args", {})))
        if cache is not None:
            from ._rotation import roll_over_database

            roll_over_database(engine, cache)
        # Passive health first: it judges by what the driver said, before follow_primary turns a
        # "not the primary any more" answer into a disconnect (that server answered: no outage).
        watch_traffic(engine, ctx.traffic, ping_timeout=settings.connect_timeout)  # a timed-out connection: dropped
        follow_primary(engine, self.name, role=settings.effective_role)  # 25006, admin shutdown: reconnect
        try:
            await self.check(engine)
            if settings.is_mysql:
                await _check_recycle(engine, settings)
            await self.warm(engine)
        except BaseException:
            await shielded(_dispose_quietly(engine))
            raise
        return engine

    async def warm(self, resource: AsyncEngine) -> None:
        """Open ``warmup_connections`` pooled connections together and check them back in.

        They are opened as a group: when one fails (``too many clients``) or the start is
        cancelled, every one opened is closed before the error goes on, so no retry piles
        connections on a server that is already full. Called at start and after a recovery.
        """
        settings = self.settings
        if settings is None or settings.is_sqlite or settings.warmup_connections <= 1:
            return

        async def check_in(conn: AsyncConnection) -> None:
            await conn.close()

        count, budget = settings.warmup_connections, settings.connect_timeout
        conns = await open_group(resource.connect, check_in, count, budget=budget, component=self.name)
        for conn in conns:
            await conn.close()

    async def check(self, resource: AsyncEngine) -> None:
        """``SELECT 1``; for a database meant to be writable (``DATABASE_ROLE=primary``) also ``pg_is_in_recovery()``.

        ``SELECT 1`` passes on a standby too, so a pool left on a demoted primary would look
        healthy for ever: on a standby the pool is dropped (the next connection goes through
        the URL's hosts and ``target_session_attrs`` again) and the probe fails.
        """
        from sqlalchemy import text

        s = self.settings
        if s is None or s.effective_role != "primary":
            async with resource.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return
        query = "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'"
        async with resource.connect() as conn:
            in_recovery, read_only = (await conn.execute(text(query))).one()
        if in_recovery or read_only:
            await resource.dispose()  # the next connection goes through the URL's hosts again
            role, url = s.env("role"), s.env("url")
            what = "a standby (pg_is_in_recovery() is true)" if in_recovery else "read-only (transaction_read_only)"
            msg = (
                f"database {self.name!r} is meant to be writable ({role}=primary) but the server is {what}; "
                f"list the primary in {url} with target_session_attrs=read-write, or set {role}=replica for a replica"
            )
            raise NotPrimaryError(msg)

    async def stop(self, resource: AsyncEngine) -> None:
        await resource.dispose()

    def is_retryable(self, exc: Exception) -> bool:
        return self.classify(exc) not in ("auth", "not_found", "tls", "config") and super().is_retryable(exc)

    def classify(self, exc: BaseException) -> str:
        for link in error_chain(exc):
            code = mysql_code(link)
            if code is not None:
                return code
            kind = type(link).__name__
            if kind in _AUTH_ERRORS:
                return "auth"
            if kind in _NOT_FOUND_ERRORS:
                return "not_found"
            if kind in _LOADING_ERRORS:
                return "loading"
            if kind in _NOT_PRIMARY_ERRORS:
                return "not_primary"
            if kind in _SHUTDOWN_ERRORS:
                return "shutdown"
        return classify_error(exc)

    def pool_stats(self, resource: AsyncEngine) -> dict[str, int]:
        """Size, checked out, idle and overflow connections of the engine's pool."""
        pool: Any = resource.sync_engine.pool
        stats = {"size": 0, "checked_out": 0, "idle": 0, "overflow": 0}
        for key, attr in (
            ("size", "size"),
            ("checked_out", "checkedout"),
            ("idle", "checkedin"),
            ("overflow", "overflow"),
        ):
            fn = getattr(pool, attr, None)
            if callable(fn):
                stats[key] = max(0, int(fn()))
        return stats

    def after_fork(self, resource: AsyncEngine) -> AsyncEngine | None:
        """In a forked child: a fresh pool on first use, the parent's connections left open.

        ``dispose(close=False)`` only drops the old pool; its connections would then be
        finalised by the child's garbage collector (asyncpg terminates a collected
        connection), so the old pool is kept in the fork orphans for the child's whole life.
        """
        from infraboot._engine._fork import orphans

        orphans.append(resource.sync_engine.pool)
        resource.sync_engine.dispose(close=False)
        return resource


def watch_traffic(engine: AsyncEngine, traffic: Traffic, *, ping_timeout: float | None = None) -> None:
    """Report *engine*'s live traffic to passive health, and drop a connection that timed out.

    A driver timeout (``command_timeout``, past ``DATABASE_STATEMENT_TIMEOUT``) is made a
    disconnect, so SQLAlchemy invalidates the connection (and the pool) instead of
    returning it. A connection invalidated after a timeout, an outage or a cancellation
    is terminated on the spot -- no cancel request into a dead network, no graceful close
    that waits for an answer -- so an abandoned probe or request ends at once.
    Outage-class errors count against the component; a pre-ping that fails does not
    (SQLAlchemy connects again), and a connection checked back in alive resets the count.
    With *ping_timeout*, the pool's pre-ping gives up on a silent connection after that long.
    """
    from sqlalchemy import event as sa_event

    def on_error(context: ExceptionContext) -> None:
        exc = context.original_exception
        if not isinstance(exc, Exception):  # a cancellation: SQLAlchemy invalidates the connection itself
            return
        if isinstance(exc, TimeoutError):
            context.is_disconnect = True
        if not context.is_pre_ping and (context.is_disconnect or is_outage(exc)):
            traffic.failed(exc, disconnect=context.is_disconnect)

    silent_since = [0.0]  # wall time of the last invalidation after a timeout: older connections are suspect

    def on_invalidate(dbapi_connection: Any, record: Any, exception: BaseException | None) -> None:
        if exception is None or (isinstance(exception, Exception) and not is_outage(exception)):
            return  # invalidated on purpose or after a server's answer: the polite close is quick
        if _timed_out(exception):  # a cancellation drops its own connection only: the pool is kept
            went_silent()
        _terminate(record)

    def went_silent() -> None:
        silent_since[0] = time.time()

    def on_close(dbapi_connection: Any, record: Any) -> None:
        # The pool recycles the connections it held when one timed out: on a silent line their polite
        # close would wait two seconds each for an answer (SQLAlchemy's graceful close) before giving up.
        if getattr(record, "starttime", silent_since[0] + 1) <= silent_since[0]:
            _terminate(record)

    def on_checkin(dbapi_connection: Any, record: Any) -> None:
        # Back in the pool alive: its work reached the server (an outage invalidates the connection first).
        # Once per session, not per statement: a statement listener would cost every query a dispatch.
        if dbapi_connection is not None and traffic.failures:
            traffic.succeeded()

    sync_engine = engine.sync_engine
    sa_event.listen(sync_engine, "handle_error", on_error)
    sa_event.listen(sync_engine.pool, "checkin", on_checkin)
    sa_event.listen(sync_engine.pool, "invalidate", on_invalidate)
    sa_event.listen(sync_engine.pool, "close", on_close)
    if ping_timeout is not None:
        _bound_pre_ping(sync_engine.dialect, ping_timeout, went_silent)


def _timed_out(exc: BaseException) -> bool:
    return any(isinstance(link, TimeoutError) for link in error_chain(exc))


def _terminate(record: Any) -> None:
    """Drop a pooled connection's driver connection at once, without a word to the server (asyncpg ``terminate()``)."""
    terminate = getattr(record.driver_connection, "terminate", None)  # aiosqlite has none and needs none
    if callable(terminate):
        terminate()


def _bound_pre_ping(dialect: Any, budget: float, went_silent: Callable[[], None]) -> None:
    """Make the pool's pre-ping give up on a silent connection after *budget* seconds (this engine only).

    A pooled connection whose network went silent would hold the pre-ping for the whole
    statement deadline, and its driver timeout escapes SQLAlchemy's pre-ping handling
    (it is no DBAPI error), failing the checkout instead of connecting again. Here the
    connection is terminated at the deadline -- a timer, no task -- and the ping counts as
    failed: SQLAlchemy then drops the pool's older connections and opens a fresh one.
    """
    ping = dialect.do_ping

    def do_ping(dbapi_connection: Any) -> bool:
        terminate = getattr(dialect.get_driver_connection(dbapi_connection), "terminate", None)
        if not callable(terminate):  # aiosqlite: no network to go silent
            result: bool = ping(dbapi_connection)
            return result

        def give_up() -> None:
            went_silent()
            terminate()

        timer = asyncio.get_running_loop().call_later(budget, give_up)
        try:
            result = ping(dbapi_connection)
        except TimeoutError:  # the driver's own deadline came first
            give_up()
            return False
        finally:
            timer.cancel()
        return result

    dialect.do_ping = do_ping


def observed_connect(traffic: Traffic) -> Callable[..., Awaitable[Any]]:
    """``asyncpg.connect``, reporting a refused, reset or timed-out connect to *traffic* (and a success).

    Given to SQLAlchemy as ``connect_args["async_creator_fn"]``: a new connection's
    failure never reaches the ``handle_error`` event, since it is no DBAPI error.
    """
    import asyncpg

    async def connect(*args: Any, **kwargs: Any) -> Any:
        try:
            conn = await asyncpg.connect(*args, **kwargs)
        except Exception as exc:
            traffic.failed(exc)
            raise
        if traffic.failures:
            traffic.succeeded()
        return conn

    return connect


async def _check_recycle(engine: AsyncEngine, settings: DatabaseSettings) -> None:
    """Refuse a ``pool_recycle`` the MySQL server's ``wait_timeout`` would beat (its idle connections die first)."""
    from sqlalchemy import text

    async with engine.connect() as conn:
        wait_timeout = int((await conn.execute(text("SELECT @@wait_timeout"))).scalar_one())
    problem = recycle_problem(settings.pool_recycle, wait_timeout, settings.env("pool_recycle"))
    if problem is not None:
        raise ConfigError(problem)


async def _dispose_quietly(engine: AsyncEngine) -> None:
    try:
        await engine.dispose()
    except Exception as exc:
        event(logging.DEBUG, "dispose_after_failed_start_failed", "database", error=type(exc).__name__)
