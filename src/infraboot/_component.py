"""Components: what infraboot starts, checks and stops.

Two equivalent ways to write one: subclass :class:`Component`, or decorate an
async generator function with :func:`component` (setup before ``yield``,
teardown after).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from typing import Any, Generic, TypedDict, TypeVar, Unpack

from ._checks import count_problem, seconds_problem
from ._deadlines import TaskSet, run_within
from ._errors import classify_error
from ._graph import is_name
from ._log import event
from ._retry import RetryPolicy
from ._traffic import Traffic
from .exceptions import ConfigError

__all__ = [
    "Closer",
    "Component",
    "ComponentOptions",
    "Context",
    "FunctionComponent",
    "NotConfigured",
    "classify_error",
    "component",
]

T = TypeVar("T")
R = TypeVar("R")
Closer = Callable[[str | None], Awaitable[None]]
"""Releases a started resource; takes the reason of an early stop (``None`` for an ordinary one)."""


class NotConfigured(str):
    """Returned by :meth:`Component.configure` for an optional component that is not configured.

    Unlike a plain reason string (a quiet ``disabled``), the component is then ``failed``
    with the error code ``not_configured``: health says ``warn``, ``get()`` raises
    :class:`~infraboot.ComponentUnavailableError`, and nothing is retried.
    """

    __slots__ = ()


class ComponentOptions(TypedDict, total=False):
    """The settings of a component, as keyword arguments (see :class:`Component` for each one)."""

    requires: Collection[str]
    required: bool
    timeout: float
    retries: int
    backoff_initial: float
    backoff_max: float
    deadline: float | None
    check_timeout: float
    stop_timeout: float
    failure_threshold: int | None
    kind: str


_OPTIONS = frozenset(ComponentOptions.__annotations__)
_SECONDS = ("timeout", "check_timeout", "stop_timeout", "backoff_initial", "backoff_max")


class Context:
    """Handed to a component's ``start``: the resources of the components it requires.

    ``ctx.get("database")`` returns the live resource of a requirement. Asking for a
    component that is not in ``requires`` is an error, so the dependency graph
    always says the truth about start and stop order. ``ctx.traffic`` is where the resource's
    driver hooks report what live traffic sees (passive health, see :class:`~infraboot.Traffic`).
    """

    __slots__ = ("_resources", "attempt", "component", "stop_reason", "traffic")

    def __init__(
        self, component: str, resources: Mapping[str, Any], attempt: int = 1, *, traffic: Traffic | None = None
    ) -> None:
        self.component = component
        self.attempt = attempt
        self._resources = resources
        #: Report connection-class errors (and successes) of live traffic here; a no-op outside a system.
        self.traffic = traffic if traffic is not None else Traffic()
        #: Set before the teardown runs: ``None`` for an ordinary stop (shutdown, ``stop()``),
        #: else one redacted line saying why the resource is released early (a rollback).
        self.stop_reason: str | None = None

    def get(self, name: str) -> Any:
        try:
            return self._resources[name]
        except KeyError:
            msg = (
                f"component {self.component!r} asked for {name!r}, which it does not require; "
                f"add it to requires, e.g. requires=[{name!r}]"
            )
            raise ConfigError(msg) from None

    async def open(self, make: Awaitable[R], *, close: Callable[[R], Awaitable[object]], grace: float = 10.0) -> R:
        """Await a client's constructor so that a cancelled attempt leaves nothing open.

        For a constructor that hands back nothing until it is done (arq's ``create_pool``,
        ``aio_pika.connect_robust``, ``SomeClient.connect()``): when this attempt is cancelled
        (its ``timeout``, a shutdown, SIGTERM) the cancellation goes on at once, while the
        constructor is left to finish for up to *grace* seconds and whatever it returns then
        is closed with *close* (a constructor that fails or outlives *grace* is cancelled: it
        releases its own pieces, or nothing can). Without this, a cancel inside the constructor
        loses the half-made client, its connections open until the garbage collector::

            pool = await ctx.open(create_pool(redis_settings), close=lambda pool: pool.aclose())
        """
        made = asyncio.ensure_future(make)
        try:
            return await asyncio.shield(made)
        except asyncio.CancelledError:
            # Not the component's strays: a failed startup cancels those at once, and this must outlive the attempt.
            _CLOSING.spawn(
                _close_when_made(self.component, made, close, grace), name=f"infraboot-open-{self.component}"
            )
            raise

    def __repr__(self) -> str:
        return f"<Context component={self.component!r} attempt={self.attempt} requires={sorted(self._resources)}>"


_CLOSING = TaskSet()  # closers of cancelled constructors; each bounded by its own grace


async def _close_when_made(
    component: str, made: asyncio.Future[R], close: Callable[[R], Awaitable[object]], grace: float
) -> None:
    """What a cancelled attempt's constructor still returns is closed: nobody will use it."""
    try:
        resource = await run_within(made, grace, name=f"infraboot-open-{component}-late", abandoned=TaskSet())
        await run_within(close(resource), grace, name=f"infraboot-open-{component}-close", abandoned=TaskSet())
    except Exception as exc:
        event(logging.INFO, "cancelled_open_not_closed", component, error=f"{type(exc).__name__}: {exc}")
        return
    event(logging.INFO, "cancelled_open_closed", component)


