"""ASGI pieces shared by the FastAPI and Starlette adapters; no framework imported here.

- :func:`lifespan`: start components when the server starts, shut down when it stops.
- :class:`ProbeMiddleware`: answer the probe paths before the application's own
  middleware stack runs (auth, logging, CORS), so probes stay cheap and keep working
  when that stack is slow.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import json
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any, ClassVar

from . import _default
from ._health import CONTENT_TYPE, HealthReport
from ._log import event
from ._system import SystemInitializer
from .exceptions import ConfigError, StartupError

__all__ = ["DEFAULT_PATHS", "NO_METRICS", "ProbeMiddleware", "lifespan", "probe", "render", "resolve_system"]

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
    "/health": "readiness",
    "/ready": "readiness",
    "/metrics": "metrics",
}

STATE_KEY = "infraboot"
#: Set by ``infraboot.testing.lifespan(app, components=[...])``: what the lifespan starts instead of its own list.
components_override: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "infraboot_lifespan_components", default=None
)
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
) -> StateLifespan:
    """A lifespan for ``FastAPI(lifespan=...)`` / ``Starlette(lifespan=...)``.

    Starts *components* (all registered ones when ``None``) before the server accepts
    requests and shuts them down, bounded by ``shutdown_timeout``, when it stops. A
    required failure is logged as one clear line and fails the startup: the server
    reports ``lifespan.startup.failed`` and exits non-zero instead of serving errors.

    *inner* is your own lifespan, run inside ours (components are up for all of it);
    the state it yields is merged with ours, which holds the system under ``"infraboot"``.
    """
    wanted = None if components is None else list(components)
    if isinstance(components, str):
        msg = f"lifespan({components!r}): pass a list of names, e.g. lifespan([{components!r}])"
        raise ConfigError(msg)

    @contextlib.asynccontextmanager
    async def _lifespan(app: Any) -> AsyncIterator[Mapping[str, Any]]:
        target = resolve_system(system)
        app_state = getattr(app, "state", None)
        if app_state is not None:  # for transports that do not pass lifespan state (httpx's ASGITransport)
            setattr(app_state, STATE_KEY, target)
        try:
            chosen = components_override.get()
            report = await target.ensure_initialized(wanted if chosen is None else chosen)
        except (StartupError, ConfigError) as exc:
            event(logging.CRITICAL, "startup_failed", error=str(exc).replace("\n", " "))
            raise
        event(logging.INFO, "lifespan_started", status=report.status)
        state: dict[str, Any] = {STATE_KEY: target}
        try:
            if inner is None:
                yield state
            else:
                async with inner(app) as inner_state:
                    yield {**dict(inner_state or {}), **state}
        finally:
            await target.shutdown()

    return _lifespan


async def probe(kind: str, system: SystemInitializer) -> HealthReport:
    """Answer one probe: ``liveness``, ``readiness`` or ``startup``."""
    if kind == "liveness":
        return system.liveness()
    if kind == "startup":
        return system.startup()
    return await system.readiness()


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

        from .metrics import register_metrics

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

    ::

        app = FastAPI(lifespan=infraboot.fastapi.lifespan(["redis", "database"]))
        app.add_middleware(...)                       # your own stack
        app = ProbeMiddleware(app)                    # outermost: probes skip your stack

    ``GET``/``HEAD`` on ``/livez``, ``/readyz``, ``/startupz``, ``/health``, ``/ready`` (and
    ``/metrics`` when ``prometheus_client`` is installed) are answered here; everything else
    goes to *app*. ``paths`` replaces the map (``{"/k8s/ready": "readiness"}``), ``prefix``
    is put before every path; ``details=True`` adds latency and error codes to the body.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        system: SystemInitializer | None = None,
        details: bool = False,
        prefix: str = "",
        paths: Mapping[str, str] | None = None,
        metrics: bool = True,
        registry: Any = None,
    ) -> None:
        self.app = app
        self.system = system
        self.details = details
        chosen = dict(DEFAULT_PATHS if paths is None else paths)
        bad = sorted(set(chosen.values()) - {"liveness", "readiness", "startup", "metrics"})
        if bad:
            msg = f"ProbeMiddleware paths: unknown probe kind(s) {bad}; use liveness, readiness, startup or metrics"
            raise ConfigError(msg)
        if not metrics:
            chosen = {p: k for p, k in chosen.items() if k != "metrics"}
        self.paths = {prefix.rstrip("/") + p: k for p, k in chosen.items()}
        wants = "metrics" in self.paths.values()
        self._metrics = MetricsEndpoint(registry, system) if wants and has_metrics() else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            kind = self.paths.get(scope["path"])
            if kind is not None:
                await self._answer(kind, scope, send)
                return
        await self.app(scope, receive, send)

    async def _answer(self, kind: str, scope: Scope, send: Send) -> None:
        if kind == "metrics":
            if self._metrics is None:  # the extra is missing: say so instead of a silent 404
                status, body, ctype = 501, NO_METRICS.encode(), "text/plain; charset=utf-8"
            else:
                status, body, ctype = 200, self._metrics.body(), self._metrics.content_type
        else:
            report = await probe(kind, resolve_system(self.system, scope.get("state")))
            status, body, ctype = report.http_status, render(report, details=self.details), CONTENT_TYPE
        headers = [
            (b"content-type", ctype.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
