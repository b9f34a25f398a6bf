"""The test kit's building blocks: fakes, outages, an ASGI lifespan runner."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

from infraboot._engine._component import refusing, substitute
from infraboot._engine._state import ComponentState
from infraboot._engine._system import SystemInitializer
from infraboot._front._default import default_system
from infraboot._web import _asgi
from infraboot.exceptions import ComponentUnavailableError, ConfigError, StartupError

R = TypeVar("R")

__all__ = [
    "Fakes",
    "LifespanRunner",
    "fake_component",
    "fake_database",
    "fake_env",
    "fake_redis",
    "lifespan",
    "memory_server",
    "outage",
]


def memory_server(name: str) -> Any:
    """The ``fakeredis.FakeServer`` behind ``REDIS_URL=memory://<name>`` (created on first use)."""
    from infraboot._components._redis import memory_server as server

    return server(name)


@contextlib.contextmanager
def fake_env(*, redis: bool = False, database: bool = False) -> Iterator[dict[str, str]]:
    """Point ``REDIS_URL`` / ``DATABASE_URL`` at fresh fakes inside the block, then restore the environment.

    Redis gets a FakeServer of its own (no keys shared with any other block); the database
    is SQLite in memory on one shared connection, so tables created in one session are
    seen by the next. Yields the variables it set.
    """
    values: dict[str, str] = {}
    name = f"infraboot-test-{uuid.uuid4().hex}"
    if redis:
        values["REDIS_URL"] = f"memory://{name}"
        values["REDIS_REQUIRED"] = "true"
    if database:
        values["DATABASE_URL"] = "sqlite+aiosqlite:///:memory:"
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield values
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        from infraboot._components._redis import forget_memory_server

        forget_memory_server(name)


@contextlib.asynccontextmanager
async def outage(name: str, *, system: SystemInitializer | None = None, recover: bool = True) -> AsyncIterator[None]:
    """Simulate an outage of component *name*: it goes down inside the block and comes back after.

    Inside the block, every probe and start attempt of the component fails with
    ``ConnectionRefusedError`` (a fake Redis also refuses the application's own commands);
    the component is probed at once, so an optional one is ``unhealthy`` and ``get()``
    raises :class:`~infraboot.ComponentUnavailableError` straight away, and a required one
    makes readiness ``fail``. On exit the component answers again and, with *recover*,
    the block waits (up to 10 s) until it is ready, so the test can go on at once.
    Use it with :func:`infraboot.set_testing` so recovery does not wait for backoff.
    """
    target = system if system is not None else default_system()
    component = target.components[name]
    server = _fake_server(target, name)

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        msg = f"simulated outage of {name!r}"
        raise ConnectionRefusedError(msg)

    with refusing(component, refuse):
        if server is not None:
            server.connected = False
        try:
            if target.state(name) is ComponentState.READY:
                await target.health(fresh=True)
            yield
        finally:
            if server is not None:
                server.connected = True
    if recover and target.state(name) in (ComponentState.UNHEALTHY, ComponentState.FAILED, ComponentState.READY):
        if target.state(name) is ComponentState.READY:
            await target.health(fresh=True)  # a required component: one good probe flips it back
        if not await target.wait_ready([name], timeout=10):
            msg = f"{name!r} did not recover within 10s after the simulated outage"
            raise ComponentUnavailableError(msg, component=name)


def _fake_server(system: SystemInitializer, name: str) -> Any:
    settings = getattr(system.components[name], "settings", None)
    url = getattr(settings, "url", None)
    if url is None or getattr(url, "scheme", None) != "memory":
        return None
    server_name = (url.host or "") + url.path.strip("/")
    return memory_server(server_name) if server_name else None


class LifespanRunner(Protocol):
    """The type of the ``infraboot_lifespan`` fixture, for a test that annotates its parameters::

    async def test_ready(infraboot_lifespan: infraboot.testing.LifespanRunner) -> None:
        state = await infraboot_lifespan(app, components=["redis"])
    """

    async def __call__(
        self, app: Any, *, components: Iterable[str] | None = None, started: bool = True
    ) -> Mapping[str, Any]: ...


