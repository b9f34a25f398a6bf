"""OpenTelemetry: spans for a boot, its attempts, recoveries and shutdown; probe suppression; pool metrics."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import context as otel_context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import infraboot
import infraboot.otel
from infraboot import DatabaseSettings, RedisSettings, SystemInitializer
from infraboot._components._database import DatabaseComponent
from infraboot._components._redis import RedisComponent

from .conftest import Journal, sim
from .test_health import Toggle, eventually

CANARY = "otel-canary-pw-4711"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.clear()


def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp


def by_name(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


async def test_one_trace_per_boot_with_a_span_per_attempt(
    no_backoff: None, journal: Journal, exporter: InMemorySpanExporter
) -> None:
    """A boot is one trace: a start span per component, an attempt span per try with its number, status and code."""
    system = SystemInitializer(
        [sim(journal, "a", fail=ConnectionRefusedError("down"), fail_times=2, retries=5), sim(journal, "b")]
    )
    with infraboot.otel.instrument(system, tracer_provider=provider(exporter), pool_metrics=False):
        await system.initialize_all()
        await system.shutdown()
    spans = by_name(exporter.get_finished_spans())
    boot = spans["infraboot.startup"][0]
    attempts = sorted(spans["infraboot.attempt a"], key=lambda s: s.attributes["infraboot.attempt"])  # type: ignore[index]
    summary = {
        "boots": len(spans["infraboot.startup"]),
        "same trace": {s.context.trace_id for n in ("infraboot.start a", "infraboot.start b") for s in spans[n]}
        == {boot.context.trace_id},
        "start parent": spans["infraboot.start a"][0].parent.span_id,  # type: ignore[union-attr]
        "attempts": [
            (s.attributes["infraboot.attempt"], s.status.status_code, s.attributes.get("error.type")) for s in attempts
        ],  # type: ignore[index,union-attr]
        "attempt parent": {s.parent.span_id for s in attempts},  # type: ignore[union-attr]
        "start a": (
            spans["infraboot.start a"][0].status.status_code,
            spans["infraboot.start a"][0].attributes["infraboot.attempts"],
        ),  # type: ignore[index]
        "boot": boot.status.status_code,
        "ordered": all(s.start_time <= s.end_time for s in attempts),  # type: ignore[operator]
    }
    assert {
        "boots": 1,
        "same trace": True,
        "start parent": boot.context.span_id,
        "attempts": [(1, StatusCode.ERROR, "refused"), (2, StatusCode.ERROR, "refused"), (3, StatusCode.OK, None)],
        "attempt parent": {spans["infraboot.start a"][0].context.span_id},
        "start a": (StatusCode.OK, 3),
        "boot": StatusCode.OK,
        "ordered": True,
    } == summary


async def test_a_failed_boot_and_its_rollback_are_in_the_trace(
    no_backoff: None, journal: Journal, exporter: InMemorySpanExporter
) -> None:
    """A required failure: its start span is an error with the code; the rollback's stops sit in the boot trace."""
    system = SystemInitializer(
        [sim(journal, "base"), sim(journal, "broken", requires=("base",), fail=ConnectionRefusedError(), retries=0)]
    )
    with (
        infraboot.otel.instrument(system, tracer_provider=provider(exporter), pool_metrics=False),
        pytest.raises(infraboot.StartupError),
    ):
        await system.initialize_all()
    spans = by_name(exporter.get_finished_spans())
    boot = spans["infraboot.startup"][0]
    broken = spans["infraboot.start broken"][0]
    stop = spans["infraboot.stop base"][0]
    assert (StatusCode.ERROR, "refused", StatusCode.ERROR, boot.context.span_id) == (
        broken.status.status_code,
        broken.attributes["error.type"],  # type: ignore[index]
        boot.status.status_code,
        stop.parent.span_id,  # type: ignore[union-attr]
    )


async def test_shutdown_is_a_trace_with_a_span_per_stop(journal: Journal, exporter: InMemorySpanExporter) -> None:
    """Shutdown: one root span, one child per component, a failed stop marked as an error."""
    system = SystemInitializer([sim(journal, "a"), sim(journal, "b", requires=("a",), stop_error=RuntimeError("x"))])
    await system.initialize_all()
    with infraboot.otel.instrument(system, tracer_provider=provider(exporter), pool_metrics=False):
        await system.shutdown()
    spans = by_name(exporter.get_finished_spans())
    root = spans["infraboot.shutdown"][0]
    stops = {n: spans[f"infraboot.stop {n}"][0] for n in ("a", "b")}
    assert (
        None,
        {root.context.span_id},
        StatusCode.OK,
        StatusCode.ERROR,
        StatusCode.ERROR,
    ) == (
        root.parent,
        {s.parent.span_id for s in stops.values()},  # type: ignore[union-attr]
        stops["a"].status.status_code,
        stops["b"].status.status_code,
        root.status.status_code,
    )


