"""The test kit's building blocks: fakes, outages, an ASGI lifespan runner."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

from infraboot import _asgi
from infraboot._default import default_system
from infraboot._state import ComponentState
from infraboot._system import SystemInitializer
from infraboot.exceptions import ComponentUnavailableError, ConfigError

__all__ = ["fake_env", "lifespan", "memory_server", "outage"]


def memory_server(name: str) -> Any:
    """The ``fakeredis.FakeServer`` behind ``REDIS_URL=memory://<name>`` (created on first use)."""
    import fakeredis

    from infraboot._redis import _memory_servers

    return _memory_servers.setdefault(name, fakeredis.FakeServer())


@contextlib.contextmanager
def fake_env(*, redis: bool = False, database: bool = False) -> Iterator[dict[str, str]]:
    """Point ``REDIS_URL`` / ``DATABASE_URL`` at fresh fakes inside the block, then restore the environment.

    Redis gets a FakeServer of its own (no keys shared with any other block); the database
    is SQLite in memory on one shared connection, so tables created in one session are
    seen by the next. Yields the variables it set.
    """
    from infraboot._redis import _memory_servers

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
        _memory_servers.pop(name, None)


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

    component.check = refuse  # type: ignore[method-assign]
    component._open = refuse  # type: ignore[method-assign]
    if server is not None:
        server.connected = False
    try:
        if target.state(name) is ComponentState.READY:
            await target.health(fresh=True)
        yield
    finally:
        del component.check
        del component._open
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


@contextlib.asynccontextmanager
async def lifespan(
    app: Any, *, components: Iterable[str] | None = None, started: bool = True
) -> AsyncIterator[Mapping[str, Any]]:
    """Run an ASGI app's lifespan around the block (any ASGI framework); yields the lifespan state.

    A failed startup raises ``RuntimeError`` with the server's message; shutdown runs on
    exit, also when the block raises::

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
    try:
        task = asyncio.get_running_loop().create_task(app(scope, receive, send), name="infraboot-test-lifespan")
    finally:
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
