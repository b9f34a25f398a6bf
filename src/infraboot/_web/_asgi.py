"""ASGI pieces shared by the FastAPI and Starlette adapters; no framework imported here.

- :func:`lifespan`: start components when the server starts (or behind it, ``background=True``),
  shut down when it stops.
- :class:`ProbeMiddleware`: answer the probe paths before the application's own
  middleware stack runs (auth, logging, CORS), so probes stay cheap and keep working
  when that stack is slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hmac
import importlib.util
import ipaddress
import json
import logging
import os
import signal
import sys
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any, ClassVar, Literal, NamedTuple, cast

from infraboot._base._log import event
from infraboot._engine._groups import as_group
from infraboot._engine._health import CONTENT_TYPE, HealthReport
from infraboot._engine._report import StartupReport
from infraboot._engine._retry import RetryPolicy, retry
from infraboot._engine._signals import StoppedBySignal, start_unless_stopped
from infraboot._engine._system import SystemInitializer
from infraboot._engine._traffic import loaded_outage_classes
from infraboot._front import _default
from infraboot.exceptions import ConfigError, DependencyError, NotInitializedError, StartupError

__all__ = [
    "DEFAULT_PATHS",
    "EXIT_FAILED",
    "NO_METRICS",
    "LifespanTarget",
    "OnFailure",
    "ProbeMiddleware",
    "answer_drain",
    "lifespan",
    "no_group",
    "probe",
    "render",
    "resolve_system",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Lifespan = Callable[[Any], contextlib.AbstractAsyncContextManager[Mapping[str, Any] | None]]
StateLifespan = Callable[[Any], contextlib.AbstractAsyncContextManager[Mapping[str, Any]]]

#: Probe paths and what each answers. ``/health`` and ``/ready`` are the familiar aliases.
DEFAULT_PATHS: Mapping[str, str] = {
    "/livez": "liveness",
    "/readyz": "readiness",
    "/startupz": "startup",
    "/drainz": "drain",
    "/health": "readiness",
    "/ready": "readiness",
    "/metrics": "metrics",
}

STATE_KEY = "infraboot"
STARTUP_KEY = "infraboot_startup"  # the task seeing a background startup through (the test kit waits on it)
#: Set by ``infraboot.testing.lifespan(app, components=[...])``: what the lifespan starts instead of its own list.
components_override: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "infraboot_lifespan_components", default=None
)
#: Set by the test kit's lifespan: a failed background startup never ends the test run's process.
in_test_kit: contextvars.ContextVar[bool] = contextvars.ContextVar("infraboot_in_test_kit", default=False)
#: Set by the test kit's lifespan: the StartupError/ConfigError of a failed startup, for the kit to raise as it is.
startup_failures: contextvars.ContextVar[list[BaseException] | None] = contextvars.ContextVar(
    "infraboot_startup_failures", default=None
)
#: The process exit status after a required component failed in a background startup (as ``run()``, ``check``).
EXIT_FAILED = 2


class LifespanTarget(NamedTuple):
    """What a lifespan made by :func:`lifespan` starts: *system* (``None``: the default one) and *components*."""

    system: SystemInitializer | None
    components: list[str] | None


#: Every lifespan :func:`lifespan` made, and what it starts: ``infraboot check --app`` reads it, starting nothing.
made: weakref.WeakKeyDictionary[Callable[..., Any], LifespanTarget] = weakref.WeakKeyDictionary()
#: What a background startup does when a required component fails: see :func:`lifespan`.
OnFailure = Literal["exit", "retry"] | Callable[[BaseException], Awaitable[None]]
#: Backoff between whole startups with ``on_failure="retry"``: full jitter, 1 s growing to 30 s.
RESTART_POLICY = RetryPolicy(retries=0, backoff_initial=1.0, backoff_max=30.0)
#: What /metrics answers (501) when prometheus_client is not installed.
NO_METRICS = 'metrics need prometheus_client: pip install "infraboot[metrics]"\n'


def resolve_system(
    system: SystemInitializer | None, state: Mapping[str, Any] | None = None, app: Any = None
) -> SystemInitializer:
    """The system to serve: the one given, else the lifespan's (from the request's state, else the app's)."""
    if system is not None:
        return system
    if state:
        found = state.get(STATE_KEY)
        if isinstance(found, SystemInitializer):
            return found
    found = getattr(getattr(app, "state", None), STATE_KEY, None)
    if isinstance(found, SystemInitializer):
        return found
    return _default.default_system()


