"""Prometheus metrics of an infraboot system (``pip install "infraboot[metrics]"``).

::

    from prometheus_client import REGISTRY
    from infraboot.metrics import register_metrics

    register_metrics(REGISTRY)          # the default system; your /metrics now shows ours

The collector reads the system's state at scrape time, so it costs nothing between
scrapes and never probes a dependency itself. Labels are component names, states and
error codes only: never a URL, a host name or a secret.

Metrics:

- ``infraboot_component_up{component}``: 1 when ready and healthy.
- ``infraboot_component_state{component,state}``: 1 for the current state.
- ``infraboot_component_required{component}``: 1 when a failure fails startup.
- ``infraboot_startup_duration_seconds{component}`` / ``infraboot_startup_attempts{component}``: the last start.
- ``infraboot_check_duration_seconds{component}``: histogram of health-probe latency.
- ``infraboot_check_failures_total{component,code}``: failed probes by error code.
- ``infraboot_pool_connections{component,state}``: pool figures -- ``size``, ``checked_out``,
  ``idle``, ``overflow`` for the database; ``in_use``, ``available``, ``max`` for Redis.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
    from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry
except ImportError:  # pragma: no cover - depends on the installed extras
    msg = 'infraboot.metrics needs prometheus_client: pip install "infraboot[metrics]"'
    raise ImportError(msg) from None

from ._engine._health import LATENCY_BUCKETS
from ._engine._state import ComponentState
from ._engine._system import SystemInitializer

__all__ = ["InfrabootCollector", "register_metrics"]


class InfrabootCollector(Collector):
    """A ``prometheus_client`` collector for one system (``None``: the default system, looked up at each scrape).

    It holds its system weakly: registering it never keeps a system alive, and once the
    system is gone the collector reports nothing.
    """

    def __init__(self, system: SystemInitializer | None = None) -> None:
        self._system = None if system is None else weakref.ref(system)

    def _target(self) -> SystemInitializer | None:
        if self._system is not None:
            return self._system()
        from ._front._default import default_system

        return default_system()

    def describe(self) -> list[Metric]:
        # Nothing up front: registering must not need a started system.
        return []

    def collect(self) -> Iterator[Metric]:
        system = self._target()
        if system is None:
            return
        up = GaugeMetricFamily(
            "infraboot_component_up", "1 when the component is ready and healthy", labels=["component"]
        )
        state = GaugeMetricFamily(
            "infraboot_component_state", "1 for the component's current state", labels=["component", "state"]
        )
        required = GaugeMetricFamily(
            "infraboot_component_required", "1 when the component's failure fails startup", labels=["component"]
        )
        duration = GaugeMetricFamily(
            "infraboot_startup_duration_seconds", "Duration of the component's last start", labels=["component"]
        )
        attempts = GaugeMetricFamily(
            "infraboot_startup_attempts", "Attempts of the component's last start", labels=["component"]
        )
        checks = HistogramMetricFamily(
            "infraboot_check_duration_seconds", "Latency of health probes", labels=["component"]
        )
        failures = CounterMetricFamily(
            "infraboot_check_failures", "Failed health probes by error code", labels=["component", "code"]
        )
        pool = GaugeMetricFamily(
            "infraboot_pool_connections", "Connection-pool figures of the component", labels=["component", "state"]
        )
        for name, snap in system.snapshot().items():
            up.add_metric([name], 1.0 if snap.health.status == "pass" and snap.state is ComponentState.READY else 0.0)
            for s in ComponentState:
                state.add_metric([name, s.value], 1.0 if snap.state is s else 0.0)
            required.add_metric([name], 1.0 if snap.required else 0.0)
            if snap.start_duration is not None:
                duration.add_metric([name], snap.start_duration)
            attempts.add_metric([name], float(snap.attempts))
            cumulative, buckets = 0, []
            for bound, count in zip(LATENCY_BUCKETS, snap.checks.buckets, strict=True):
                cumulative += count
                buckets.append((_bound(bound), float(cumulative)))
            buckets.append(("+Inf", float(snap.checks.count)))
            checks.add_metric([name], buckets, sum_value=snap.checks.latency_sum)
            for code, count in sorted(snap.checks.failures_by_code.items()):
                failures.add_metric([name, code], float(count))
            for key, value in (snap.pool or {}).items():
                pool.add_metric([name, key], float(value))
        yield from (up, state, required, duration, attempts, checks, failures, pool)


def _bound(value: float) -> str:
    return repr(float(value))


def register_metrics(
    registry: CollectorRegistry | None = None, system: SystemInitializer | None = None
) -> InfrabootCollector:
    """Register a collector for *system* (default: the default system) on *registry* (default: the global one)."""
    collector = InfrabootCollector(system)
    (REGISTRY if registry is None else registry).register(collector)
    return collector
