"""The PostgreSQL pytest plugin (entry point ``pytest11``): a throwaway database per run, a rolled-back test session.

- ``infraboot_postgres_server`` (session): the server to make databases on, from
  ``INFRABOOT_TEST_DATABASE_URL``, else ``DATABASE_URL``; override it to use another one.
- ``infraboot_schema`` (session): the schema callback, ``async def create(engine)``; from the
  ``infraboot_schema = "package.module:function"`` ini option, or override the fixture.
- ``infraboot_postgres_url`` (session): creates ``infraboot_test_<pid>_<worker>_<random>``, runs
  the schema callback once, yields the database's URL, drops the database at the end.
- ``infraboot_db_session`` (function): the default system's ``database`` component on that
  database, and one ``AsyncSession`` in an outer transaction that is rolled back at the end
  of the test; ``get_session()`` and the framework dependencies hand it out meanwhile.

The server may be MySQL or MariaDB too (``mysql+asyncmy://``, ``mysql+aiomysql://``,
``mysql://``, ``mariadb…``): the same fixtures make and drop the database there, and the
session nests the same way (InnoDB savepoints).

Nothing here imports SQLAlchemy until a fixture runs. See ``docs/testing-postgres.md``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import inspect
import logging
import os
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import pytest

from infraboot._base._errors import classify_error, describe
from infraboot._base._log import event
from infraboot._engine._backoff import set_testing
from infraboot._front._accessors import configure, held_by_kit, session_options, use_session
from infraboot._front._default import default_system

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

__all__ = [
    "database_name",
    "infraboot_db_session",
    "infraboot_postgres_server",
    "infraboot_postgres_url",
    "infraboot_schema",
]

SchemaHook = Callable[["AsyncEngine"], Awaitable[None]]
"""The schema callback: ``async def create(engine: AsyncEngine) -> None``, run once per test run."""

URL_VARIABLES = ("INFRABOOT_TEST_DATABASE_URL", "DATABASE_URL")
PREFIX = "infraboot_test_"
_CONNECT_TIMEOUT = 5.0
_UNREACHABLE = ("timeout", "refused", "reset", "dns")
T = TypeVar("T")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "infraboot_schema",
        'the schema callback for infraboot_postgres_url, "package.module:function" (async, takes the AsyncEngine)',
        default="",
    )


def database_name(worker: str | None = None) -> str:
    """A fresh name for a throwaway database: ``infraboot_test_<pid>_<xdist worker or main>_<8 hex digits>``."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main") if worker is None else worker
    worker = re.sub(r"[^a-z0-9]", "", worker.lower()) or "main"
    return f"{PREFIX}{os.getpid()}_{worker}_{secrets.token_hex(4)}"


class _SecretURL(str):
    """A database URL that is a plain ``str`` to use, but whose ``repr`` (what pytest prints) hides the password."""

    __slots__ = ()

    def __repr__(self) -> str:
        from sqlalchemy.engine import make_url

        return repr(make_url(str(self)).render_as_string(hide_password=True))


@pytest.fixture(scope="session")
def infraboot_postgres_server() -> str | None:
    """The PostgreSQL server for throwaway databases: ``INFRABOOT_TEST_DATABASE_URL``, else ``DATABASE_URL``.

    Any database of that server works (it is only used to create and drop others). ``None``
    when neither is set: the fixtures that need it skip. Override it to point elsewhere,
    at a container you start in a session fixture, say.
    """
    for var in URL_VARIABLES:
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return None


@pytest.fixture(scope="session")
def infraboot_schema(pytestconfig: pytest.Config) -> SchemaHook:
    """The schema callback run once on the new database: the ``infraboot_schema`` ini option's function, or none.

    Override this fixture to return your own ``async def create(engine: AsyncEngine)``
    (``metadata.create_all`` through ``run_sync``, or your migrations).
    """
    spec = str(pytestconfig.getini("infraboot_schema") or "").strip()
    return _no_schema if not spec else _load_hook(spec)


async def _no_schema(engine: AsyncEngine) -> None:
    return None


def _load_hook(spec: str) -> SchemaHook:
    module_name, _, attr = spec.partition(":")
    example = 'infraboot_schema = "myapp.db:create_schema"'
    if not module_name or not attr:
        pytest.fail(
            f"infraboot_schema = {spec!r}: name a function, package.module:function; e.g. {example}", pytrace=False
        )
    try:
        hook = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"infraboot_schema = {spec!r} cannot be loaded ({describe(exc)}); e.g. {example}", pytrace=False)
    if not callable(hook):
        pytest.fail(f"infraboot_schema = {spec!r} is a {type(hook).__name__}, not a function", pytrace=False)
    found: SchemaHook = hook
    return found