def lifespan(
    components: Iterable[str] | None = None,
    *,
    system: SystemInitializer | None = None,
    inner: Lifespan | None = None,
    background: bool = False,
    on_failure: OnFailure = "exit",
) -> StateLifespan:
    """A lifespan for ``FastAPI(lifespan=...)`` / ``Starlette(lifespan=...)``.

    Starts *components* (all registered ones when ``None``) before the server accepts
    requests and shuts them down, bounded by ``shutdown_timeout``, when it stops. A
    required failure is logged as one clear line and fails the startup: the server
    reports ``lifespan.startup.failed`` and exits non-zero instead of serving errors.
    SIGTERM or SIGINT during that startup stops it within a loop turn (servers wait for the
    lifespan before they act on a signal): the attempts stop, what had started is stopped
    again, and the startup fails with a ``StartupError`` naming the signal.

    ``background=True`` serves while starting: the lifespan returns at once, so the server
    listens immediately, and the components start behind it with the same policy.
    ``/livez`` answers 200 at once, ``/startupz`` and ``/readyz`` 503 until the startup is
    done, and a handler needing a component that is not ready yet gets 503 with
    ``Retry-After``. Invalid configuration still fails the server's own startup. When a
    required component fails, *on_failure* decides:

    - ``"exit"`` (the default): log it as one line, shut the components down, and end the
      process with status 2 (``EXIT_FAILED``), a clean exit the supervisor sees and restarts
      (under a server only; never under the test kit's lifespan). With one server process per
      container; under ``--workers N`` or gunicorn the parent would restart the worker in a loop:
      use ``"retry"`` there;
    - ``"retry"``: stay up and unready, and start again after a random wait below a cap that
      starts at 1 s and doubles up to 30 s;
    - an ``async def on_failure(exc)`` of yours, called with the ``StartupError``.

    *inner* is your own lifespan, run inside ours once every component is up and ended
    before any is stopped; the state it yields is merged with ours, which holds the system
    under ``"infraboot"``. With ``background=True`` it runs behind the server too, once the
    components are up: ``/startupz`` and ``/readyz`` fail until it has yielded, the state it
    yields is set on ``app.state`` (requests read ``request.app.state.<key>``: the server took
    the request state when it began to serve), and an error in it is a failed startup that
    *on_failure* handles like a required component's (``"retry"`` enters it again, the
    components kept up). When the startup fails it never runs.
    """
    wanted = None if components is None else list(components)
    if isinstance(components, str):
        msg = f"lifespan({components!r}): pass a list of names, e.g. lifespan([{components!r}])"
        raise ConfigError(msg)
    if on_failure not in ("exit", "retry") and not callable(on_failure):
        msg = f'lifespan(on_failure={on_failure!r}): use "exit", "retry" or an async function taking the error'
        raise ConfigError(msg)

    @contextlib.asynccontextmanager
    async def _lifespan(app: Any) -> AsyncIterator[Mapping[str, Any]]:
        target = resolve_system(system)
        app_state = getattr(app, "state", None)
        if app_state is not None:  # for transports that do not pass lifespan state (httpx's ASGITransport)
            setattr(app_state, STATE_KEY, target)
        chosen = components_override.get()
        names = wanted if chosen is None else chosen
        state: dict[str, Any] = {STATE_KEY: target}
        if background:
            behind = await _start_behind(target, names, on_failure, inner, app)
            state[STARTUP_KEY] = behind.started
            if app_state is not None:
                setattr(app_state, STARTUP_KEY, behind.started)
            try:
                yield state
            finally:
                await behind.stop(target.shutdown_timeout)  # the app's own lifespan ends first, components up
                await target.shutdown()
                await behind.stopped(1.0)
            return
        try:
            report = await start_unless_stopped(target, names)  # SIGTERM/SIGINT: stop and roll back now
        except StoppedBySignal:
            raise  # logged as a warning: a stop asked for is no failure
        except (StartupError, ConfigError) as exc:
            said_once(exc)
            raise
        event(logging.INFO, "lifespan_started", status=report.status)
        adopt_driver_outages(app)
        try:
            if inner is None:
                yield state
            else:
                async with inner(app) as inner_state:
                    yield {**dict(inner_state or {}), **state}
        finally:
            await target.shutdown()

    made[_lifespan] = LifespanTarget(system, wanted)
    return _lifespan


