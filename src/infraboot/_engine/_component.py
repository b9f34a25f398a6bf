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
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Mapping
from typing import Any, Generic, TypedDict, TypeVar, Unpack

from infraboot._base._checks import count_problem, seconds_problem
from infraboot._base._errors import classify_error
from infraboot._base._log import event
from infraboot.exceptions import ConfigError

from ._deadlines import TaskSet, interrupted, run_within
from ._graph import is_name
from ._retry import RetryPolicy
from ._traffic import Traffic

__all__ = [
    "GUARDED_CLOSERS",
    "GUARDED_OPENS",
    "Closer",
    "Component",
    "ComponentOptions",
    "Context",
    "FunctionComponent",
    "NotConfigured",
    "classify_error",
    "component",
    "refusing",
    "substitute",
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
    tags: Collection[str]


_OPTIONS = frozenset(ComponentOptions.__annotations__)
_SECONDS = ("timeout", "check_timeout", "stop_timeout", "backoff_initial", "backoff_max")


class Context:
    """Handed to a component's ``start``: the resources of the components it requires.

    ``ctx.get("database")`` returns the live resource of a requirement. Asking for a
    component that is not in ``requires`` is an error, so the dependency graph
    always says the truth about start and stop order. ``ctx.traffic`` is where the resource's
    driver hooks report what live traffic sees (passive health, see :class:`~infraboot.Traffic`).
    """

    __slots__ = ("_resources", "_source", "_traffic", "attempt", "component", "stop_reason")

    def __init__(
        self,
        component: str,
        resources: Mapping[str, Any],
        attempt: int = 1,
        *,
        traffic: Traffic | None = None,
        source: Callable[[], Traffic] | None = None,
    ) -> None:
        self.component = component
        self.attempt = attempt
        self._resources = resources
        self._traffic = traffic
        self._source = source  # makes the traffic record when it is first asked for (a system's: one per component)
        #: Set before the teardown runs: ``None`` for an ordinary stop (shutdown, ``stop()``),
        #: else one redacted line saying why the resource is released early (a rollback).
        self.stop_reason: str | None = None

    @property
    def traffic(self) -> Traffic:
        """Report connection-class errors (and successes) of live traffic here; a no-op outside a system."""
        traffic = self._traffic
        if traffic is None:
            traffic = self._traffic = Traffic() if self._source is None else self._source()
        return traffic

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
    - ``tags``: words that put it in health groups (``tags=["critical"]``; see ``health_groups``).
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
    tags: Collection[str] = ()

    def __init__(self, name: str | None = None, **options: Unpack[ComponentOptions]) -> None:
        if options:
            unknown = sorted(set(options) - _OPTIONS)
            if unknown:
                msg = (
                    f"{type(self).__name__}: unknown setting(s) {', '.join(unknown)}; "
                    f"the settings are {', '.join(sorted(_OPTIONS))}"
                )
                raise ConfigError(msg)
            for key, value in options.items():
                setattr(self, key, value)
        if name is not None:
            self.name = name
        # A subclass of FunctionComponent may set settings in its own __init__: only the class itself is trusted.
        self._validate_definition(options if type(self).__dict__.get("_settings_from_options") else None)

    # -- definition -------------------------------------------------------------------

    #: Set in a class's own body when its instances' settings are only those given to ``__init__`` (its
    #: ``__init__`` sets none itself): they need not be looked for in the instance's ``__dict__``. Not inherited.
    _settings_from_options = False

    def _validate_definition(self, given: Collection[str] | None = None) -> None:
        """Check the settings: a class's own values once per class, then what this instance sets.

        Defining a component is on the startup path: a setting left at its class's value, checked
        when the class was first used, is not checked again for every instance.
        """
        cls = type(self)
        checked = _CHECKED in cls.__dict__  # the class's own mark: a subclass is checked on its own
        own = self.__dict__ if given is None else given
        if checked and _CLASS_FIELDS.isdisjoint(own):  # the common case: a checked class, and a name
            if is_name(name := self.name) and name not in self.requires:
                return
            fields: Collection[str] = _NAME_ONLY
        else:  # the name always (an instance may leave the class's, which is "" on Component), and what it sets
            fields = _CHECKED_FIELDS.intersection(own) | _NAME_ONLY if checked else _CHECKED_FIELDS
        problems = [] if checked else _hook_problems(cls)
        found, normal = _setting_problems(lambda field: getattr(self, field), fields, self.name)
        problems.extend(found)
        if problems:
            name = self.name
            label = f"component {name!r}" if isinstance(name, str) and name else f"{cls.__name__}"
            problems = [f"{label}: {p}" for p in problems]
            raise ConfigError("; ".join(problems), problems=tuple(problems))
        for field, value in normal.items():
            setattr(self, field, value)
        if not checked and _setting_problems(lambda field: getattr(cls, field), _CLASS_FIELDS, None) == ([], {}):
            setattr(cls, _CHECKED, True)  # else a class value to check (or normalize) for each instance

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
        """Start once; returns the resource and the closer that releases it (both see to an interrupt)."""
        try:
            resource = await self.start(ctx)
        except (KeyboardInterrupt, SystemExit) as exc:
            interrupted(exc)

        async def close(reason: str | None) -> None:
            ctx.stop_reason = reason
            try:
                await self.stop(resource)
            except (KeyboardInterrupt, SystemExit) as exc:
                interrupted(exc)

        return resource, close

    def __repr__(self) -> str:
        flag = "required" if self.required else "optional"
        requires = f" requires={list(self.requires)}" if self.requires else ""
        return f"<{type(self).__name__} {self.name!r} {flag}{requires}>"


class FunctionComponent(Component[T]):
    """A component made from an async generator function by :func:`component`."""

    _settings_from_options = True

    def __init__(
        self,
        fn: Callable[..., AsyncIterator[T]],
        name: str,
        *,
        check: Callable[[T], Awaitable[object]] | None = None,
        **options: Unpack[ComponentOptions],
    ) -> None:
        if not (type(fn) is types.FunctionType and fn.__code__.co_flags & inspect.CO_ASYNC_GENERATOR) and not (
            inspect.isasyncgenfunction(fn)  # a plain async generator function is read from its code, at once
        ):
            label = f"@infraboot.component({name!r})"
            fn_name = getattr(fn, "__qualname__", None) or repr(fn)
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
        if check is not None and not callable(check):
            msg = f"@infraboot.component({name!r}): check={check!r} must be an async function "
            msg += "'async def check(resource): ...'"
            raise ConfigError(msg)
        self._fn = fn
        self._check = check
        self._options = options
        self._args: tuple[Any, ...] = ()
        self._kwargs: dict[str, Any] = {}
        self._bound = _takes_only_ctx(fn)
        self.__doc__ = fn.__doc__
        super().__init__(name, **options)

    def __call__(self, *args: Any, **kwargs: Any) -> FunctionComponent[T]:
        """The component with the generator's own parameters given: ``infraboot.register(pg_pool(settings))``.

        For a generator that takes more than ``ctx`` (``async def pg_pool(ctx, settings)``): the arguments
        are checked against its signature here, and handed to it at every start. Returns a new component
        with the same name and settings; this one is left as it was.
        """
        try:
            inspect.signature(self._fn).bind(None, *args, **kwargs)
        except TypeError as exc:
            msg = f"component {self.name!r}: {self._fn.__qualname__}(ctx, ...) cannot take these arguments: {exc}"
            raise ConfigError(msg) from None
        bound = FunctionComponent(self._fn, self.name, check=self._check, **self._options)
        bound._args, bound._kwargs, bound._bound = args, kwargs, True
        return bound

    def configure(self) -> str | None:
        if not self._bound:
            needed = [
                p
                for p in list(inspect.signature(self._fn).parameters.values())[1:]
                if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            ]
            names = ", ".join(p.name for p in needed)
            example = ", ".join(f"{p.name}={p.name}" if p.kind is p.KEYWORD_ONLY else p.name for p in needed)
            msg = (
                f"component {self.name!r}: {self._fn.__qualname__} takes {names} beside ctx; "
                f"register the component with them: infraboot.register({self._fn.__name__}({example}))"
            )
            raise ConfigError(msg)
        return None

    async def check(self, resource: T) -> None:
        if self._check is None:
            return
        # Any callable returning an awaitable: a lambda (check=lambda pool: pool.fetchval("SELECT 1")) too.
        probe = self._check(resource)
        if not inspect.isawaitable(probe):
            msg = (
                f"@infraboot.component({self.name!r}): check={self._check!r} returned {type(probe).__name__}, "
                "not an awaitable; write 'async def check(resource): ...' or a lambda returning a coroutine"
            )
            raise ConfigError(msg)
        await probe

    async def _open(self, ctx: Context) -> tuple[T, Closer]:
        # The generator driven by hand, as contextlib.asynccontextmanager would (minus its wrapper's cost).
        gen = self._fn(ctx, *self._args, **self._kwargs) if self._args or self._kwargs else self._fn(ctx)
        try:
            resource: T = await anext(gen)
        except StopAsyncIteration:
            msg = f"component {self.name!r}: {self._fn.__qualname__} returned without yielding; yield the resource once"
            raise ConfigError(msg) from None
        except (KeyboardInterrupt, SystemExit) as exc:
            interrupted(exc)

        async def close(reason: str | None) -> None:
            ctx.stop_reason = reason
            try:
                try:
                    await anext(gen)
                except StopAsyncIteration:
                    return
                try:
                    msg = f"component {self.name!r}: {self._fn.__qualname__} yielded twice"
                    msg += "; yield the resource exactly once"
                    raise RuntimeError(msg)
                finally:
                    await gen.aclose()
            except (KeyboardInterrupt, SystemExit) as exc:  # in the teardown, or in the cleanup after a second yield
                interrupted(exc)

        return resource, close

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f" fn={self._fn.__qualname__}>"


def _closer_code(opener: Callable[..., Any]) -> types.CodeType:
    """The code of the ``close`` function *opener* defines: every closer it returns shares it."""
    return next(c for c in opener.__code__.co_consts if isinstance(c, types.CodeType) and c.co_name == "close")


#: The openers whose coroutines (and closers) see to a KeyboardInterrupt themselves: no wrapper is needed.
GUARDED_OPENS = frozenset({Component._open, FunctionComponent._open})
#: The code of those closers (``closer.__code__``).
GUARDED_CLOSERS = frozenset(_closer_code(opener) for opener in GUARDED_OPENS)


def _takes_only_ctx(fn: Callable[..., Any]) -> bool:
    """Whether *fn* can be called with ``ctx`` alone (its other parameters, if any, have defaults)."""
    if type(fn) is types.FunctionType:  # a plain function: read its code (inspect costs more than a start)
        code = fn.__code__
        if code.co_argcount == 1 and not code.co_kwonlyargcount:
            return True  # (ctx): the common case
        positional = code.co_argcount - len(getattr(fn, "__defaults__", None) or ())
        keyword_only = code.co_kwonlyargcount - len(getattr(fn, "__kwdefaults__", None) or {})
        return positional <= 1 and keyword_only == 0 and (positional == 1 or bool(code.co_flags & 0x04))
    try:
        inspect.signature(fn).bind(None)
    except TypeError:
        return False
    except ValueError:  # no signature to read (a builtin): it is called with ctx, as before
        return True
    return True


#: The settings a definition checks; a class's own values are checked once, on its first instance.
_CHECKED_FIELDS = frozenset(
    {"name", "requires", "tags", "required", *_SECONDS, "deadline", "retries", "failure_threshold", "kind"}
)
_NAME_ONLY = frozenset({"name"})
_CLASS_FIELDS = _CHECKED_FIELDS - _NAME_ONLY  # Component's own name is "": each instance names itself
#: Set on a class (in its own ``__dict__``) whose own values and hooks passed: its instances check only
#: their name and the settings they set. A mark, not a registry: classes made at run time can be freed.
_CHECKED = "_infraboot_checked"


def _setting_problems(
    get: Callable[[str], Any], fields: Collection[str], name: object
) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """The problems of the settings *fields* (read with *get*), and ``requires``/``tags`` as tuples
    where they were given as other collections."""
    problems: list[str] = []
    normal: dict[str, tuple[str, ...]] = {}
    if "name" in fields and not is_name(name):
        problems.append(
            f"name={name!r} must be a non-empty identifier-like string "
            "(letters, digits, '_', '-', '.'), e.g. name='search'"
        )
    if "requires" in fields and (requires := get("requires")) != ():
        if isinstance(requires, str | bytes) or not isinstance(requires, Collection):
            problems.append(f"requires={requires!r} must be a list of component names, e.g. requires=['database']")
        elif bad := [r for r in requires if not is_name(r)]:
            problems.append(f"requires contains {bad!r}; each entry must be a component name string")
        elif (unique := tuple(dict.fromkeys(requires))) != requires:
            normal["requires"] = unique
    if "name" in fields or "requires" in fields:  # a new name may be among the class's requires
        requires = normal.get("requires", get("requires"))
        if isinstance(requires, tuple) and isinstance(name, str) and name in requires:
            problems.append(f"a component cannot require itself; remove {name!r} from requires")
    if "tags" in fields and (tags := get("tags")) != ():
        if isinstance(tags, str | bytes) or not isinstance(tags, Collection) or not all(is_name(t) for t in tags):
            problems.append(f"tags={tags!r} must be a list of words, e.g. tags=['critical']")
        elif (unique := tuple(dict.fromkeys(tags))) != tags:
            normal["tags"] = unique
    if "required" in fields and not isinstance(get("required"), bool):
        problems.append(f"required={get('required')!r} must be True or False")
    found = [seconds_problem(field, get(field)) for field in _SECONDS if field in fields]
    if "deadline" in fields and (deadline := get("deadline")) is not None:
        found.append(seconds_problem("deadline", deadline))
    if "retries" in fields:
        found.append(count_problem("retries", get("retries")))
    if "failure_threshold" in fields and (threshold := get("failure_threshold")) is not None:
        found.append(count_problem("failure_threshold", threshold, minimum=1))
    if "kind" in fields and (not isinstance(kind := get("kind"), str) or not kind):
        found.append(f"kind={kind!r} must be a short word such as 'datastore' or 'component'")
    problems.extend(p for p in found if p)
    return problems, normal


def _hook_problems(cls: type) -> list[str]:
    """A hook written as a plain ``def``: its result would be awaited and fail, at the start or at shutdown."""
    problems = []
    for hook in ("start", "check", "stop", "warm"):
        fn = getattr(cls, hook, None)
        if (
            inspect.isfunction(fn)
            and fn.__name__ != "<lambda>"  # a lambda cannot be async: one returning a coroutine is fine
            and not inspect.iscoroutinefunction(fn)
            and not inspect.iscoroutinefunction(inspect.unwrap(fn))  # a decorator's wrapper (functools.wraps)
        ):
            params = "ctx" if hook == "start" else "resource"
            problems.append(f"{hook}() must be a coroutine function: write 'async def {hook}(self, {params})'")
    return problems


def component(
    name: str,
    *,
    check: Callable[[Any], Awaitable[object]] | None = None,
    **options: Unpack[ComponentOptions],
) -> Callable[[Callable[..., AsyncIterator[T]]], FunctionComponent[T]]:
    """Turn an async generator function into a component.

    Setup runs before ``yield``, teardown after (through
    :func:`contextlib.asynccontextmanager`); ``ctx.get(name)`` returns a requirement's
    resource. *check* is an optional ``async def check(resource)`` probe (or a lambda returning a
    coroutine: ``check=lambda pool: pool.fetchval("SELECT 1")``); the other
    keyword arguments are the :class:`Component` settings (``requires``, ``required``,
    ``timeout``, ``retries``, ...). The component is not registered: pass it to
    :class:`SystemInitializer` or :func:`infraboot.register`::

        @infraboot.component("search", requires=["database"], required=False, timeout=5.0)
        async def search(ctx):
            client = await SearchClient.connect(ctx.get("database"))
            yield client
            await client.close()

        infraboot.register(search)

    A generator may take parameters after ``ctx`` (the app's settings): call the component with them
    to get the component to register, ``infraboot.register(pg_pool(settings))``; they are checked
    against the signature there and handed to the generator at every start. Registered without
    them, its start is a :class:`~infraboot.ConfigError` naming the call to write, before any I/O.
    """
    if callable(name) and not isinstance(name, str):
        msg = "@infraboot.component needs a name: write @infraboot.component('search', ...)"
        raise ConfigError(msg)

    def decorate(fn: Callable[..., AsyncIterator[T]]) -> FunctionComponent[T]:
        return FunctionComponent(fn, name, check=check, **options)

    return decorate


@contextlib.contextmanager
def substitute(
    component: Component[Any],
    *,
    open_: Callable[..., Awaitable[Any]],
    check: Callable[..., Awaitable[Any]],
    configure: Callable[[], str | None] | None = None,
) -> Iterator[None]:
    """Inside the block *component* starts with *open_*, is probed with *check* (and configured by *configure*).

    The seam behind the test kit's :func:`~infraboot.testing.outage` and
    :func:`~infraboot.testing.fake_component`: instance attributes shadow the component's own
    methods, which are back on exit, whatever the block did.
    """
    component._open = open_  # type: ignore[method-assign,assignment]
    component.check = check  # type: ignore[method-assign,assignment]
    if configure is not None:
        component.configure = configure  # type: ignore[method-assign]
    try:
        yield
    finally:
        for attribute in ("_open", "check", "configure"):
            component.__dict__.pop(attribute, None)


def refusing(
    component: Component[Any], refuse: Callable[..., Awaitable[Any]]
) -> contextlib.AbstractContextManager[None]:
    """Inside the block every start attempt and every probe of *component* calls *refuse* instead."""
    return substitute(component, open_=refuse, check=refuse)
