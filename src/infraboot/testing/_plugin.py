"""The pytest plugin (entry point ``pytest11``): fixtures for testing applications that use infraboot.

Loaded automatically wherever infraboot is installed. Between tests it puts the default
system back as the application registered it (see ``infraboot_reset`` and the
``infraboot_reset`` ini option); its async fixtures run in the test's own event loop
under pytest-asyncio or anyio's pytest plugin, whichever runs the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import inspect
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

import pytest

from infraboot._engine._backoff import is_testing, set_testing, testing_attempts
from infraboot._engine._system import SystemInitializer
from infraboot._front._default import default_system, reset_default_system

from . import _kit
from ._kit import LifespanRunner, fake_env, lifespan
from ._override import Baseline, close_open_overrides, iter_held, open_overrides, override
from ._proxy import TcpProxy, open_proxies, proxy_factory

__all__ = [
    "drive",
    "fake_database",
    "fake_redis",
    "infraboot_fake",
    "infraboot_lifespan",
    "infraboot_override",
    "infraboot_proxy",
    "infraboot_reset",
    "infraboot_system",
]

T = TypeVar("T")

MODES = ("function", "session", "off")
NO_RUNNER = (
    "infraboot's async fixtures need an async test runner: install pytest-asyncio "
    '(asyncio_mode = "auto", or @pytest.mark.asyncio on each test) or use anyio\'s pytest plugin '
    '(@pytest.mark.anyio, or anyio_mode = "auto", with an anyio_backend fixture); see infraboot\'s docs/testing.md'
)
#: Seconds the reset gives a test's leftover components to shut down in the test's loop.
SHUTDOWN_TIMEOUT = 5.0
_SCOPES = ("function", "class", "module", "package", "session")
_BUSY = ("starting", "running", "stopping", "startup failed")

_baseline = Baseline()
_hinted: list[bool] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "infraboot_reset",
        "infraboot's reset between tests: function (a fresh default system for every test, the default), "
        "session (one default system for the session; testing mode and overrides still restored), off",
        default="function",
    )


def pytest_configure(config: pytest.Config) -> None:
    mode = _mode(config)
    if mode not in MODES:
        msg = f'infraboot_reset = {mode!r}: use one of {", ".join(MODES)}, e.g. infraboot_reset = "session"'
        raise pytest.UsageError(msg)


def _mode(config: pytest.Config) -> str:
    return str(config.getini("infraboot_reset") or "function").strip().lower()


# -- the test's event loop --------------------------------------------------------------------------


class _Loop(Protocol):
    def run(self, fn: Callable[[], Awaitable[T]]) -> T: ...

    def drive(self, block: Callable[[], contextlib.AbstractAsyncContextManager[T]]) -> Iterator[T]: ...


class _AsyncioLoop:
    """The loop pytest-asyncio runs the test in (it is not running between the test's steps)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        async def call() -> T:
            return await fn()

        return self.loop.run_until_complete(call())

    def drive(self, block: Callable[[], contextlib.AbstractAsyncContextManager[T]]) -> Iterator[T]:
        cm = block()
        value = self.run(cm.__aenter__)
        try:
            yield value
        finally:
            self.run(lambda: cm.__aexit__(None, None, None))


class _AnyioLoop:
    """anyio's test runner, held open (a lease) for as long as we need it."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        async def call() -> T:
            return await fn()

        result: T = self.runner.run_fixture(call, {})
        return result

    def drive(self, block: Callable[[], contextlib.AbstractAsyncContextManager[T]]) -> Iterator[T]:
        async def fixture() -> AsyncIterator[T]:
            async with block() as value:
                yield value

        yield from self.runner.run_asyncgen_fixture(fixture, {})


@contextlib.contextmanager
def _test_loop(request: pytest.FixtureRequest) -> Iterator[_Loop | None]:
    """The event loop the test runs in (``None`` when no runner runs it on asyncio)."""
    item = request.node
    if "anyio_backend" in request.fixturenames:
        from anyio.pytest_plugin import extract_backend_and_options, get_runner

        name, options = extract_backend_and_options(request.getfixturevalue("anyio_backend"))
        if name != "asyncio":
            yield None
            return
        with get_runner(name, options) as runner:
            yield _AnyioLoop(runner)
        return
    scope = _asyncio_loop_scope(request.config, item, is_async=_is_async(request))
    if scope is None:
        yield None
        return
    yield _AsyncioLoop(request.getfixturevalue(f"_infraboot_loop_{scope}"))


def drive(
    request: pytest.FixtureRequest, block: Callable[[], contextlib.AbstractAsyncContextManager[T]]
) -> Iterator[T]:
    """Run the async *block* around the test in the test's own event loop: setup now, teardown after the test."""
    with _test_loop(request) as loop:
        if loop is None:
            backend = request.getfixturevalue("anyio_backend") if "anyio_backend" in request.fixturenames else None
            if backend is not None:
                msg = (
                    f"infraboot runs on asyncio: anyio_backend {backend!r} is not supported; "
                    'use anyio_backend = "asyncio" (or ("asyncio", {"use_uvloop": True}))'
                )
                pytest.fail(msg, pytrace=False)
            pytest.fail(NO_RUNNER, pytrace=False)
        yield from loop.drive(block)


def _asyncio_loop_scope(config: pytest.Config, item: Any, *, is_async: bool) -> str | None:
    """The loop scope pytest-asyncio runs *item* in (its fixtures' default for a sync test); ``None``: not its test."""
    if not _HAS_ASYNCIO or not config.pluginmanager.has_plugin("asyncio"):
        return None
    if is_async:
        marker = item.get_closest_marker("asyncio")
        if marker is None:
            return None  # strict mode and an unmarked test: nobody runs it
        scope = (
            marker.kwargs.get("loop_scope")
            or marker.kwargs.get("scope")
            or _ini(config, "asyncio_default_test_loop_scope")
        )
    else:
        scope = _ini(config, "asyncio_default_fixture_loop_scope")
    return scope if scope in _LOOP_FIXTURES else "function"


def _ini(config: pytest.Config, name: str) -> str | None:
    try:
        value = config.getini(name)
    except ValueError:  # an older pytest-asyncio without this option
        return None
    return str(value) if value else None


# -- the reset between tests ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def infraboot_reset(request: pytest.FixtureRequest) -> Iterator[None]:
    """Put the default system back as the application registered it, around every test.

    With ``infraboot_reset = "function"`` (the default): the test gets a fresh default system
    holding the components registered when the session started (at import time, in
    conftest), each as it was then; what the test left running is shut down in the test's
    own event loop (at most 5 s), or forgotten with a ``ResourceWarning`` naming the test
    when its loop is gone. With ``"session"``: one default system for the whole session.
    Either way, testing mode (:func:`infraboot.set_testing`) and overrides entered through
    :func:`infraboot.testing.override` are restored after each test. ``"off"``: nothing.
    """
    mode = _mode(request.config)
    if mode == "off":
        yield
        return
    testing = set_testing(is_testing(), attempts=testing_attempts())  # restores the mode as it is now
    overrides = open_overrides()
    _empty_caches()
    try:
        if mode == "session":
            yield
            return
        session = reset_default_system(None)
        if session is not None:
            _hint_started(session)
        reset_default_system(_baseline.fresh_system(session))
        with _test_loop(request) if _is_async(request) else contextlib.nullcontext() as loop:
            try:
                yield
            finally:
                close_open_overrides(overrides)
                used = reset_default_system(session)
                if used is not None and used is not session:
                    _stop(used, loop, request.node.nodeid)
                _baseline.restore_components()
    finally:
        close_open_overrides(overrides)
        testing.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def _infraboot_open_proxies(request: pytest.FixtureRequest) -> Iterator[None]:
    """Close every :class:`TcpProxy` the test started and left open, then say so with a ``ResourceWarning``.

    A proxy started before the test (by a session- or module-scoped fixture) is left alone.
    Under ``filterwarnings = error`` the warning fails the test's teardown: the proxy is closed
    first either way, so it never runs into the next test.
    """
    before = set(open_proxies())
    yield
    left = [proxy for proxy in open_proxies() if proxy not in before]
    if not left:
        return
    named = ", ".join(map(repr, left))  # before closing: the address each was listening on
    problems = []
    for proxy in reversed(left):
        try:
            proxy.close()
        except Exception as exc:  # one stuck proxy must not keep the others open
            problems.append(f"{proxy!r}: {type(exc).__name__}: {exc}")
    failed = f" (closing failed: {'; '.join(problems)})" if problems else ""
    warnings.warn(
        f"infraboot: {request.node.nodeid} left {len(left)} TcpProxy open ({named}); "
        f"closed at the end of the test{failed}. Close it in the test (`with TcpProxy(...) as proxy:` or "
        "proxy.close()), or use the infraboot_proxy fixture, which does",
        ResourceWarning,
        stacklevel=2,
    )


def _empty_caches() -> None:
    """Every cache's L1 starts empty: a module-level ``@cached`` value must not outlive its test's fakes."""
    core = sys.modules.get("infraboot._cache._core")  # never imported here: a suite without the cache pays nothing
    if core is not None:
        core.reset_local_levels()


def _is_async(request: pytest.FixtureRequest) -> bool:
    return inspect.iscoroutinefunction(getattr(request.node, "function", None))


def _stop(system: SystemInitializer, loop: _Loop | None, test: str) -> None:
    """Shut down what *test* left running: in its own loop if we have it, else forget it and say so."""
    if system.phase not in _BUSY and not any(iter_held(system)):
        return
    problem = ""
    if loop is not None:
        try:
            loop.run(lambda: system.shutdown(timeout=SHUTDOWN_TIMEOUT))
        except Exception as exc:
            problem = f" (shutting them down in the test's event loop failed: {type(exc).__name__}: {exc})"
        else:
            return
    held = list(iter_held(system))
    _forget_quietly(system)
    if held:
        warnings.warn(
            f"infraboot: {test} left components {held} running and their event loop is gone{problem}; they were "
            "forgotten without being closed. Shut them down in the test (await infraboot.shutdown()), or use "
            "the infraboot_system fixture, which does",
            ResourceWarning,
            stacklevel=2,
        )


def _forget_quietly(system: SystemInitializer) -> None:
    """Forget *system* and collect what it dropped now, so that no warning of theirs lands in a later test."""
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None  # the warning after this names the test that leaked
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            system.forget()
            gc.collect()
    finally:
        sys.unraisablehook = hook


def _hint_started(session: SystemInitializer) -> None:
    held = list(iter_held(session))
    if held and not _hinted:
        _hinted.append(True)
        warnings.warn(
            f"infraboot: components {held} of the default system were started outside a test (by a session- or "
            "module-scoped fixture?); every test gets a fresh default system and cannot see them. To start them "
            'once per session, set infraboot_reset = "session" in your pytest configuration (see docs/testing.md)',
            pytest.PytestWarning,
            stacklevel=2,
        )


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def infraboot_proxy() -> Iterator[Callable[[str | tuple[str, int]], TcpProxy]]:
    """``proxy = infraboot_proxy(url)``: a started :class:`~infraboot.testing.TcpProxy` in front of *url*,
    closed at the end of the test (``proxy.url_for(url)``, ``blackhole()``, ``refuse()``, ``restore()``)."""
    yield from proxy_factory()


@pytest.fixture
def infraboot_override() -> Iterator[Callable[..., Any]]:
    """``infraboot_override("redis", fake)``: replace a resource until the end of the test."""
    with contextlib.ExitStack() as stack:

        def apply(name: str, resource: Any, **kwargs: Any) -> Any:
            return stack.enter_context(override(name, resource, **kwargs))

        yield apply


@pytest.fixture
def infraboot_system(request: pytest.FixtureRequest) -> Iterator[SystemInitializer]:
    """The default system of this test, in testing mode (no backoff), shut down at the end.

    Under ``infraboot_reset = "session"`` it is the session's system and is left running.
    """
    keep = _mode(request.config) == "session"

    @contextlib.asynccontextmanager
    async def block() -> AsyncIterator[SystemInitializer]:
        system = default_system()
        with set_testing(attempts=1):
            try:
                yield system
            finally:
                if not keep:
                    await system.shutdown()

    yield from drive(request, block)


def _started(
    system: SystemInitializer, name: str, **fakes: bool
) -> Callable[[], contextlib.AbstractAsyncContextManager[Any]]:
    @contextlib.asynccontextmanager
    async def block() -> AsyncIterator[Any]:
        if name in set(iter_held(system)):
            msg = (
                f"fake_{name}: {name!r} is started already (by a session-scoped fixture?); the fixture starts a "
                f"fresh one for each test. Use infraboot.get({name!r}) for the session's, or stop it first"
            )
            pytest.fail(msg, pytrace=False)
        fake = _kit.fake_redis if name == "redis" else _kit.fake_database
        with fake_env(**fakes):  # the variables too, for code of the app that reads them
            async with fake(name, system=system) as resource:
                yield resource

    return block


@pytest.fixture
def fake_redis(request: pytest.FixtureRequest, infraboot_system: SystemInitializer) -> Iterator[Any]:
    """A started ``redis`` component on a fresh fakeredis server: no keys shared with any other test.

    ``infraboot.get_redis()`` returns this client for the whole test; the ``client_options`` the app gave
    (``decode_responses``) hold, a URL it gave does not. A named instance: ``infraboot_fake.redis("cache")``.
    """
    yield from drive(request, _started(infraboot_system, "redis", redis=True))


@pytest.fixture
def fake_database(request: pytest.FixtureRequest, infraboot_system: SystemInitializer) -> Iterator[Any]:
    """A started ``database`` component on SQLite in memory; tables are shared across the test's sessions.

    Yields the ``AsyncEngine``; ``infraboot.get_session()`` works for the whole test, with the
    ``session_options`` the app gave. Needs aiosqlite: ``pip install "infraboot[testing]"`` (or
    ``"infraboot[sqlite]"``), also when the app runs on PostgreSQL.
    """
    if importlib.util.find_spec("aiosqlite") is None:
        pytest.fail(_kit.SQLITE_NEEDED, pytrace=False)
    yield from drive(request, _started(infraboot_system, "database", database=True))


@pytest.fixture
def infraboot_fake(request: pytest.FixtureRequest, infraboot_system: SystemInitializer) -> Iterator[_kit.Fakes]:
    """Fakes of named Redis and database instances and of an app's own components, undone after the test
    (see :class:`Fakes`): ``await infraboot_fake.redis("cache")``, ``infraboot_fake.component("pg_pool", pool)``."""

    @contextlib.asynccontextmanager
    async def block() -> AsyncIterator[_kit.Fakes]:
        async with contextlib.AsyncExitStack() as stack:
            yield _kit.Fakes(stack)

    yield from drive(request, block)


@pytest.fixture
def infraboot_lifespan(request: pytest.FixtureRequest) -> Iterator[LifespanRunner]:
    """``state = await infraboot_lifespan(app)``: run an ASGI app's lifespan until the end of the test.

    Annotate it as :class:`infraboot.testing.LifespanRunner`.

    ``await infraboot_lifespan(app, components=["redis"])`` starts only those (see
    :func:`infraboot.testing.lifespan`).
    """

    @contextlib.asynccontextmanager
    async def block() -> AsyncIterator[LifespanRunner]:
        async with contextlib.AsyncExitStack() as stack:

            async def run(
                app: Any, *, components: Iterable[str] | None = None, started: bool = True
            ) -> Mapping[str, Any]:
                return await stack.enter_async_context(lifespan(app, components=components, started=started))

            yield run

    yield from drive(request, block)


# -- pytest-asyncio's loops, one fixture per loop scope ------------------------------------------------

_LOOP_FIXTURES: dict[str, Any] = {}
try:
    import pytest_asyncio
except ImportError:  # anyio's plugin, or no runner: the fixtures above say which to install
    _HAS_ASYNCIO = False
else:
    _HAS_ASYNCIO = True
    _LOOP_SCOPES = _SCOPES if "loop_scope" in inspect.signature(pytest_asyncio.fixture).parameters else ("function",)

    def _loop_fixture(scope: str) -> Any:
        async def loop() -> asyncio.AbstractEventLoop:
            return asyncio.get_running_loop()

        options: dict[str, Any] = {"loop_scope": scope} if len(_LOOP_SCOPES) > 1 else {}
        return pytest_asyncio.fixture(loop, name=f"_infraboot_loop_{scope}", **options)

    for _scope in _LOOP_SCOPES:
        _LOOP_FIXTURES[_scope] = globals()[f"_infraboot_loop_{_scope}"] = _loop_fixture(_scope)