def adopt_driver_outages(app: Any) -> None:
    """Key the app's exception handlers on the drivers' connection errors, now that the drivers are imported.

    Only for an app built with ``infraboot.starlette.exception_handlers`` (its ``Exception`` entry
    names the handler to use). Starlette keeps the ``Exception`` entry for its
    ``ServerErrorMiddleware``, which answers and then re-raises (a traceback in the server's log,
    an exception in an in-process test client); keyed on the driver's own class, the error is
    answered by ``ExceptionMiddleware`` instead, quietly. The middleware stack is built before
    the lifespan runs, so its live table is found and extended too. An entry of the app's own
    for one of these classes is kept.
    """
    handlers = getattr(app, "exception_handlers", None)
    if not isinstance(handlers, dict):
        return
    quiet = getattr(handlers.get(Exception), "infraboot_escaped", None)
    if quiet is None:
        return
    classes = loaded_outage_classes()
    tables = [handlers]
    live = _live_exception_handlers(getattr(app, "middleware_stack", None))
    if live is not None:
        tables.append(live)
    for table in tables:
        for cls in classes:
            table.setdefault(cls, quiet)


def _live_exception_handlers(stack: Any) -> dict[Any, Any] | None:
    """The handler table of Starlette's ``ExceptionMiddleware`` in a built middleware stack, if it can be found."""
    node = stack
    for _ in range(64):  # the app's own middleware, each holding the next one as .app
        if node is None:
            return None
        table = getattr(node, "_exception_handlers", None)
        if isinstance(table, dict) and type(node).__name__ == "ExceptionMiddleware":
            return table
        node = getattr(node, "app", None)
    return None


async def _start_behind(
    target: SystemInitializer, names: list[str] | None, on_failure: OnFailure, inner: Lifespan | None, app: Any
) -> Behind:
    """Begin the startup in a task and return it once its first step has run.

    That first step checks the graph and every setting before any I/O: a bad setting
    fails the server's startup here, as it does without ``background``.
    """
    first = asyncio.ensure_future(target.ensure_initialized(names))
    await asyncio.sleep(0)  # one loop turn: the task runs up to its first wait on the network
    if first.done() and not first.cancelled() and isinstance(first.exception(), ConfigError | DependencyError):
        exc = cast(BaseException, first.exception())
        said_once(exc)
        raise exc
    event(logging.INFO, "lifespan_started", status="starting", background=True)
    return Behind(target, names=names, first=first, on_failure=on_failure, inner=inner, app=app)


