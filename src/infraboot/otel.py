"""OpenTelemetry traces and metrics for startup, recovery and shutdown.

Install with ``pip install "infraboot[otel]"`` (the API; add ``opentelemetry-sdk`` and an
exporter to send anything). ``import infraboot`` never loads OpenTelemetry: only this module does.

:func:`instrument` turns infraboot's structured events into spans -- nothing in the engine
waits for it, and with no instrumentation active an event costs one truth test more:

- one trace per boot: ``infraboot.startup`` with one ``infraboot.start <component>`` child per
  component, each with an ``infraboot.attempt <component>`` child per attempt (attempt number,
  status, ``error.type`` = infraboot's error code);
- ``infraboot.recover <component>`` (a trace of its own, its attempts as children) each time a
  component is brought back in the background;
- ``infraboot.shutdown`` with one ``infraboot.stop <component>`` child per component.

The monitor's probes run with OpenTelemetry's *suppress instrumentation* flag set, so the
redis/SQLAlchemy/asyncpg instrumentors record no span for a health check; a SQLAlchemy
engine's pool pre-ping is suppressed the same way. Pool figures (``pool_stats()``) are
reported as the semantic conventions' ``db.client.connection.count`` (by
``db.client.connection.state``: ``used``/``idle``) and ``db.client.connection.max``.

Example::

    from opentelemetry.sdk.trace import TracerProvider

    import infraboot.otel

    telemetry = infraboot.otel.instrument(tracer_provider=TracerProvider())
    ...
    telemetry.close()  # or use it as a context manager
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - the message is the point
    msg = 'infraboot.otel needs OpenTelemetry: pip install "infraboot[otel]"'
    raise ImportError(msg) from None

from infraboot import __version__
from infraboot._base import _log
from infraboot._engine import _traffic

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import TracerProvider

    from infraboot import SystemInitializer

__all__ = ["Instrumentation", "instrument", "suppressed"]

_SUPPRESS = otel_context._SUPPRESS_INSTRUMENTATION_KEY  # what every contrib instrumentor checks
_active: list[Instrumentation] = []


def suppressed() -> object:
    """Set OpenTelemetry's *suppress instrumentation* flag in the current context; returns the token to detach."""
    return otel_context.attach(otel_context.set_value(_SUPPRESS, True))


def instrument(
    system: SystemInitializer | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    suppress_probes: bool = True,
    pool_metrics: bool = True,
    clients: bool = False,
) -> Instrumentation:
    """Trace *system*'s (the default system's when ``None``) startup, recovery and shutdown.

    The global tracer and meter providers are used unless others are given. With
    ``suppress_probes`` (the default) the monitor's probes and SQLAlchemy pool pre-pings
    make no client spans. With ``pool_metrics`` the pools of ready built-in components are
    observed at each metrics collection. With ``clients``, each SQLAlchemy engine and redis-py
    client a component makes is instrumented once, when it is ready (a second engine too, which
    ``SQLAlchemyInstrumentor().instrument(engine=...)`` skips); it needs
    ``opentelemetry-instrumentation-sqlalchemy`` / ``-redis``. One instrumentation at a time: a
    second call raises :class:`RuntimeError` until the first is closed.
    """
    if _active:
        msg = "infraboot.otel is instrumented already: call .close() on the first Instrumentation before a second"
        raise RuntimeError(msg)
    if system is None:
        from infraboot import default_system

        system = default_system()
    if clients:
        _check_client_instrumentations()
    return Instrumentation(
        system,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        suppress_probes=suppress_probes,
        pool_metrics=pool_metrics,
        clients=clients,
    )