@contextlib.asynccontextmanager
async def lifespan(
    app: Any, *, components: Iterable[str] | None = None, started: bool = True
) -> AsyncIterator[Mapping[str, Any]]:
    """Run an ASGI app's lifespan around the block (any ASGI framework); yields the lifespan state.

    A required component that fails the startup raises its :class:`~infraboot.StartupError`
    (a ``RuntimeError``), as ``ensure_initialized`` does; another failed startup raises
    ``RuntimeError`` with the server's message. Shutdown runs on exit, also when the block raises::

        async with infraboot.testing.lifespan(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app)) as client:
                ...

    *components* starts only those (and what they require) instead of the list the app's
    infraboot lifespan was given, so a test of the Redis paths never needs a database::

        async with infraboot.testing.lifespan(app, components=["redis"]):
            ...

    It applies to the infraboot lifespan of the app (``infraboot.fastapi.lifespan(...)``,
    ``infraboot.starlette.lifespan(...)``), not to components your own lifespan starts.

    With ``lifespan(..., background=True)`` in the app, the block begins once that startup
    has finished (ok, degraded or failed: ask ``infraboot.startup()``), at most
    ``startup_timeout`` (else 60 s) later; ``started=False`` begins at once, to test the
    app while it is still starting.
    """
    import asyncio

    if isinstance(components, str):
        msg = f"lifespan(app, components={components!r}): pass a list of names, e.g. components=[{components!r}]"
        raise ConfigError(msg)
    state: dict[str, Any] = {}
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": state}

    async def receive() -> dict[str, Any]:
        return await to_app.get()

    async def send(message: Mapping[str, Any]) -> None:
        await from_app.put(dict(message))

    # The app's task copies this context when it is created: the restriction is seen there only.
    restriction = _asgi.components_override.set(None if components is None else list(components))
    kit = _asgi.in_test_kit.set(True)  # a failed background startup must not end the test run
    failures: list[BaseException] = []
    heard = _asgi.startup_failures.set(failures)
    try:
        task = asyncio.get_running_loop().create_task(app(scope, receive, send), name="infraboot-test-lifespan")
    finally:
        _asgi.startup_failures.reset(heard)
        _asgi.in_test_kit.reset(kit)
        _asgi.components_override.reset(restriction)

    async def exchange(kind: str) -> None:
        await to_app.put({"type": f"lifespan.{kind}"})
        getter = asyncio.ensure_future(from_app.get())
        done, _ = await asyncio.wait([getter, task], return_when=asyncio.FIRST_COMPLETED)
        if getter not in done:
            getter.cancel()
            task.result()  # the app crashed: raise its error
            msg = f"the app's lifespan ended without answering lifespan.{kind}"
            raise RuntimeError(msg)
        reply = getter.result()
        if reply["type"] == f"lifespan.{kind}.failed":
            if kind == "startup" and failures and isinstance(failures[-1], StartupError):
                raise failures[-1]  # the test asserts on it, not on the server's traceback text
            msg = f"lifespan {kind} failed: {reply.get('message', '')}"
            raise RuntimeError(msg)

    try:
        await exchange("startup")
        behind = state.get(_asgi.STARTUP_KEY)
        if started and behind is not None:  # a background startup: wait for its outcome
            limit = state[_asgi.STATE_KEY].startup_timeout
            await asyncio.wait({behind}, timeout=60.0 if limit is None else limit)
    except BaseException:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise
    try:
        yield state
    finally:
        try:
            await exchange("shutdown")
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await task


# Given-in-code fields a fake keeps: how the app uses its client or sessions (decoded strings, autoflush, ...).
# Everything else (hosts, TLS, pool sizes, driver options of the real server) would not fit the fake.
_REDIS_KEPT = ("client_options", "socket_timeout", "max_connections")
_DATABASE_KEPT = ("session_options", "echo")
SQLITE_NEEDED = (
    'fake_database runs the database on SQLite in memory, which needs aiosqlite: pip install "infraboot[testing]" '
    '(or "infraboot[sqlite]"), also when the app runs on PostgreSQL'
)


def _configured(system: SystemInitializer, name: str, kind: str) -> Any:
    from infraboot._components._configured import ConfiguredComponent

    system.state(name)  # an unknown name: UnknownComponentError with a did-you-mean
    component = system.components[name]
    if not isinstance(component, ConfiguredComponent) or component.settings_class != kind:
        what = "infraboot.RedisComponent" if kind == "RedisSettings" else "infraboot.DatabaseComponent"
        msg = (
            f"{name!r} is a {type(component).__name__}, not a {what}; stand in for a component of your own with "
            f"infraboot.testing.fake_component({name!r}, resource)"
        )
        raise ConfigError(msg)
    return component


@contextlib.asynccontextmanager
async def _faked(
    system: SystemInitializer, name: str, component: Any, settings: dict[str, Any], kept: Iterable[str]
) -> AsyncIterator[Any]:
    if name in {n for n, snap in system.snapshot().items() if snap.has_resource}:
        msg = (
            f"{name!r} is started already; a fake starts a fresh one: use it before the app's lifespan starts the "
            f"components, or stop {name!r} first"
        )
        raise ConfigError(msg)
    given, env_file = component.given
    fields = component.given_fields()
    component.use({**{k: fields[k] for k in kept if k in fields}, **settings, "enabled": True, "required": True})
    try:
        await system.ensure_initialized([name])
        try:
            yield system.get(name)
        finally:
            await system.stop([name])
    finally:
        component.use(given, env_file=env_file)