@pytest.fixture(scope="session")
def infraboot_postgres_url(infraboot_postgres_server: str | None, infraboot_schema: SchemaHook) -> Iterator[str]:
    """The URL (``postgresql+asyncpg://`` or MySQL's, password kept) of a database made for this run, then dropped.

    Each pytest process -- each pytest-xdist worker too -- gets its own database,
    ``infraboot_test_<pid>_<worker>_<random>``, with the schema callback run once. Skipped
    when no server is configured or it cannot be reached (under ``CI=true`` an unreachable
    server fails instead). The URL's ``repr`` hides the password; its text has it.
    """
    server = _server_or_skip(infraboot_postgres_server)
    name = database_name()
    try:
        _run(_create(server, name))
    except Exception as exc:
        _unavailable(server, exc, f"could not create the throwaway database {name!r}")
    url = server.set(database=name)
    try:
        _run(_apply_schema(url, infraboot_schema))
        yield _SecretURL(url.render_as_string(hide_password=False))
    finally:
        try:
            _run(_drop(server, name))
        except Exception as exc:
            msg = f"could not drop the database {name!r} ({describe(exc)}); drop it by hand: DROP DATABASE {name}"
            pytest.fail(msg, pytrace=False)


@pytest.fixture
def infraboot_db_session(request: pytest.FixtureRequest, infraboot_postgres_url: str) -> Iterator[AsyncSession]:
    """An ``AsyncSession`` in a transaction that is rolled back at the end of the test.

    The default system's ``database`` component is started on the throwaway database
    (``get_engine()`` is its engine), and for the whole test ``infraboot.get_session()``,
    ``DatabaseSession`` and ``database_session_for("database")`` hand out this session:
    what application code writes is visible in the test and gone in the next one. Its
    ``commit()`` only releases a savepoint (``join_transaction_mode="create_savepoint"``),
    its ``rollback()`` goes back to the last one. Code that opens its own connection
    (``get_engine().connect()``) is outside the transaction: what it commits stays.
    It runs in the test's own event loop, under pytest-asyncio (auto or strict) or anyio.
    """
    from ._plugin import drive

    @contextlib.asynccontextmanager
    async def block() -> AsyncIterator[AsyncSession]:
        from sqlalchemy.ext.asyncio import AsyncSession

        system = default_system()
        configure(database={"url": str(infraboot_postgres_url)})
        try:
            with set_testing(attempts=1):
                await system.ensure_initialized(["database"])
            engine: AsyncEngine = system.get("database")
            options = {"expire_on_commit": False, **session_options(system, "database")}
            options["join_transaction_mode"] = "create_savepoint"  # commit() releases a savepoint, no more
            async with engine.connect() as connection:
                outer = await connection.begin()
                session = AsyncSession(bind=connection, **options)

                def take(settings: Any) -> None:
                    # An app factory's configure(database=...) after this fixture: the throwaway URL stays,
                    # the session-level options apply to the lent session, the rest waits for the next start.
                    if isinstance(settings, Mapping):
                        given = settings.get("session_options")
                    else:
                        given = getattr(settings, "session_options", None)
                    for key, value in dict(given or {}).items():
                        if key in ("autoflush", "expire_on_commit"):
                            setattr(session.sync_session, key, value)
                    event(logging.INFO, "settings_held", component="database", by="infraboot_db_session")

                try:
                    # seen by the test where the runner runs it in this context (anyio)
                    with use_session(session), held_by_kit(system, "database", take):
                        yield session
                finally:
                    try:
                        await session.close()
                        await outer.rollback()
                    finally:
                        # Closed, not put back: a lifespan in the test may have disposed the pool already.
                        await connection.invalidate()
        finally:
            await system.stop(["database"])

    driven = drive(request, block)
    session = next(driven)
    try:
        # And here, for runners that start the test's task from this thread's context (pytest-asyncio).
        with use_session(session):
            yield session
    finally:
        with contextlib.suppress(StopIteration):
            next(driven)


# -- the server side ------------------------------------------------------------------------------


_MYSQL_DRIVERS = {"asyncmy": "asyncmy", "aiomysql": "aiomysql"}


def _is_mysql(url: URL) -> bool:
    return url.get_backend_name() in ("mysql", "mariadb")


def _kind(url: URL) -> str:
    return "MySQL/MariaDB" if _is_mysql(url) else "PostgreSQL"