class Behind:
    """A background startup: the components, then the app's own lifespan (*inner*), held open until :meth:`stop`.

    ``started`` is done once both are up, or once the startup gave up; until then the startup
    and readiness probes fail. *inner* is entered and exited in this one task (a task group
    of its own stays valid), after the components are up and before they are stopped.
    """

    def __init__(
        self,
        target: SystemInitializer,
        *,
        names: list[str] | None,
        first: asyncio.Future[StartupReport],
        on_failure: OnFailure,
        inner: Lifespan | None,
        app: Any,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.started: asyncio.Future[None] = loop.create_future()
        self._release = asyncio.Event()
        self._target, self._names, self._first, self._on_failure = target, names, first, on_failure
        self._inner, self._app = inner, app
        self.task = loop.create_task(self._run(), name="infraboot-background-startup")

    async def _start(self, n: int, stack: contextlib.AsyncExitStack) -> StartupReport:
        report = await (self._first if n == 1 else self._target.ensure_initialized(self._names))
        adopt_driver_outages(self._app)
        if self._inner is not None:
            try:
                inner_state = await stack.enter_async_context(self._inner(self._app))
            except Exception as exc:
                name = getattr(self._inner, "__name__", "inner")
                msg = (
                    f"the app's own lifespan ({name}) failed once the components were up: "
                    f"{type(exc).__name__}: {exc}; fix it, or start that work outside the lifespan"
                )
                raise StartupError(msg, component=name, attempts=n, report=report) from exc
            # The server is serving already: its request state was fixed when the lifespan returned.
            app_state = getattr(self._app, "state", None)
            for key, value in dict(inner_state or {}).items():
                setattr(app_state, key, value)
        return report

    async def _run(self) -> None:
        def restarting(exc: Exception, attempt: int, wait: float) -> None:
            event(logging.ERROR, "startup_failed", error=one_line(exc), attempt=attempt, retry_in=wait)

        async with contextlib.AsyncExitStack() as stack:
            try:
                if self._on_failure == "retry":
                    report = await retry(
                        lambda n: self._start(n, stack),
                        policy=RESTART_POLICY,
                        retryable=lambda exc: isinstance(exc, StartupError),
                        on_retry=restarting,
                        forever=True,
                    )
                else:
                    report = await self._start(1, stack)
            except NotInitializedError:
                return  # the server is stopping: shutdown() began while we were starting
            except (StartupError, ConfigError) as exc:
                event(logging.CRITICAL, "startup_failed", error=one_line(exc), background=True)
                if callable(self._on_failure):
                    await self._on_failure(exc)
                else:
                    await self._target.shutdown()  # whatever optional components did start: closed before the exit
                    exit_process(EXIT_FAILED)
                return
            finally:
                if not self.started.done():
                    self.started.set_result(None)
            level = logging.INFO if report.status == "ok" else logging.WARNING
            event(level, "startup_complete", status=report.status, background=True)
            await self._release.wait()  # the app's own lifespan stays open until the server stops

    async def stop(self, budget: float) -> None:
        """The server is stopping: an unfinished startup is cancelled, the app's own lifespan exits."""
        self._release.set()
        if not self.started.done():
            self.task.cancel()  # no new attempt; shutdown() cancels the one in flight
            return
        await asyncio.wait({self.task}, timeout=budget)

    async def stopped(self, grace: float) -> None:
        await asyncio.wait({self.task}, timeout=grace)


def pending(state: Mapping[str, Any] | None, app: Any = None) -> bool:
    """A background startup (the components, then the app's own lifespan) is still under way for this request."""
    found = (state or {}).get(STARTUP_KEY) or getattr(getattr(app, "state", None), STARTUP_KEY, None)
    return isinstance(found, asyncio.Future) and not found.done()


def one_line(exc: BaseException) -> str:
    return str(exc).replace("\n", " ")


def said_once(exc: BaseException) -> None:
    """Log a failed startup as one line, and keep uvicorn from printing its traceback after it."""
    event(logging.CRITICAL, "startup_failed", error=one_line(exc))
    _ONE_LINE.expect(exc)
    failures = startup_failures.get()
    if failures is not None:
        failures.append(exc)


class _ServerTraceback(logging.Filter):
    """Drops uvicorn's copy of the traceback of a startup failure that infraboot has already said in one line.

    Starlette sends the formatted traceback in ``lifespan.startup.failed`` and uvicorn logs it
    on ``uvicorn.error``: 20-odd lines of our own frames under a line that already names the
    component, the cause and the fix. Only a traceback ending in that very error is dropped.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tails: set[str] = set()

    def expect(self, exc: BaseException) -> None:
        cls = type(exc)
        self.tails.add(f"{cls.__module__}.{cls.__qualname__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        logger = logging.getLogger("uvicorn.error")
        if self not in logger.filters:
            logger.addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.msg
        if not isinstance(text, str) or not text.startswith("Traceback"):
            return True
        for tail in self.tails:
            if tail in text:
                self.tails.discard(tail)
                return False
        return True


_ONE_LINE = _ServerTraceback()


def exit_process(status: int) -> None:
    """End this process now with *status*, its components already shut down: a failed startup, said once.

    Only under a server (something in the process handles SIGTERM) and never under the
    test kit's lifespan: elsewhere the process is left running and says so, with
    readiness and the startup probe failing.
    """
    if in_test_kit.get() or signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.SIG_IGN, None):
        event(logging.CRITICAL, "exit_skipped", hint="no server runs this app; readiness stays failed")
        return
    logging.shutdown()  # flush every handler: the failure line must reach the logs
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


async def probe(
    kind: str, system: SystemInitializer, *, starting: bool = False, group: str | None = None
) -> HealthReport:
    """Answer one probe: ``liveness``, ``readiness`` or ``startup``; *group*: a health group's readiness.

    *starting*: a background startup is still under way (see :func:`pending`): the startup and
    readiness probes fail while the app's own lifespan runs after the components are up.
    """
    if kind == "liveness":
        return system.liveness()
    if starting and system.phase == "running":
        if group is not None:
            return as_group(HealthReport("readiness", "fail", output="starting"), system.health_group(group))
        return HealthReport(kind, "fail", output="starting")  # type: ignore[arg-type]
    if kind == "startup":
        return system.startup()
    return await system.readiness(group=group)


def no_group(system: SystemInitializer, group: str) -> bytes:
    """The 404 body for ``/readyz/<group>`` when there is no such group: it names the groups there are."""
    there = list(system.health_groups or ())
    detail = f"no health group named {group!r}; the groups: {', '.join(there) or 'none (see health_groups)'}"
    return json.dumps({"detail": detail, "groups": there}, separators=(",", ":")).encode()


async def answer_drain(system: SystemInitializer, scope: Scope) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Status, JSON body and extra headers of a request to ``/drainz``; a ``POST`` allowed in runs (or joins) the drain.

    ``POST`` drains and ``DELETE`` undoes a drain; any other method is 405 and changes nothing.
    Without a ``drain_token`` only a loopback caller is let in (403 otherwise); with one, every
    caller must send ``Authorization: Bearer <token>`` (401 otherwise). The token is never logged.
    """
    method = scope["method"]
    if method not in _DRAIN_METHODS:
        detail = "POST /drainz drains and DELETE /drainz undoes it; GET and HEAD never drain"
        return 405, _detail(detail), [(b"allow", b"POST, DELETE")]
    client = scope.get("client")
    peer = str(client[0]) if client else "local"
    refusal = drain_refusal(system.drain_token, client, _header(scope, b"authorization"))
    if refusal is not None:
        status, reason = refusal
        event(logging.WARNING, "drain_refused", method=method, peer=peer, reason=reason)
        extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
        return status, _detail(f"drain refused: {reason}"), extra
    if method == "DELETE":
        undone = system.undrain()
        return 200, json.dumps({"status": "serving", "undone": undone}, separators=(",", ":")).encode(), []
    event(logging.INFO, "drain_started", peer=peer, delay=system.drain_delay)
    report = await system.drain()
    return 200, json.dumps(report.to_dict(), separators=(",", ":")).encode(), []


def drain_refusal(token: str | None, client: Any, authorization: str | None) -> tuple[int, str] | None:
    """Why a drain request is refused, as (status, reason); ``None`` when it may drain.

    *client* is the ASGI ``(host, port)`` of the peer (``None``: a Unix socket or an
    in-process call); *authorization* the request's ``Authorization`` header.
    """
    if token is not None:
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode()):
            return None
        return 401, "a missing or wrong bearer token (send Authorization: Bearer <INFRABOOT_DRAIN_TOKEN>)"
    if is_loopback(client):
        return None
    return 403, (
        "only a caller on this host (loopback) may drain while no token is set; "
        "set INFRABOOT_DRAIN_TOKEN and send Authorization: Bearer <token>"
    )