@contextlib.asynccontextmanager
async def fake_redis(name: str = "redis", *, system: SystemInitializer | None = None) -> AsyncIterator[Any]:
    """Start the Redis component *name* (``redis``, or a named instance such as ``cache``) on a fresh
    in-process fakeredis server inside the block; yields its client, stops it on exit.

    The component keeps the ``client_options`` (``decode_responses``, ...), ``socket_timeout`` and
    ``max_connections`` the code gave it; the URL given in code or in the environment is not used. Its
    server shares no key with any other fake, and :func:`outage` works on it::

        async with infraboot.testing.fake_redis("cache") as cache:
            await cache.set("k", "v")
    """
    target = default_system() if system is None else system
    component = _configured(target, name, "RedisSettings")
    server = f"infraboot-fake-{uuid.uuid4().hex}"
    from infraboot._components._redis import forget_memory_server

    try:
        async with _faked(target, name, component, {"url": f"memory://{server}"}, _REDIS_KEPT) as client:
            yield client
    finally:
        forget_memory_server(server)


@contextlib.asynccontextmanager
async def fake_database(name: str = "database", *, system: SystemInitializer | None = None) -> AsyncIterator[Any]:
    """Start the database component *name* on SQLite in memory inside the block; yields its ``AsyncEngine``.

    Tables are shared by every session of the block (one connection). The component keeps the
    ``session_options`` the code gave it, so ``get_session(name)`` / ``system.get_session(name)`` /
    ``ib.DatabaseSession`` behave as in the app. Needs aiosqlite (``pip install "infraboot[testing]"``,
    or ``"infraboot[sqlite]"``), also when the app runs on PostgreSQL.
    """
    import importlib.util

    if importlib.util.find_spec("aiosqlite") is None:
        raise ConfigError(SQLITE_NEEDED)
    target = default_system() if system is None else system
    component = _configured(target, name, "DatabaseSettings")
    async with _faked(target, name, component, {"url": "sqlite+aiosqlite:///:memory:"}, _DATABASE_KEPT) as engine:
        yield engine


@contextlib.contextmanager
def fake_component(name: str, resource: Any, *, system: SystemInitializer | None = None) -> Iterator[Any]:
    """Make the component *name* stand in with *resource* inside the block: a start (the app's lifespan,
    ``ensure_initialized``) yields *resource* without any I/O or settings, its probe passes, its stop does
    nothing, and ``get(name)`` returns it (also when the component was started before the block)::

        with infraboot.testing.fake_component("pg_pool", FakePool()):
            async with infraboot.testing.lifespan(app):
                ...

    On exit the component is itself again (a start inside the block stays until it is stopped).
    """
    target = default_system() if system is None else system
    target.state(name)  # an unknown name: UnknownComponentError with a did-you-mean
    component = target.components[name]

    async def stand_in(ctx: Any) -> tuple[Any, Any]:
        async def close(reason: str | None) -> None:
            return None

        return resource, close

    async def passes(*args: Any, **kwargs: Any) -> None:
        return None

    with substitute(component, open_=stand_in, check=passes, configure=lambda: None), target.override(name, resource):
        yield resource


class Fakes:
    """What the ``infraboot_fake`` fixture gives: fakes of any component, each undone at the end of the test
    (annotate it ``infraboot_fake: infraboot.testing.Fakes``).

    - ``await infraboot_fake.redis("cache")``: the Redis component ``cache`` started on a fresh fakeredis
      server (see :func:`infraboot.testing.fake_redis`); returns its client.
    - ``await infraboot_fake.database("reports")``: a database component on SQLite in memory; returns the engine.
    - ``infraboot_fake.component("pg_pool", FakePool())``: a component of your own stands in with a resource
      (see :func:`infraboot.testing.fake_component`); returns the resource.

    Each takes ``system=`` for a :class:`~infraboot.SystemInitializer` of your own (default: the test's
    default system).
    """

    def __init__(self, stack: contextlib.AsyncExitStack) -> None:
        self._stack = stack

    async def redis(self, name: str = "redis", *, system: SystemInitializer | None = None) -> Any:
        return await self._stack.enter_async_context(fake_redis(name, system=system))

    async def database(self, name: str = "database", *, system: SystemInitializer | None = None) -> Any:
        return await self._stack.enter_async_context(fake_database(name, system=system))

    def component(self, name: str, resource: R, *, system: SystemInitializer | None = None) -> R:
        faked: R = self._stack.enter_context(fake_component(name, resource, system=system))
        return faked
