"""Prometheus metrics: what a scrape shows, and what it never shows."""

from __future__ import annotations

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest

import infraboot
from infraboot import SystemInitializer
from infraboot.metrics import register_metrics

from .test_health import Toggle


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def test_a_scrape_shows_state_startup_and_checks() -> None:
    """Up, state, startup attempts and check latency appear per component; a component down is not 'ready'."""
    db = Toggle("db")
    system = SystemInitializer([db], check_interval=None, recovery=False)
    registry = CollectorRegistry()
    register_metrics(registry, system)
    await system.initialize_all()
    await system.health(fresh=True)
    db.up = False
    await system.health(fresh=True)
    values = (
        sample(registry, "infraboot_component_up", component="db"),
        sample(registry, "infraboot_component_state", component="db", state="ready"),
        sample(registry, "infraboot_component_state", component="db", state="unhealthy"),
        sample(registry, "infraboot_startup_attempts", component="db"),
        sample(registry, "infraboot_check_duration_seconds_count", component="db"),
        sample(registry, "infraboot_check_failures_total", component="db", code="refused"),
    )
    await system.shutdown()
    assert (0.0, 0.0, 1.0, 1.0, 2.0, 1.0) == values


async def test_an_unstarted_system_scrapes_cleanly() -> None:
    """Registering before startup is fine: every component is reported down, nothing raises."""
    registry = CollectorRegistry()
    register_metrics(registry, SystemInitializer([Toggle("db")]))
    assert 0.0 == sample(registry, "infraboot_component_up", component="db")
    assert 1.0 == sample(registry, "infraboot_component_state", component="db", state="pending")


async def test_memory_redis_pool_gauges_and_no_url_in_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default system's pools show up as gauges, and the exposition never carries the URL."""
    monkeypatch.setenv("REDIS_URL", "memory://metrics-canary-host")
    monkeypatch.setenv("DATABASE_URL", "sqlite+aiosqlite:///:memory:")
    registry = CollectorRegistry()
    register_metrics(registry)
    await infraboot.ensure_initialized(["redis", "database"])
    text = generate_latest(registry).decode()
    size = sample(registry, "infraboot_pool_connections", component="database", state="size")
    await infraboot.shutdown()
    assert "infraboot_pool_connections" in text
    assert size is not None
    assert "canary" not in text
    assert "memory://" not in text and "sqlite" not in text