def is_loopback(client: Any) -> bool:
    """The ASGI peer is this host: 127.0.0.0/8, ::1, a Unix socket (``None``) or Starlette's in-process TestClient."""
    if client is None:
        return True
    host = str(client[0])
    if host == "testclient":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _detail(text: str) -> bytes:
    return json.dumps({"detail": text}, separators=(",", ":")).encode()


def render(report: HealthReport, *, details: bool = False) -> bytes:
    """The ``application/health+json`` body of *report*."""
    return json.dumps(report.to_dict(details=details), separators=(",", ":")).encode()


def has_metrics() -> bool:
    return importlib.util.find_spec("prometheus_client") is not None


class MetricsEndpoint:
    """Prometheus text of a registry that holds our collector (registered once per registry and system).

    Nothing here keeps a system alive: a shared registry holds, per system, a collector
    that refers to it weakly and is unregistered when the system is collected.
    """

    # registry -> {system (or the default-system key) -> its collector}
    _registered: ClassVar[weakref.WeakKeyDictionary[Any, dict[Any, Any]]] = weakref.WeakKeyDictionary()

    def __init__(self, registry: Any = None, system: SystemInitializer | None = None) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry

        from infraboot.metrics import register_metrics

        self.content_type = CONTENT_TYPE_LATEST
        if registry is None and system is not None:
            registry = CollectorRegistry()  # this system's metrics only; pass registry= to merge with yours
        self.registry = REGISTRY if registry is None else registry
        per_system = self._registered.setdefault(self.registry, {})
        key: Any = _DEFAULT if system is None else weakref.ref(system)
        if key not in per_system:
            collector = register_metrics(self.registry, system)
            per_system[key] = collector
            if system is not None:
                weakref.finalize(system, _unregister, weakref.ref(self.registry), key, collector)

    def body(self) -> bytes:
        from prometheus_client import generate_latest

        payload: bytes = generate_latest(self.registry)
        return payload