async def test_recovery_is_a_trace_of_its_own(exporter: InMemorySpanExporter) -> None:
    """An optional component down at boot comes back in the background: a recover span, its attempts under it."""
    db = Toggle("db", required=False, retries=0, backoff_initial=0.01, backoff_max=0.01)
    db.up = False
    system = SystemInitializer([db], check_interval=None)
    with infraboot.otel.instrument(system, tracer_provider=provider(exporter), pool_metrics=False):
        await system.initialize_all()
        await eventually(lambda: db.starts >= 3)
        db.up = True
        await eventually(lambda: system.state("db").value == "ready")
        await system.shutdown()
    spans = by_name(exporter.get_finished_spans())
    recover = spans["infraboot.recover db"][0]
    attempts = [s for s in spans["infraboot.attempt db"] if s.parent.span_id == recover.context.span_id]  # type: ignore[union-attr]
    last = max(attempts, key=lambda s: s.attributes["infraboot.attempt"])  # type: ignore[index]
    assert (None, StatusCode.OK, StatusCode.OK, True) == (
        recover.parent,
        recover.status.status_code,
        last.status.status_code,
        len(attempts) >= 2 and all(s.status.status_code is StatusCode.ERROR for s in attempts if s is not last),
    )


async def test_probes_run_with_instrumentation_suppressed(exporter: InMemorySpanExporter) -> None:
    """Inside a monitor probe the suppress-instrumentation flag is set; outside it (and after close) it is not."""
    seen: list[object] = []

    class Spy(Toggle):
        async def check(self, resource: str) -> None:
            seen.append(otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY))

    system = SystemInitializer([Spy("db")], check_interval=None)
    await system.initialize_all()
    with infraboot.otel.instrument(system, tracer_provider=provider(exporter), pool_metrics=False):
        await system.health(fresh=True)
    await system.health(fresh=True)
    await system.shutdown()
    assert ([True, None], None) == (seen, otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY))


async def test_suppression_can_be_turned_off(exporter: InMemorySpanExporter) -> None:
    """suppress_probes=False leaves probes visible to the client instrumentors."""
    seen: list[object] = []

    class Spy(Toggle):
        async def check(self, resource: str) -> None:
            seen.append(otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY))

    system = SystemInitializer([Spy("db")], check_interval=None)
    await system.initialize_all()
    with infraboot.otel.instrument(
        system, tracer_provider=provider(exporter), suppress_probes=False, pool_metrics=False
    ):
        await system.health(fresh=True)
    await system.shutdown()
    assert [None] == seen


async def test_pre_ping_is_suppressed_and_restored(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ready SQLAlchemy engine's pre-ping runs suppressed while instrumented; close() restores the dialect."""
    from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite

    seen: list[object] = []

    def spy(self: object, dbapi_connection: object) -> bool:
        seen.append(otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY))
        return True

    monkeypatch.setattr(SQLiteDialect_aiosqlite, "do_ping", spy)
    system = SystemInitializer([DatabaseComponent(DatabaseSettings(url="sqlite+aiosqlite:///:memory:"))])
    with infraboot.otel.instrument(system, tracer_provider=provider(exporter), pool_metrics=False):
        await system.ensure_initialized(["database"])
        dialect = system.get_engine().sync_engine.dialect
        fake = SimpleNamespace(_connection=object())  # what get_driver_connection() reads
        dialect.do_ping(fake)
        wrapped = getattr(dialect.do_ping, "_infraboot_quiet", False)
    restored = not getattr(dialect.do_ping, "_infraboot_quiet", False)
    dialect.do_ping(fake)
    await system.shutdown()
    assert ([True, None], True, True) == (seen, wrapped, restored)


async def test_pool_metrics_follow_the_semantic_conventions(exporter: InMemorySpanExporter) -> None:
    """pool_stats() shows as db.client.connection.count by state and .max, per pool name; no URL in any attribute."""
    system = SystemInitializer(
        [
            RedisComponent(RedisSettings(url="memory://otel-host")),
            DatabaseComponent(DatabaseSettings(url="sqlite+aiosqlite:///:memory:")),
        ]
    )
    reader = InMemoryMetricReader()
    with infraboot.otel.instrument(
        system, tracer_provider=provider(exporter), meter_provider=MeterProvider(metric_readers=[reader])
    ):
        await system.ensure_initialized(["redis", "database"])
        data = reader.get_metrics_data()
    await system.shutdown()
    points: dict[str, set[tuple[str, str | None]]] = {}
    for rm in data.resource_metrics:  # type: ignore[union-attr]
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:  # type: ignore[union-attr]
                    attrs = dict(p.attributes or {})
                    points.setdefault(metric.name, set()).add(
                        (str(attrs["db.client.connection.pool.name"]), attrs.get("db.client.connection.state"))  # type: ignore[arg-type]
                    )
    assert "otel-host" not in data.to_json()  # type: ignore[union-attr]
    assert {
        "db.client.connection.count": {
            ("redis", "used"),
            ("redis", "idle"),
            ("database", "used"),
            ("database", "idle"),
        },
        "db.client.connection.max": {("redis", None)},
    } == points