def _connect_args(url: URL) -> dict[str, Any]:
    # asyncmy and aiomysql name their connect timeout connect_timeout; asyncpg names it timeout.
    return {"connect_timeout": _CONNECT_TIMEOUT} if _is_mysql(url) else {"timeout": _CONNECT_TIMEOUT}


def _server_or_skip(raw: str | None) -> URL:
    if raw is None:
        where = " or ".join(URL_VARIABLES)
        pytest.skip(f"no PostgreSQL or MySQL server for throwaway databases: set {where}")
    try:
        from sqlalchemy.engine import make_url
    except ImportError:
        pytest.fail(
            'infraboot_postgres_url needs SQLAlchemy: pip install "infraboot[postgres]" (or "infraboot[mysql]")'
        )
    from infraboot._base._redact import SecretURL
    from infraboot._components._urls import ASYNC_POSTGRES, database_driver_url

    try:
        secret, _ = database_driver_url(SecretURL(raw))
        url = make_url(secret.get_secret_value())
    except Exception as exc:
        pytest.skip(f"the database server URL cannot be parsed ({type(exc).__name__})")
    if _is_mysql(url):
        driver = url.get_driver_name()
        if driver not in _MYSQL_DRIVERS:
            shown = url.render_as_string(hide_password=True)
            pytest.skip(
                f"{shown}: no throwaway database with the {driver} driver; use mysql+asyncmy:// or mysql+aiomysql://"
            )
        module, fix = driver, ('pip install "infraboot[mysql]"' if driver == "asyncmy" else "pip install aiomysql")
    elif url.drivername == ASYNC_POSTGRES:
        module, fix = "asyncpg", 'pip install "infraboot[postgres]"'
    else:
        shown = url.render_as_string(hide_password=True)
        pytest.skip(f"{shown} is neither a PostgreSQL nor a MySQL URL: no throwaway database")
    try:
        importlib.import_module(module)  # the component needs it too: say so here, once
    except ImportError:
        pytest.fail(f"infraboot_postgres_url on {_kind(url)} needs SQLAlchemy and {module}: {fix}")
    return url


def _unavailable(server: URL, exc: Exception, what: str) -> NoReturn:
    where = server.render_as_string(hide_password=True)
    if classify_error(exc) in _UNREACHABLE:
        kind = _kind(server)
        reason = f"no {kind} reachable at {where} ({describe(exc)})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; under CI=true the {kind} server is required", pytrace=False)
        pytest.skip(reason)
    pytest.fail(f"{what} on {where}: {describe(exc)}", pytrace=False)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    # A loop of our own in a thread of our own: the session fixtures may be set up while
    # some other loop runs in this thread, and asyncpg connections belong to their loop.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="infraboot-postgres") as pool:
        return pool.submit(asyncio.run, coro).result()


@contextlib.asynccontextmanager
async def _maintenance(server: URL) -> AsyncIterator[AsyncConnection]:
    """An autocommit connection to a database of *server* other than ours.

    PostgreSQL: ``postgres``, the URL's, ``template1``. MySQL: the URL's, then none at all.
    """
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    if _is_mysql(server):
        databases: tuple[str | None, ...] = (server.database, None) if server.database else (None,)
    else:
        databases = tuple(dict.fromkeys(("postgres", server.database or "postgres", "template1")))
    errors: list[Exception] = []
    for database in databases:
        engine = create_async_engine(
            server.set(database=database),
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args=_connect_args(server),
        )
        try:
            try:
                connection = await engine.connect()
            except Exception as exc:
                if classify_error(exc) in _UNREACHABLE:
                    raise
                errors.append(exc)  # no such database, or no access to it: try the next one
                continue
            try:
                yield connection
            finally:
                await connection.close()
            return
        finally:
            await engine.dispose()
    raise errors[0]


async def _create(server: URL, name: str) -> None:
    from sqlalchemy import text

    async with _maintenance(server) as connection:
        if _is_mysql(server):
            await connection.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        else:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))


async def _apply_schema(url: URL, hook: SchemaHook) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(url, poolclass=NullPool, connect_args=_connect_args(url))
    try:
        result = hook(engine)
        if inspect.isawaitable(result):
            await result
    finally:
        await engine.dispose()


async def _drop(server: URL, name: str) -> None:
    from sqlalchemy import text

    async with _maintenance(server) as connection:
        if _is_mysql(server):
            # The session fixture's connections are closed by then; a client still in a
            # transaction on it would hold a metadata lock and make this wait for it.
            await connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            return
        version = int((await connection.execute(text("SHOW server_version_num"))).scalar_one())
        if version >= 130000:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        # Before PostgreSQL 13: end the sessions still on it, then drop.
        await connection.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"), {"name": name}
        )
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
