"""Component definitions are validated when they are written, before any I/O."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

import infraboot
from infraboot import ConfigError


def test_plain_function_is_refused_with_the_fix() -> None:
    """A plain function names the async generator form it should take."""
    with pytest.raises(ConfigError, match=r"plain function; write it as 'async def"):

        @infraboot.component("x")  # type: ignore[arg-type]
        def x(ctx):  # type: ignore[no-untyped-def]
            return 1


def test_sync_generator_is_refused() -> None:
    """A sync generator is told to become async."""
    with pytest.raises(ConfigError, match="sync generator"):

        @infraboot.component("x")  # type: ignore[arg-type]
        def x(ctx):  # type: ignore[no-untyped-def]
            yield 1


def test_coroutine_function_is_told_to_yield() -> None:
    """An async function that returns is told to yield instead."""
    with pytest.raises(ConfigError, match="replace 'return resource' with 'yield resource'"):

        @infraboot.component("x")  # type: ignore[arg-type]
        async def x(ctx):  # type: ignore[no-untyped-def]
            return 1


def test_bare_decorator_asks_for_a_name() -> None:
    """@component without arguments explains how to name the component."""

    async def gen(ctx: infraboot.Context) -> AsyncIterator[int]:
        yield 1

    with pytest.raises(ConfigError, match=r"needs a name"):
        infraboot.component(gen)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", " ", "1abc", "a b", None, 3, "a/b"])
def test_bad_names_are_refused(name: object) -> None:
    """A name must be a non-empty identifier-like string."""
    with pytest.raises(ConfigError, match="identifier-like"):
        infraboot.Component(name)  # type: ignore[arg-type]


def test_requires_as_string_is_refused() -> None:
    """requires='database' would be a set of letters; the message shows the list form."""
    with pytest.raises(ConfigError, match=r"requires=\['database'\]"):
        infraboot.Component("search", requires="database")


def test_requiring_itself_is_refused() -> None:
    """A component cannot require itself."""
    with pytest.raises(ConfigError, match="cannot require itself"):
        infraboot.Component("a", requires=["a"])


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, "5", True])
@pytest.mark.parametrize("field", ["timeout", "check_timeout", "stop_timeout", "backoff_max"])
def test_bad_timeouts_are_refused(field: str, value: object) -> None:
    """Timeouts must be finite numbers of seconds greater than zero."""
    with pytest.raises(ConfigError, match=rf"{field}=.*seconds > 0"):
        infraboot.Component("a", **{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, 1.5, "3"])
def test_bad_retries_are_refused(value: object) -> None:
    """Retries must be a whole number >= 0."""
    with pytest.raises(ConfigError, match=r"retries=.*whole number >= 0"):
        infraboot.Component("a", retries=value)  # type: ignore[arg-type]


def test_all_problems_are_reported_at_once() -> None:
    """Every bad field of a definition is listed, not just the first."""
    with pytest.raises(ConfigError) as info:
        infraboot.Component("a", timeout=-1, retries=-1)
    assert 2 == len(info.value.problems)


def test_a_hook_written_as_a_plain_def_is_refused_when_the_component_is_made() -> None:
    """A sync stop() would fail only at shutdown, after the service ran: it is refused at once, every time."""

    class Pool(infraboot.Component[int]):
        name = "pool"

        async def start(self, ctx: infraboot.Context) -> int:
            return 1

        def stop(self, resource: int) -> None:  # type: ignore[override]
            pass

        def check(self, resource: int) -> None:  # type: ignore[override]
            pass

    for _ in range(2):  # the second instance too: the class is not remembered as checked
        with pytest.raises(ConfigError) as info:
            Pool()
        assert [
            "component 'pool': check() must be a coroutine function: write 'async def check(self, resource)'",
            "component 'pool': stop() must be a coroutine function: write 'async def stop(self, resource)'",
        ] == list(info.value.problems)


async def test_a_hook_wrapped_by_a_decorator_is_accepted_and_awaited() -> None:
    """A plain wrapper (functools.wraps) around an async hook returns its coroutine: that is a coroutine hook."""
    import functools
    from collections.abc import Callable, Coroutine

    calls: list[str] = []

    def traced(hook: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Coroutine[Any, Any, Any]]:
        @functools.wraps(hook)
        def wrapper(*args: Any) -> Coroutine[Any, Any, Any]:
            calls.append(hook.__name__)
            return hook(*args)

        return wrapper

    class Pool(infraboot.Component[int]):
        name = "pool"

        @traced
        async def start(self, ctx: infraboot.Context) -> int:
            return 1

        @traced
        async def stop(self, resource: int) -> None:
            pass

    system = infraboot.SystemInitializer([Pool()])
    await system.initialize_all()
    await system.shutdown()
    assert ["start", "stop"] == calls


def test_a_class_setting_is_checked_for_every_instance_until_it_is_valid() -> None:
    """A bad value written on the class is refused at each instance, not only the first one."""

    class Slow(infraboot.Component[int]):
        name = "slow"
        timeout = -1.0

    for _ in range(2):
        with pytest.raises(ConfigError, match=r"component 'slow': timeout=-1.0"):
            Slow()
    assert 7.0 == Slow(timeout=7.0).timeout  # an instance's own valid value is fine


def test_a_name_given_to_an_instance_is_checked_against_its_class_requirements() -> None:
    """The class was checked once; a later instance named after one of its requirements is still refused."""

    class Audit(infraboot.Component[int]):
        name = "audit"
        requires = ("database",)

    assert ("database",) == Audit().requires
    with pytest.raises(ConfigError, match="cannot require itself; remove 'database'"):
        Audit("database")
    with pytest.raises(ConfigError, match="must be a non-empty identifier-like string"):
        Audit("no spaces")


def test_an_instance_without_a_name_is_refused_after_a_named_one_passed() -> None:
    """Component's own name is "": an instance that sets none is refused, before and after the class is checked."""

    class Db(infraboot.Component[int]):
        async def start(self, ctx: infraboot.Context) -> int:
            return 1

    assert "db" == Db("db").name
    with pytest.raises(ConfigError, match=r"Db: name='' must be a non-empty identifier-like string"):
        Db()