async def test_no_secret_in_any_span(exporter: InMemorySpanExporter) -> None:
    """A start that fails with a password in its URL: no span, status or attribute carries the password."""
    url = f"redis://user:{CANARY}@127.0.0.1:1/0"  # port 1: refused at once
    system = SystemInitializer([RedisComponent(RedisSettings(url=url, max_retries=1, connect_timeout=0.5), name="db")])
    with (
        infraboot.otel.instrument(system, tracer_provider=provider(exporter), pool_metrics=False),
        pytest.raises(infraboot.StartupError),
    ):
        await system.initialize_all()
    dumped = "".join(s.to_json() for s in exporter.get_finished_spans())
    assert ("infraboot.start db" in dumped, CANARY in dumped) == (True, False)


def test_a_second_instrumentation_is_refused_until_the_first_closes() -> None:
    """One instrumentation at a time; close() is idempotent and frees the place."""
    system = SystemInitializer()
    first = infraboot.otel.instrument(system, pool_metrics=False)
    with pytest.raises(RuntimeError, match=r"\.close\(\)"):
        infraboot.otel.instrument(system, pool_metrics=False)
    first.close()
    first.close()
    second = infraboot.otel.instrument(system, pool_metrics=False)
    second.close()
    assert "closed" in repr(second)


@pytest.mark.parametrize("module", ["redis", "sqlalchemy"])
def test_an_instrumentation_too_old_for_clients_is_refused_naming_the_upgrade(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """clients=True with a release that predates what it relies on fails at once, before anything starts."""
    pytest.importorskip(f"opentelemetry.instrumentation.{module}")
    import importlib.metadata

    real = importlib.metadata.version
    package = f"opentelemetry-instrumentation-{module}"

    def version(name: str) -> str:
        if name == package:
            return "0.41b0"
        return "9.0b0" if name.startswith("opentelemetry-instrumentation-") else real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(
        ImportError,
        match=rf"needs {package}>=0\.\d+b0 \(found 0\.41b0\)\. Upgrade with: pip install -U '{package}>=0\.\d+b0'$",
    ):
        infraboot.otel.instrument(SystemInitializer(), pool_metrics=False, clients=True)
    infraboot.otel.instrument(SystemInitializer(), pool_metrics=False).close()  # nothing was left active


def test_import_infraboot_loads_no_opentelemetry() -> None:
    """``import infraboot`` never imports OpenTelemetry; the engine's hooks are empty lists."""
    code = (
        "import sys, infraboot; from infraboot._base import _log; from infraboot._engine import _traffic;"
        "print(any(m.startswith('opentelemetry') for m in sys.modules), _log.listeners, _traffic.probe_hooks)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert "False [] []" == out


async def test_clients_are_instrumented_once_and_probes_make_no_client_span(
    exporter: InMemorySpanExporter, redis_url: str
) -> None:
    """clients=True: both engines and the Redis client trace real calls; 20 probes add no client span."""
    pytest.importorskip("opentelemetry.instrumentation.sqlalchemy")
    pytest.importorskip("opentelemetry.instrumentation.redis")
    from sqlalchemy import text

    sqlite = "sqlite+aiosqlite:///:memory:"
    system = SystemInitializer(
        [
            RedisComponent(RedisSettings(url=redis_url)),
            DatabaseComponent(DatabaseSettings(url=sqlite)),
            DatabaseComponent(DatabaseSettings(url=sqlite), name="replica"),
        ],
        check_interval=None,
    )
    try:
        telemetry = infraboot.otel.instrument(
            system, tracer_provider=provider(exporter), pool_metrics=False, clients=True
        )
    except ImportError as exc:  # the lowest-versions run: releases too old, refused (the test above)
        pytest.skip(str(exc))
    with telemetry:
        await system.initialize_all()
        exporter.clear()
        for _ in range(20):
            await system.health(fresh=True)
        after_probes = [s.name for s in exporter.get_finished_spans()]
        await system.get_redis().set("otel-key", "1")
        for name in ("database", "replica"):
            async with system.get_engine(name).connect() as conn:
                await conn.execute(text("SELECT 41 + 1"))
        kinds = sorted(s.name for s in exporter.get_finished_spans())
        await system.shutdown()
    assert ([], ["SELECT", "SELECT", "SET"]) == (after_probes, [k.split()[0] for k in kinds])


async def test_an_unhealthy_component_recovers_in_a_span(exporter: InMemorySpanExporter) -> None:
    """Unhealthy then healthy again (same resource): the recover span ends OK when a probe passes."""
    db = Toggle("db", failure_threshold=1, backoff_initial=0.01, backoff_max=0.01)
    system = SystemInitializer([db], check_interval=None)
    await system.initialize_all()
    with infraboot.otel.instrument(system, tracer_provider=provider(exporter), pool_metrics=False):
        db.up = False
        await system.health(fresh=True)
        await eventually(lambda: db.probes >= 3)
        db.up = True
        await eventually(lambda: system.state("db").value == "ready")
        await eventually(lambda: "infraboot.recover db" in by_name(exporter.get_finished_spans()))
    await system.shutdown()
    recover = by_name(exporter.get_finished_spans())["infraboot.recover db"][0]
    assert (StatusCode.OK, "unhealthy") == (recover.status.status_code, recover.attributes["infraboot.state"])  # type: ignore[index]