class Component(Generic[T]):
    """A piece of infrastructure that infraboot starts, checks and stops.

    Subclass it and override :meth:`start` (required), :meth:`check` and
    :meth:`stop`; set the settings as class attributes or pass them to
    ``__init__``::

        class Search(infraboot.Component[SearchClient]):
            name = "search"
            requires = ("database",)
            required = False

            async def start(self, ctx):
                return await SearchClient.connect(dsn=ctx.get("database").url)

            async def stop(self, client):
                await client.close()

    Settings (all validated at construction, before any I/O):

    - ``requires``: names of the components that must be ready first.
    - ``required``: when ``True`` (the default) a failure fails the whole startup;
      when ``False`` the system runs "degraded" without it.
    - ``timeout``: seconds one start attempt may take (default 10).
    - ``retries``: extra attempts after the first (default 3), with exponential
      backoff and full jitter between ``backoff_initial`` and ``backoff_max``.
    - ``deadline``: optional total seconds for all attempts together.
    - ``check_timeout`` / ``stop_timeout``: seconds a health probe / a stop may take.
    - ``failure_threshold``: failures in a row (failed probes, and connection errors or timeouts
      met by live traffic) before this component is unhealthy; ``None`` (the default): the
      system's ``failure_threshold``.
    - ``kind``: the ``componentType`` in health output (``"datastore"``, ``"component"``, ...).
    """

    name: str = ""
    kind: str = "component"
    requires: Collection[str] = ()
    required: bool = True
    timeout: float = 10.0
    retries: int = 3
    backoff_initial: float = 0.1
    backoff_max: float = 10.0
    deadline: float | None = None
    check_timeout: float = 5.0
    stop_timeout: float = 10.0
    failure_threshold: int | None = None

    def __init__(self, name: str | None = None, **options: Unpack[ComponentOptions]) -> None:
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            msg = (
                f"{type(self).__name__}: unknown setting(s) {', '.join(unknown)}; "
                f"the settings are {', '.join(sorted(_OPTIONS))}"
            )
            raise ConfigError(msg)
        if name is not None:
            self.name = name
        for key, value in options.items():
            setattr(self, key, value)
        self._validate_definition()

    # -- definition -------------------------------------------------------------------

    def _validate_definition(self) -> None:
        problems: list[str] = []
        name = self.name
        label = f"component {name!r}" if isinstance(name, str) and name else f"{type(self).__name__}"
        if not is_name(name):
            problems.append(
                f"{label}: name={name!r} must be a non-empty identifier-like string "
                "(letters, digits, '_', '-', '.'), e.g. name='search'"
            )
        requires = self.requires
        if isinstance(requires, str | bytes) or not isinstance(requires, Collection):
            problems.append(
                f"{label}: requires={requires!r} must be a list of component names, e.g. requires=['database']"
            )
        else:
            bad = [r for r in requires if not is_name(r)]
            if bad:
                problems.append(f"{label}: requires contains {bad!r}; each entry must be a component name string")
            else:
                self.requires = tuple(dict.fromkeys(requires))
                if isinstance(name, str) and name in self.requires:
                    problems.append(f"{label}: a component cannot require itself; remove {name!r} from requires")
        if not isinstance(self.required, bool):
            problems.append(f"{label}: required={self.required!r} must be True or False")
        found = [seconds_problem(field, getattr(self, field)) for field in _SECONDS]
        found.append(seconds_problem("deadline", self.deadline, allow_none=True))
        found.append(count_problem("retries", self.retries))
        if self.failure_threshold is not None:
            found.append(count_problem("failure_threshold", self.failure_threshold, minimum=1))
        if not isinstance(self.kind, str) or not self.kind:
            found.append(f"kind={self.kind!r} must be a short word such as 'datastore' or 'component'")
        problems.extend(f"{label}: {p}" for p in found if p)
        if problems:
            raise ConfigError("; ".join(problems), problems=tuple(problems))

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.retries, self.backoff_initial, self.backoff_max)

    # -- hooks for subclasses -------------------------------------------------------------

    def configure(self) -> str | None:
        """Validate configuration before any I/O.

        Raise :class:`~infraboot.ConfigError` naming each bad field and its fix; return a
        reason string to mark the component ``disabled`` (switched off on purpose), or a
        :class:`NotConfigured` reason for an optional component left unconfigured (health
        ``warn``). Called at the start of every ``ensure_initialized`` that includes it.
        """
        return None

    async def start(self, ctx: Context) -> T:
        """Create the resource; ``ctx.get(name)`` returns a requirement's resource.

        If the start is cancelled (its deadline passed), release what was created
        before re-raising: infraboot cannot stop a resource it never received.
        """
        msg = f"{type(self).__name__} must implement 'async def start(self, ctx)' and return the resource"
        raise NotImplementedError(msg)

    async def check(self, resource: T) -> None:
        """Probe the resource; raise when it is unhealthy. The default probe always passes."""
        return

    async def stop(self, resource: T) -> None:
        """Release the resource. Called once, in reverse dependency order, under ``stop_timeout``."""
        return

    async def warm(self, resource: T) -> None:
        """Refill the resource's pool after a recovery; the default does nothing.

        The monitor calls it when an unhealthy component answers again (its pool may have
        lost every connection in the outage), under ``check_timeout``. A failure is logged
        and changes nothing: the component stays ready.
        """
        return

    def pool_stats(self, resource: T) -> dict[str, int] | None:
        """Connection-pool figures for metrics (``{"in_use": 3, "idle": 7}``), or ``None`` when there is no pool."""
        return None

    def health_details(self, resource: T) -> Mapping[str, Any] | None:
        """Extra facts for health output with ``details=True`` (the current master, slot counts).

        Called on every readiness answer: read what the last :meth:`check` saw, do no I/O.
        JSON-able values only, never a secret. ``None`` (the default): nothing to add.
        """
        return None

    @property
    def target(self) -> str | None:
        """What the component connects to, redacted (a URL with ``***`` for the password), for messages."""
        return None

    def after_fork(self, resource: T) -> T | None:
        """Called in a child process forked after startup (gunicorn ``--preload``, multiprocessing).

        Return a resource the child may use (built without closing the parent's
        sockets), or ``None`` to have the component started afresh on next use.
        """
        return None

    def is_retryable(self, exc: Exception) -> bool:
        """Whether a failed start attempt may be retried.

        The default retries everything but configuration errors and a few errors that
        cannot heal by waiting (``TypeError``, ``NotImplementedError``, ...).
        Override it to refuse, say, authentication failures.
        """
        return not isinstance(exc, ConfigError | TypeError | NotImplementedError | AttributeError | ImportError)

    def classify(self, exc: BaseException) -> str:
        """A short, stable error code for reports and metrics (never a driver message)."""
        return classify_error(exc)

    async def _open(self, ctx: Context) -> tuple[T, Closer]:
        """Start once; returns the resource and the closer that releases it."""
        resource = await self.start(ctx)

        async def close(reason: str | None) -> None:
            ctx.stop_reason = reason
            await self.stop(resource)

        return resource, close

    def __repr__(self) -> str:
        flag = "required" if self.required else "optional"
        requires = f" requires={list(self.requires)}" if self.requires else ""
        return f"<{type(self).__name__} {self.name!r} {flag}{requires}>"