_PROBE_METHODS = ("GET", "HEAD")
_DRAIN_METHODS = ("POST", "DELETE")  # a safe method (GET, HEAD) never changes readiness
_DEFAULT = object()  # the collector that follows whatever the default system is at scrape time


def _unregister(registry_ref: weakref.ref[Any], key: Any, collector: Any) -> None:
    registry = registry_ref()
    if registry is None:
        return
    MetricsEndpoint._registered.get(registry, {}).pop(key, None)
    with contextlib.suppress(KeyError):
        registry.unregister(collector)


class ProbeMiddleware:
    """Outermost ASGI middleware answering the probe paths itself.

    Add it last (Starlette and FastAPI run the last one added outermost); the app object stays
    the one you serve, so ``uvicorn service:app`` and ``app.dependency_overrides`` keep working::

        app = FastAPI(lifespan=infraboot.fastapi.lifespan(["redis", "database"]))
        app.add_middleware(...)                       # your own stack
        app.add_middleware(ProbeMiddleware)           # last: outermost, probes skip your stack

    Wrapping an ASGI app of any framework works too (``asgi = ProbeMiddleware(app)``, serve
    ``asgi``). Probe answers carry ``Cache-Control: no-store``; a middleware added after this one
    would wrap them (its headers, its auth), so at startup a warning names any that was.

    ``GET``/``HEAD`` on ``/livez``, ``/readyz``, ``/startupz``, ``/health``, ``/ready`` (and
    ``/metrics`` when ``prometheus_client`` is installed; ``metrics=True`` answers it with a 501
    naming the install command when it is not, ``metrics=False`` leaves it out) are answered here, and
    ``POST /drainz`` runs the system's drain (a Kubernetes ``preStop`` hook; loopback callers only unless
    ``drain_token`` is set, ``DELETE`` undoes it, see :func:`answer_drain`); everything else
    goes to *app*, counted as work in flight for the drain (``drain=False`` leaves ``/drainz`` out).
    ``paths`` replaces the map (``{"/k8s/ready": "readiness"}``), ``prefix`` is put before
    every path; ``details=True`` adds latency and error codes to the body. ``/readyz/<group>``
    answers a health group (``health_groups``: its members only, its policy and time budget;
    404 naming the groups for an unknown one).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        system: SystemInitializer | None = None,
        details: bool = False,
        prefix: str = "",
        paths: Mapping[str, str] | None = None,
        metrics: bool | None = None,
        registry: Any = None,
        drain: bool = True,
    ) -> None:
        self.app = app
        self.system = system
        self.details = details
        chosen = dict(DEFAULT_PATHS if paths is None else paths)
        bad = sorted(set(chosen.values()) - {"liveness", "readiness", "startup", "metrics", "drain"})
        if bad:
            msg = f"ProbeMiddleware paths: unknown kind(s) {bad}; use liveness, readiness, startup, metrics or drain"
            raise ConfigError(msg)
        if metrics is None:  # by default /metrics is there when it can be served; asked for, it says what is missing
            metrics = has_metrics()
        chosen = {p: k for p, k in chosen.items() if (metrics or k != "metrics") and (drain or k != "drain")}
        self.paths = {prefix.rstrip("/") + p: k for p, k in chosen.items()}
        # Health groups: /readyz/<group> beside /readyz (a prefix no request path matches when /readyz is left out).
        self._groups = prefix.rstrip("/") + "/readyz/" if chosen.get("/readyz") == "readiness" else "\0"
        wants = "metrics" in self.paths.values()
        self._metrics = MetricsEndpoint(registry, system) if wants and has_metrics() else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                _warn_if_wrapped(scope.get("app"))
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        kind = self.paths.get(path)
        if kind is not None and (kind == "drain" or scope["method"] in _PROBE_METHODS):
            await self._answer(kind, scope, send)
            return
        if kind is None and path.startswith(self._groups) and scope["method"] in _PROBE_METHODS:
            await self._answer("readiness", scope, send, group=path[len(self._groups) :])
            return
        drainer = resolve_system(self.system, scope.get("state"), scope.get("app")).drainer
        drainer.in_flight += 1  # track(), inlined: this runs for every request
        try:
            await self.app(scope, receive, send)
        finally:
            drainer.leave()

    async def _answer(self, kind: str, scope: Scope, send: Send, *, group: str | None = None) -> None:
        extra: list[tuple[bytes, bytes]] = []
        if kind == "drain":
            ctype = "application/json"
            status, body, extra = await answer_drain(
                resolve_system(self.system, scope.get("state"), scope.get("app")), scope
            )
        elif kind == "metrics":
            if self._metrics is None:  # the extra is missing: say so instead of a silent 404
                status, body, ctype = 501, NO_METRICS.encode(), "text/plain; charset=utf-8"
            else:
                status, body, ctype = 200, self._metrics.body(), self._metrics.content_type
        else:
            state = scope.get("state")
            target = resolve_system(self.system, state, scope.get("app"))
            if group is not None and group not in (target.health_groups or ()):
                status, body, ctype = 404, no_group(target, group), "application/json"
            else:
                report = await probe(kind, target, starting=pending(state, scope.get("app")), group=group)
                status, body, ctype = report.http_status, render(report, details=self.details), CONTENT_TYPE
        headers = [
            (b"content-type", ctype.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def _warn_if_wrapped(app: Any) -> None:
    """Added with ``app.add_middleware`` but not last: the middleware added after it wraps the probes."""
    stack = list(getattr(app, "user_middleware", None) or ())
    classes = [getattr(m, "cls", None) for m in stack]
    if ProbeMiddleware not in classes or classes[0] is ProbeMiddleware:
        return
    outer = ", ".join(getattr(c, "__name__", repr(c)) for c in classes[: classes.index(ProbeMiddleware)])
    event(
        logging.WARNING,
        "probes_wrapped",
        middleware=outer,
        hint="add ProbeMiddleware last (app.add_middleware runs the last one added outermost)",
    )