def test_a_lambda_hook_returning_a_coroutine_is_accepted() -> None:
    """A lambda cannot be written async: `check = lambda self, r: r.ping()` returns the coroutine, which is fine."""

    class Pinged(infraboot.Component[int]):
        name = "pinged"
        check = lambda self, resource: asyncio.sleep(0)  # type: ignore[assignment]  # noqa: E731

    assert "pinged" == Pinged().name


def test_check_must_be_callable() -> None:
    """check= that is not a function is refused when the component is made."""
    with pytest.raises(ConfigError, match=r"check=.*async function"):

        @infraboot.component("x", check="SELECT 1")  # type: ignore[arg-type]
        async def x(ctx: infraboot.Context) -> AsyncIterator[int]:
            yield 1


async def test_check_may_be_a_lambda_returning_a_coroutine() -> None:
    """check=lambda client: client.ping() is a probe: its coroutine is awaited, and its failure is the check's."""

    class Client:
        def __init__(self, up: bool) -> None:
            self.up = up

        async def ping(self) -> None:
            if not self.up:
                raise ConnectionError("refused")

    @infraboot.component("x", check=lambda client: client.ping())
    async def x(ctx: infraboot.Context) -> AsyncIterator[Client]:
        yield Client(up=True)

    await x.check(Client(up=True))
    with pytest.raises(ConnectionError, match="refused"):
        await x.check(Client(up=False))


async def test_check_returning_no_awaitable_names_the_fix() -> None:
    """A sync check (check=lambda r: None) fails its first probe with a ConfigError saying to make it async."""

    @infraboot.component("x", check=lambda r: None)  # type: ignore[arg-type,return-value]
    async def x(ctx: infraboot.Context) -> AsyncIterator[int]:
        yield 1

    with pytest.raises(ConfigError, match=r"returned NoneType, not an awaitable; write 'async def check"):
        await x.check(1)


def test_subclass_settings_come_from_class_attributes() -> None:
    """A subclass can declare its settings as class attributes."""

    class Search(infraboot.Component[str]):
        name = "search"
        requires = ("database",)
        required = False
        timeout = 2.5

        async def start(self, ctx: infraboot.Context) -> str:
            return "s"

    s = Search()
    assert ("search", ("database",), False, 2.5) == (s.name, s.requires, s.required, s.timeout)
    assert "<Search 'search' optional requires=['database']>" == repr(s)


def test_subclass_with_bad_class_attributes_is_refused() -> None:
    """Class-attribute settings are validated like keyword arguments."""

    class Bad(infraboot.Component[str]):
        name = "bad"
        timeout = -3

    with pytest.raises(ConfigError, match="timeout=-3"):
        Bad()


# -- ctx.open: a client's constructor under cancellation ------------------------------------------------


class Client:
    def __init__(self) -> None:
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


async def test_ctx_open_returns_what_the_constructor_returns_and_closes_nothing() -> None:
    """Not cancelled: ctx.open is the constructor's result, left open for the component to use."""
    made = Client()

    async def connect() -> Client:
        return made

    ctx = infraboot.Context("client", {})
    assert made is await ctx.open(connect(), close=Client.aclose)
    assert False is made.closed


async def test_ctx_open_closes_what_a_cancelled_constructor_still_returns() -> None:
    """The attempt is cancelled mid-constructor: the cancel goes on at once, the late client is closed."""
    go_on = asyncio.Event()
    made: list[Client] = []

    async def connect() -> Client:
        await go_on.wait()
        made.append(Client())
        return made[-1]

    ctx = infraboot.Context("client", {})
    attempt = asyncio.ensure_future(ctx.open(connect(), close=Client.aclose))
    await asyncio.sleep(0)
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    go_on.set()
    for _ in range(100):
        if made and made[0].closed:
            break
        await asyncio.sleep(0.01)
    assert [True] == [c.closed for c in made]


async def test_ctx_open_gives_up_on_a_constructor_that_outlives_its_grace() -> None:
    """A constructor that never finishes is cancelled after grace: nothing waits for it forever."""
    cancelled = asyncio.Event()

    async def connect() -> Client:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Client()

    ctx = infraboot.Context("client", {})
    attempt = asyncio.ensure_future(ctx.open(connect(), close=Client.aclose, grace=0.05))
    await asyncio.sleep(0)
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    await asyncio.wait_for(cancelled.wait(), timeout=5)
    assert cancelled.is_set()


def test_a_subclass_of_the_generator_component_that_sets_a_setting_itself_is_checked() -> None:
    """A setting a FunctionComponent subclass's own __init__ assigns is checked like one passed as an option."""
    from infraboot._engine._component import FunctionComponent

    async def gen(ctx: infraboot.Context) -> AsyncIterator[int]:
        yield 1

    class Timed(FunctionComponent[int]):
        def __init__(self, name: str, timeout: Any) -> None:
            self.timeout = timeout
            super().__init__(gen, name)

    assert 5.0 == Timed("fine", 5.0).timeout
    with pytest.raises(ConfigError, match=r"component 'bad': timeout=-5"):
        Timed("bad", -5)