class FunctionComponent(Component[T]):
    """A component made from an async generator function by :func:`component`."""

    def __init__(
        self,
        fn: Callable[[Context], AsyncIterator[T]],
        name: str,
        *,
        check: Callable[[T], Awaitable[object]] | None = None,
        **options: Unpack[ComponentOptions],
    ) -> None:
        label = f"@infraboot.component({name!r})"
        fn_name = getattr(fn, "__qualname__", repr(fn))
        if not inspect.isasyncgenfunction(fn):
            if inspect.isgeneratorfunction(fn):
                how = f"{fn_name} is a sync generator; write it as 'async def {fn_name}(ctx): ... yield resource'"
            elif inspect.iscoroutinefunction(fn):
                how = f"{fn_name} returns instead of yielding; replace 'return resource' with 'yield resource'"
            elif callable(fn):
                how = f"{fn_name} is a plain function; write it as 'async def {fn_name}(ctx): ... yield resource'"
            else:
                how = f"{fn!r} is not a function"
            msg = f"{label} needs an async generator function: {how}"
            raise ConfigError(msg)
        if check is not None and not _is_async_callable(check):
            msg = f"{label}: check={check!r} must be an async function 'async def check(resource): ...'"
            raise ConfigError(msg)
        self._fn = fn
        self._cm = contextlib.asynccontextmanager(fn)
        self._check = check
        self.__doc__ = fn.__doc__
        super().__init__(name, **options)

    async def check(self, resource: T) -> None:
        if self._check is not None:
            await self._check(resource)

    async def _open(self, ctx: Context) -> tuple[T, Closer]:
        cm = self._cm(ctx)
        where = f"component {self.name!r}: {self._fn.__qualname__}"
        try:
            resource: T = await cm.__aenter__()
        except RuntimeError as exc:
            if str(exc) != "generator didn't yield":
                raise
            msg = f"{where} returned without yielding; yield the resource once"
            raise ConfigError(msg) from None

        async def close(reason: str | None) -> None:
            ctx.stop_reason = reason
            try:
                await cm.__aexit__(None, None, None)
            except RuntimeError as exc:
                if str(exc) != "generator didn't stop":
                    raise
                msg = f"{where} yielded twice; yield the resource exactly once"
                raise RuntimeError(msg) from None

        return resource, close

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f" fn={self._fn.__qualname__}>"