class Instrumentation:
    """An active :func:`instrument` call; :meth:`close` (or leaving its ``with`` block) ends it."""

    def __init__(
        self,
        system: SystemInitializer,
        *,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        suppress_probes: bool,
        pool_metrics: bool,
        clients: bool = False,
    ) -> None:
        self._system = system
        self._providers = (tracer_provider, meter_provider)
        self._clients = clients
        self._traced: list[Any] = []  # the engines and clients instrumented, strongly held until close()
        self._redis_traced: list[Any] = []
        self._spans = _Spans(trace.get_tracer("infraboot", __version__, tracer_provider=tracer_provider))
        self._suppress = suppress_probes
        self._patched: list[tuple[Any, Any]] = []  # (dialect, the do_ping it had)
        self._closed = False
        _log.listeners.append(self._hear)
        if suppress_probes:
            _traffic.probe_hooks.append(suppressed)
        if pool_metrics:
            meter = metrics.get_meter("infraboot", __version__, meter_provider=meter_provider)
            meter.create_observable_up_down_counter(
                "db.client.connection.count",
                callbacks=[self._observe_count],
                unit="{connection}",
                description="Connections in each state of the pool (pool_stats())",
            )
            meter.create_observable_up_down_counter(
                "db.client.connection.max",
                callbacks=[self._observe_max],
                unit="{connection}",
                description="The most connections the pool allows",
            )
        _active.append(self)

    def __repr__(self) -> str:
        return f"<infraboot.otel.Instrumentation {'closed' if self._closed else 'active'}>"

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop listening, end the spans still open (status unset), undo the pre-ping wrapping. Idempotent."""
        if self._closed:
            return
        self._closed = True
        _remove(_log.listeners, self._hear)
        _remove(_traffic.probe_hooks, suppressed)
        _remove(_active, self)
        for dialect, original in reversed(self._patched):
            if original is None:
                vars(dialect).pop("do_ping", None)
            else:
                dialect.do_ping = original
        self._patched.clear()
        if self._redis_traced:
            from opentelemetry.instrumentation.redis import RedisInstrumentor

            for client in self._redis_traced:
                RedisInstrumentor.uninstrument_client(client)
        # An engine's SQLAlchemy listeners stay: the instrumentor can only remove every engine's at once.
        self._redis_traced.clear()
        self._spans.end_all()
        # The metric callbacks stay registered (the API cannot remove an instrument); closed, they observe nothing.

    # -- events -> spans ------------------------------------------------------------------------

    def _hear(self, level: int, name: str, component: str | None, fields: Mapping[str, Any]) -> None:
        self._spans.hear(name, component, fields)
        if name in ("component_ready", "component_recovered") and component is not None:
            if self._suppress:
                self._quiet_pre_ping(component)
            if self._clients:
                self._instrument_client(component)

    def _instrument_client(self, name: str) -> None:
        """Instrument the SQLAlchemy engine or redis-py client of component *name*, once."""
        try:
            resource = self._system.get(name)
        except Exception:  # another system's component of that name, or gone meanwhile
            return
        if any(resource is seen for seen in self._traced):
            return
        engine = getattr(resource, "sync_engine", None)
        module = type(resource).__module__
        tracer_provider, meter_provider = self._providers
        if engine is not None and module.startswith("sqlalchemy"):
            tracer_class = _require("opentelemetry.instrumentation.sqlalchemy.engine", "sqlalchemy").EngineTracer
            tracer = trace.get_tracer("opentelemetry.instrumentation.sqlalchemy", tracer_provider=tracer_provider)
            meter = metrics.get_meter("opentelemetry.instrumentation.sqlalchemy", meter_provider=meter_provider)
            usage = meter.create_up_down_counter("db.client.connections.usage", unit="connections")
            tracer_class(tracer, engine, usage)
        elif module.startswith("redis."):
            instrumentor = _require("opentelemetry.instrumentation.redis", "redis").RedisInstrumentor
            if getattr(resource, "_is_instrumented_by_opentelemetry", False):
                return  # the application instrumented it already
            instrumentor.instrument_client(resource, tracer_provider=tracer_provider)
            self._redis_traced.append(resource)
        else:
            return
        self._traced.append(resource)

    def _quiet_pre_ping(self, name: str) -> None:
        """Wrap the SQLAlchemy engine's ``do_ping`` (its pool pre-ping) of component *name* in suppression."""
        try:
            resource = self._system.get(name)
        except Exception:  # another system's component of that name, or gone meanwhile
            return
        engine = getattr(resource, "sync_engine", resource)
        dialect = getattr(engine, "dialect", None)
        if dialect is None or not callable(getattr(dialect, "do_ping", None)):
            return
        if getattr(dialect.do_ping, "_infraboot_quiet", False):
            return
        original = vars(dialect).get("do_ping")
        ping = dialect.do_ping

        @functools.wraps(ping)
        def do_ping(dbapi_connection: Any) -> Any:
            token = suppressed()
            try:
                return ping(dbapi_connection)
            finally:
                otel_context.detach(token)  # type: ignore[arg-type]

        do_ping._infraboot_quiet = True  # type: ignore[attr-defined]
        dialect.do_ping = do_ping
        self._patched.append((dialect, original))

    # -- pool metrics ---------------------------------------------------------------------------

    def _pools(self) -> Iterable[tuple[str, dict[str, int]]]:
        if self._closed:
            return
        system = self._system
        for name, comp in system.components.items():
            try:
                stats = comp.pool_stats(system.get(name))
            except Exception:  # not ready: nothing to observe
                stats = None
            if stats:
                yield name, stats

    def _observe_count(self, options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        for name, stats in self._pools():
            used = stats.get("checked_out", stats.get("in_use"))
            idle = stats.get("idle", stats.get("available"))
            for state, value in (("used", used), ("idle", idle)):
                if value is not None:
                    yield Observation(
                        value, {"db.client.connection.pool.name": name, "db.client.connection.state": state}
                    )

    def _observe_max(self, options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        for name, stats in self._pools():
            top = stats.get("max")
            if top:
                yield Observation(top, {"db.client.connection.pool.name": name})


# The first releases clients=True works with: the suppress flag (a probe makes no span) is honoured by
# SQLAlchemy's from 0.55b0 and Redis's from 0.60b0 (which has instrument_client, one client, since 0.54b0).
_CLIENT_MINIMUM = {"sqlalchemy": (0, 55), "redis": (0, 60)}


def _check_client_instrumentations() -> None:
    """Refuse ``clients=True`` before anything starts: no instrumentation installed, or one too old."""
    from importlib import metadata

    present = [m for m in _CLIENT_MINIMUM if _importable(f"opentelemetry.instrumentation.{m}")]
    if not present:
        msg = (
            "infraboot.otel.instrument(clients=True) needs a client instrumentation. Install it with: "
            "pip install opentelemetry-instrumentation-sqlalchemy opentelemetry-instrumentation-redis"
        )
        raise ImportError(msg)
    too_old: dict[str, str] = {}  # requirement -> the version found
    for module in present:
        package = f"opentelemetry-instrumentation-{module}"
        try:
            found = metadata.version(package)
        except metadata.PackageNotFoundError:  # vendored or run from a checkout: nothing to compare
            continue
        major, minor = _CLIENT_MINIMUM[module]
        if tuple(int(part) for part in re.findall(r"\d+", found)[:2]) < (major, minor):
            too_old[f"{package}>={major}.{minor}b0"] = found
    if too_old:
        needs = ", ".join(f"{requirement} (found {found})" for requirement, found in too_old.items())
        msg = (
            f"infraboot.otel.instrument(clients=True) needs {needs}. "
            f"Upgrade with: pip install -U {' '.join(repr(requirement) for requirement in too_old)}"
        )
        raise ImportError(msg)


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def _require(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        msg = (
            f"infraboot.otel.instrument(clients=True) needs the {extra} instrumentation. "
            f"Install it with: pip install opentelemetry-instrumentation-{extra}"
        )
        raise ImportError(msg) from None


def _remove(items: list[Any], item: Any) -> None:
    for i, present in enumerate(items):
        if present is item or present == item:
            del items[i]
            return


def _now() -> int:
    return time.time_ns()


_ROOT = otel_context.Context()  # a span started in it begins a trace of its own


class _Spans:
    """The state machine from events to spans: a boot, its starts and attempts, recoveries, a shutdown.

    Spans are started with an explicit parent and never made current, so nothing here changes
    the context the application's own code runs in. An attempt's span is written when it ends:
    attempt 1 begins with ``component_starting`` (or ``component_recovering``), attempt *n+1*
    where the retry event said it would (its time plus ``wait``).
    """

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer
        self.boot: Span | None = None
        self.boots = 0
        self.shutdown: Span | None = None
        self.starts: dict[str, Span] = {}
        self.recoveries: dict[str, Span] = {}
        self.stops: dict[str, Span] = {}
        self.attempts: dict[str, tuple[int, int]] = {}  # component -> (number, start in ns)
        self.handlers: dict[str, Callable[[str, Mapping[str, Any]], None]] = {
            "component_starting": self._starting,
            "component_retrying": self._retrying,
            "component_ready": self._ready,
            "component_failed": self._failed,
            "component_recovering": self._recovering,
            "component_still_down": self._still_down,
            "component_recovered": self._recovered,
            "component_not_recovered": self._not_recovered,
            "component_healthy": self._healthy,
            "component_stopping": self._stopping,
            "component_stopped": self._stopped,
            "component_stop_failed": self._stopped,
        }

    def hear(self, name: str, component: str | None, fields: Mapping[str, Any]) -> None:
        if component is not None:
            handler = self.handlers.get(name)
            if handler is not None:
                handler(component, fields)
            elif self.boot is not None and name in _NOTES:
                self.boot.add_event(name, _attrs(component, fields))
            return
        if name == "startup_begin":
            self.boots += 1
            if self.boot is None:
                self.boot = self.tracer.start_span(
                    "infraboot.startup", _ROOT, attributes={"infraboot.components": str(fields.get("components", ""))}
                )
        elif name in _BOOT_ENDS and self.boot is not None and "background" not in fields:  # not the adapter's
            self.boots -= 1
            status = str(fields.get("status")) if name == "startup_complete" else "failed"
            self.boot.set_attribute("infraboot.status", status)
            if fields.get("failed"):
                self.boot.set_attribute("infraboot.failed", str(fields["failed"]))
            if self.boots <= 0:
                self.boot.set_status(Status(StatusCode.OK if status == "ok" else StatusCode.ERROR))
                self.boot.end()
                self.boot, self.boots = None, 0
        elif name == "rollback_begin" and self.boot is not None:
            self.boot.add_event("rollback_begin", {"infraboot.components": str(fields.get("components", ""))})
        elif name == "shutdown_begin" and self.shutdown is None:
            self.shutdown = self.tracer.start_span("infraboot.shutdown", _ROOT)
        elif name == "shutdown_complete" and self.shutdown is not None:
            errors = int(fields.get("errors") or 0)
            self.shutdown.set_attribute("infraboot.errors", errors)
            self.shutdown.set_status(Status(StatusCode.OK if errors == 0 else StatusCode.ERROR))
            self.shutdown.end()
            self.shutdown = None

    # -- starts ---------------------------------------------------------------------------------

    def _child_of(self, parent: Span | None) -> otel_context.Context:
        return _ROOT if parent is None else trace.set_span_in_context(parent, _ROOT)

    def _starting(self, component: str, fields: Mapping[str, Any]) -> None:
        self._end(self.starts.pop(component, None), None)
        self.starts[component] = self.tracer.start_span(
            f"infraboot.start {component}", self._child_of(self.boot), attributes={"infraboot.component": component}
        )
        self.attempts[component] = (1, _now())

    def _attempt_ended(self, component: str, parent: Span | None, fields: Mapping[str, Any], *, ok: bool) -> None:
        number, began = self.attempts.pop(component, (0, 0))
        now = _now()
        if parent is None or number == 0 or began > now:  # no attempt ran (the deadline passed before it)
            return
        span = self.tracer.start_span(
            f"infraboot.attempt {component}",
            self._child_of(parent),
            kind=SpanKind.INTERNAL,
            attributes={"infraboot.component": component, "infraboot.attempt": number},
            start_time=began,
        )
        self._end(span, None if ok else fields, end_time=now)

    def _retrying(self, component: str, fields: Mapping[str, Any]) -> None:
        parent = self.starts.get(component)
        number = int(fields.get("attempt") or 1)  # the attempt that failed
        self.attempts[component] = (number, self.attempts.get(component, (number, _now()))[1])
        self._attempt_ended(component, parent, fields, ok=False)
        wait = float(fields.get("wait") or 0.0)
        self.attempts[component] = (number + 1, _now() + int(wait * 1e9))

    def _ready(self, component: str, fields: Mapping[str, Any]) -> None:
        span = self.starts.pop(component, None)
        self._attempt_ended(component, span, fields, ok=True)
        if span is not None:
            span.set_attribute("infraboot.attempts", int(fields.get("attempts") or 0))
        self._end(span, None)

    def _failed(self, component: str, fields: Mapping[str, Any]) -> None:
        span = self.starts.pop(component, None)
        self._attempt_ended(component, span, fields, ok=False)
        if span is not None:
            span.set_attribute("infraboot.attempts", int(fields.get("attempts") or 0))
            span.set_attribute("infraboot.required", bool(fields.get("required")))
        self._end(span, fields)

    # -- recoveries -----------------------------------------------------------------------------

    def _recovering(self, component: str, fields: Mapping[str, Any]) -> None:
        self._end(self.recoveries.pop(component, None), None)
        self.recoveries[component] = self.tracer.start_span(
            f"infraboot.recover {component}",
            _ROOT,
            attributes={"infraboot.component": component, "infraboot.state": str(fields.get("state"))},
        )
        self.attempts[component] = (1, _now())

    def _still_down(self, component: str, fields: Mapping[str, Any]) -> None:
        parent = self.recoveries.get(component)
        number = int(fields.get("attempts") or 1)
        began = self.attempts.get(component, (number, _now()))[1]
        self.attempts[component] = (number, began)
        self._attempt_ended(component, parent, fields, ok=False)
        wait = float(fields.get("wait") or 0.0)
        self.attempts[component] = (number + 1, _now() + int(wait * 1e9))

    def _recovered(self, component: str, fields: Mapping[str, Any]) -> None:
        span = self.recoveries.pop(component, None)
        self._attempt_ended(component, span, fields, ok=True)
        if span is not None:
            span.set_attribute("infraboot.attempts", int(fields.get("attempts") or 0))
        self._end(span, None)

    def _healthy(self, component: str, fields: Mapping[str, Any]) -> None:
        """An unhealthy component's probe passed: that ends its recovery (no new resource, no recovered event)."""
        if component in self.recoveries:
            self._recovered(component, fields)

    def _not_recovered(self, component: str, fields: Mapping[str, Any]) -> None:
        span = self.recoveries.pop(component, None)
        self._attempt_ended(component, span, fields, ok=False)
        self._end(span, fields)

    # -- stops ----------------------------------------------------------------------------------

    def _stopping(self, component: str, fields: Mapping[str, Any]) -> None:
        parent = self.shutdown if self.shutdown is not None else self.boot  # a rollback stops inside the boot
        self._end(self.stops.pop(component, None), None)
        self.stops[component] = self.tracer.start_span(
            f"infraboot.stop {component}", self._child_of(parent), attributes={"infraboot.component": component}
        )

    def _stopped(self, component: str, fields: Mapping[str, Any]) -> None:
        self._end(self.stops.pop(component, None), fields if "error" in fields else None)

    # -- ending ---------------------------------------------------------------------------------

    def _end(self, span: Span | None, failure: Mapping[str, Any] | None, *, end_time: int | None = None) -> None:
        """End *span*: OK, or ERROR with infraboot's error code as ``error.type`` when *failure* is given."""
        if span is None:
            return
        if failure is None:
            span.set_status(Status(StatusCode.OK))
        else:
            code = str(failure.get("error_code") or "error")
            span.set_attribute("error.type", code)
            description = failure.get("error")
            span.set_status(Status(StatusCode.ERROR, None if description is None else str(description)))
        span.end(end_time=end_time)

    def end_all(self) -> None:
        for spans in (self.starts, self.recoveries, self.stops):
            for open_span in spans.values():
                open_span.end()
            spans.clear()
        for root in (self.boot, self.shutdown):
            if root is not None:
                root.end()
        self.boot = self.shutdown = None
        self.boots = 0
        self.attempts.clear()


#: The system's own end of a startup call (the ASGI adapter logs a ``startup_complete`` of its own, ``background``).
_BOOT_ENDS = frozenset({"startup_complete", "startup_unfinished"})

#: Events recorded as span events of the boot span (what happened to a component without a start of its own).
_NOTES = frozenset(
    {"component_disabled", "component_blocked", "component_not_configured", "attempt_abandoned", "late_resource_closed"}
)


def _attrs(component: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"infraboot.component": component}
    for key, value in fields.items():
        if isinstance(value, str | bool | int | float):
            out[f"infraboot.{key}"] = value
    return out