def _is_async_callable(obj: object) -> bool:
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(obj, "__call__", None)  # noqa: B004 - an async __call__ counts too
    return call is not None and inspect.iscoroutinefunction(call)


def component(
    name: str,
    *,
    check: Callable[[Any], Awaitable[object]] | None = None,
    **options: Unpack[ComponentOptions],
) -> Callable[[Callable[[Context], AsyncIterator[T]]], FunctionComponent[T]]:
    """Turn an async generator function into a component.

    Setup runs before ``yield``, teardown after (through
    :func:`contextlib.asynccontextmanager`); ``ctx.get(name)`` returns a requirement's
    resource. *check* is an optional ``async def check(resource)`` probe; the other
    keyword arguments are the :class:`Component` settings (``requires``, ``required``,
    ``timeout``, ``retries``, ...). The component is not registered: pass it to
    :class:`SystemInitializer` or :func:`infraboot.register`::

        @infraboot.component("search", requires=["database"], required=False, timeout=5.0)
        async def search(ctx):
            client = await SearchClient.connect(ctx.get("database"))
            yield client
            await client.close()

        infraboot.register(search)
    """
    if callable(name) and not isinstance(name, str):
        msg = "@infraboot.component needs a name: write @infraboot.component('search', ...)"
        raise ConfigError(msg)

    def decorate(fn: Callable[[Context], AsyncIterator[T]]) -> FunctionComponent[T]:
        return FunctionComponent(fn, name, check=check, **options)

    return decorate
