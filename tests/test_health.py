"""Health: the three probes, cached and coalesced checks, thresholds, monitor, recovery."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator

import pytest

import infraboot
from infraboot import ComponentState, ComponentUnavailableError, ConfigError, SystemInitializer
from infraboot._front._default import settings_from_env


class Toggle(infraboot.Component[str]):
    """A component whose server the test switches off and on; counts starts and probes."""

    def __init__(self, name: str, **settings: object) -> None:
        super().__init__(name, **settings)  # type: ignore[arg-type]
        self.up = True
        self.starts = 0
        self.probes = 0
        self.hang: asyncio.Event | None = None  # set: probes wait on it (a blackholed server)
        self.stop_gate: asyncio.Event | None = None

    async def start(self, ctx: infraboot.Context) -> str:
        self.starts += 1
        if not self.up:
            raise ConnectionRefusedError("connection refused")
        return f"<{self.name}>"

    async def check(self, resource: str) -> None:
        self.probes += 1
        if self.hang is not None:
            await self.hang.wait()
        if not self.up:
            raise ConnectionRefusedError("connection refused")

    async def stop(self, resource: str) -> None:
        if self.stop_gate is not None:
            await self.stop_gate.wait()


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until *condition* holds (polled), failing after *timeout* seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.fixture
def fast() -> Iterator[None]:
    with infraboot.set_testing(attempts=1):
        yield


def system_of(*components: infraboot.Component[str], **settings: object) -> SystemInitializer:
    settings.setdefault("check_interval", None)
    return SystemInitializer(components, **settings)  # type: ignore[arg-type]


async def test_all_up_is_pass_with_ietf_checks() -> None:
    """With every component up, readiness passes (200) and lists each component under "name:responseTime"."""
    system = system_of(Toggle("cache"), Toggle("db"))
    await system.initialize_all()
    report = await system.readiness()
    await system.shutdown()
    assert ("pass", 200) == (report.status, report.http_status)
    body = report.to_dict()
    assert {
        "status": "pass",
        "checks": {
            "cache:responseTime": [{"componentId": "cache", "componentType": "component", "status": "pass"}],
            "db:responseTime": [{"componentId": "db", "componentType": "component", "status": "pass"}],
        },
    } == body
    json.dumps(body)  # serialisable as it stands


async def test_details_are_opt_in() -> None:
    """Latency, time, state and failures appear only with details=True."""
    system = system_of(Toggle("cache"))
    await system.initialize_all()
    report = await system.health(fresh=True)
    await system.shutdown()
    entry = report.to_dict(details=True)["checks"]["cache:responseTime"][0]
    assert {"observedValue", "observedUnit", "time", "state", "required", "consecutiveFailures"} <= set(entry)
    assert "ms" == entry["observedUnit"]
    assert "observedValue" not in report.to_dict()["checks"]["cache:responseTime"][0]


async def test_optional_down_is_warn_and_required_down_is_fail(fast: None) -> None:
    """An optional component down makes readiness warn (still 200); a required one down makes it fail (503)."""
    cache, db = Toggle("cache", required=False), Toggle("db")
    cache.up = False
    system = system_of(cache, db, recovery=False)
    await system.initialize_all()
    warn = await system.readiness()
    db.up = False
    fail = await system.health(fresh=True)
    await system.shutdown()
    assert ("warn", 200, "cache: refused") == (warn.status, warn.http_status, warn.output)
    assert ("fail", 503) == (fail.status, fail.http_status)
    assert "refused" == fail.components["db"].error_code
    assert "fail" == fail.components["db"].status


async def test_liveness_never_touches_a_dependency() -> None:
    """Liveness passes when a required component is down, and probes nothing."""
    db = Toggle("db")
    system = system_of(db)
    await system.initialize_all()
    db.up = False
    probes = db.probes
    report = system.liveness()
    await system.shutdown()
    assert ("pass", 200, probes) == (report.status, report.http_status, db.probes)


async def test_startup_probe_follows_the_phase(fast: None) -> None:
    """The startup probe fails before and after a successful startup, and passes in between."""
    system = system_of(Toggle("db"))
    before = system.startup()
    await system.initialize_all()
    during = system.startup()
    await system.shutdown()
    after = system.startup()
    assert [("fail", "not started"), ("pass", None), ("fail", "stopped")] == [
        (r.status, r.output) for r in (before, during, after)
    ]


async def test_startup_probe_fails_after_a_failed_startup(fast: None) -> None:
    """A required failure leaves the startup probe failing, saying why."""
    db = Toggle("db")
    db.up = False
    system = system_of(db)
    with pytest.raises(infraboot.StartupError):
        await system.initialize_all()
    assert ("fail", "startup failed") == (system.startup().status, system.startup().output)


async def test_readiness_fails_as_soon_as_shutdown_begins() -> None:
    """While shutdown runs, readiness is fail ("stopping") at once and liveness still passes."""
    db = Toggle("db")
    db.stop_gate = asyncio.Event()
    system = system_of(db)
    await system.initialize_all()
    stopping = asyncio.create_task(system.shutdown())
    await eventually(lambda: system.state("db") is ComponentState.STOPPING)
    probes = db.probes
    ready = await system.readiness()
    live = system.liveness()
    db.stop_gate.set()
    await stopping
    assert ("fail", 503, "stopping") == (ready.status, ready.http_status, ready.output)
    assert "pass" == live.status
    assert probes == db.probes


async def test_concurrent_readiness_calls_share_one_probe() -> None:
    """500 readiness requests arriving together probe each component once."""
    cache, db = Toggle("cache"), Toggle("db")
    system = system_of(cache, db, check_ttl=0.001)
    await system.initialize_all()
    await asyncio.sleep(0.002)  # let the startup result age past the TTL, so the calls must probe
    gate = asyncio.Event()
    cache.hang = db.hang = gate
    calls = [asyncio.create_task(system.readiness()) for _ in range(500)]
    await eventually(lambda: cache.probes == 1 and db.probes == 1)
    gate.set()
    reports = await asyncio.gather(*calls)
    await system.shutdown()
    assert (1, 1) == (cache.probes, db.probes)
    assert {"pass"} == {r.status for r in reports}


async def test_results_are_cached_for_the_ttl() -> None:
    """Within the TTL, readiness reuses the last result; after it, readiness probes again."""
    db = Toggle("db")
    system = system_of(db, check_ttl=0.2)
    await system.initialize_all()
    for _ in range(20):
        await system.readiness()
    within = db.probes
    await asyncio.sleep(0.25)
    await system.readiness()
    await system.shutdown()
    assert (0, 1) == (within, db.probes)


async def test_a_hanging_probe_does_not_hold_readiness_back(fast: None) -> None:
    """A probe stuck on a dead host times out at check_timeout; readiness answers meanwhile from the last result."""
    db = Toggle("db", check_timeout=0.3)
    system = system_of(db, check_ttl=0.001, health_timeout=0.05)
    await system.initialize_all()
    await asyncio.sleep(0.002)
    db.hang = asyncio.Event()  # never set: a blackholed server
    t0 = time.monotonic()
    answer = await system.readiness()
    answered_in = time.monotonic() - t0
    await eventually(lambda: db.probes >= 1 and _code(system) == "timeout")
    timed_out_in = time.monotonic() - t0
    after = await system.readiness()
    await system.shutdown()
    assert "pass" == answer.status
    assert answered_in < 0.3
    assert 0.3 <= timed_out_in < 2.0
    assert ("fail", "timeout") == (after.status, after.components["db"].error_code)


def running_infraboot_tasks() -> list[str]:
    """Names of the infraboot tasks still running in this loop."""
    return sorted(name for t in asyncio.all_tasks() if not t.done() and (name := t.get_name()).startswith("infraboot-"))


def _code(system: SystemInitializer) -> str | None:
    return system.snapshot()["db"].health.error_code


async def test_failure_threshold_and_success_threshold(fast: None) -> None:
    """A component flips to unhealthy after N failures in a row and back after M successes."""
    db = Toggle("db")
    system = system_of(db, failure_threshold=3, success_threshold=2, recovery=False)
    await system.initialize_all()
    db.up = False
    seen = [(await system.health(fresh=True)).status for _ in range(3)]
    db.up = True
    seen += [(await system.health(fresh=True)).status for _ in range(2)]
    await system.shutdown()
    assert ["pass", "pass", "fail", "fail", "pass"] == seen


async def test_transitions_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """Five failed probes log one 'component_unhealthy'; the recovery logs one 'component_healthy'."""
    db = Toggle("db")
    system = system_of(db, recovery=False)
    await system.initialize_all()
    db.up = False
    with caplog.at_level(logging.INFO, logger="infraboot"):
        for _ in range(5):
            await system.health(fresh=True)
        db.up = True
        for _ in range(3):
            await system.health(fresh=True)
    await system.shutdown()
    events = [getattr(r, "event", None) for r in caplog.records]
    assert (1, 1) == (events.count("component_unhealthy"), events.count("component_healthy"))


async def test_an_optional_component_that_goes_down_opens_the_circuit_and_recovers(fast: None) -> None:
    """While an optional component is down, get() raises at once; when it is back, get() works again."""
    cache = Toggle("cache", required=False)
    system = system_of(cache)
    await system.initialize_all()
    cache.up = False
    report = await system.health(fresh=True)
    with pytest.raises(ComponentUnavailableError) as info:
        system.get("cache")
    state = system.state("cache")
    cache.up = True
    recovered = await system.wait_ready(["cache"], timeout=5)
    resource = system.get("cache")
    await system.shutdown()
    assert ("warn", ComponentState.UNHEALTHY) == (report.status, state)
    assert "cache" == info.value.component
    assert (True, "<cache>", 1) == (recovered, resource, cache.starts)


async def test_an_optional_component_that_failed_at_startup_is_started_in_the_background(fast: None) -> None:
    """No restart needed: a failed optional component starts when its server appears, then its dependents."""
    cache = Toggle("cache", required=False)
    search = Toggle("search", requires=["cache"], required=False)
    cache.up = False
    system = system_of(cache, search)
    first = await system.initialize_all()
    cache.up = True
    recovered = await system.wait_ready(["cache", "search"], timeout=5)
    final = system.report
    await system.shutdown()
    assert ("degraded", ComponentState.BLOCKED) == (first.status, first.components["search"].state)
    assert (True, "ok") == (recovered, final.status)


async def test_a_required_component_that_goes_down_is_ready_nowhere_until_it_answers(fast: None) -> None:
    """Down: readiness fails, its state is unhealthy, get() raises at once. Back: ready again, no restart."""
    db = Toggle("db")
    system = system_of(db)
    await system.initialize_all()
    db.up = False
    report = await system.health(fresh=True)
    with pytest.raises(ComponentUnavailableError):
        system.get("db")
    startup = system.report.status
    db.up = True
    back = await system.wait_ready(["db"], timeout=5)
    resource = system.get("db")
    await system.shutdown()
    assert ("fail", ComponentState.UNHEALTHY, "failed") == (report.status, report.components["db"].state, startup)
    assert (True, "<db>", 1) == (back, resource, db.starts)


async def test_the_monitor_notices_an_outage_without_any_request(fast: None) -> None:
    """With check_interval set, a component going down is noticed and then recovered with no health() call."""
    cache = Toggle("cache", required=False)
    system = system_of(cache, check_interval=0.02)
    await system.initialize_all()
    cache.up = False
    await eventually(lambda: system.state("cache") is ComponentState.UNHEALTHY)
    cache.up = True
    back = await system.wait_ready(["cache"], timeout=5)
    await system.shutdown()
    assert back


async def test_shutdown_stops_the_monitor_and_the_recovery(fast: None) -> None:
    """After shutdown no background task of the system is left running."""
    cache = Toggle("cache", required=False)
    cache.up = False
    system = system_of(cache, check_interval=0.01)
    await system.initialize_all()
    await eventually(lambda: cache.starts >= 2)  # the recovery is trying
    await system.shutdown()
    starts = cache.starts
    await asyncio.sleep(0.05)
    assert ([], starts) == (running_infraboot_tasks(), cache.starts)


async def test_stopping_a_component_on_purpose_ends_its_recovery(fast: None) -> None:
    """stop(["cache"]) is a decision: the background recovery does not bring it back."""
    cache = Toggle("cache", required=False)
    cache.up = False
    system = system_of(cache)
    await system.initialize_all()
    await eventually(lambda: cache.starts >= 2)
    await system.stop(["cache"])
    await eventually(lambda: "infraboot-recover-cache" not in running_infraboot_tasks())
    starts = cache.starts
    cache.up = True
    await asyncio.sleep(0.05)
    await system.shutdown()
    assert ([], starts) == (running_infraboot_tasks(), cache.starts)


async def test_readiness_covers_only_what_the_application_asked_for() -> None:
    """Registered but never requested components are not part of readiness."""
    system = system_of(Toggle("cache"), Toggle("unused"))
    await system.ensure_initialized(["cache"])
    report = await system.readiness()
    await system.shutdown()
    assert ["cache"] == list(report.components)


async def test_disabled_components_pass_and_say_so() -> None:
    """A component switched off by configuration is pass, state 'disabled'."""

    class Off(Toggle):
        def configure(self) -> str | None:
            return "OFF_URL is not set"

    system = system_of(Off("search", required=False))
    await system.initialize_all()
    report = await system.readiness()
    await system.shutdown()
    assert ("pass", ComponentState.DISABLED) == (report.status, report.components["search"].state)


async def test_module_level_probes_use_the_default_system(fast: None) -> None:
    """infraboot.liveness/readiness/startup/health answer for the default system."""
    db = Toggle("db")
    infraboot.register(db)
    await infraboot.ensure_initialized(["db"])
    answers = [infraboot.liveness().status, (await infraboot.readiness()).status, infraboot.startup().status]
    detailed = await infraboot.health(fresh=True)
    await infraboot.shutdown()
    assert ["pass", "pass", "pass"] == answers
    assert "db" in detailed.components


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"check_ttl": 0}, "check_ttl"),
        ({"check_interval": -1}, "check_interval"),
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"success_threshold": 1.5}, "success_threshold"),
        ({"recovery": "yes"}, "recovery"),
        ({"health_timeout": float("nan")}, "health_timeout"),
    ],
)
def test_bad_health_settings_are_refused_by_name(settings: dict[str, object], problem: str) -> None:
    """Each bad setting is a ConfigError that names it."""
    with pytest.raises(ConfigError) as info:
        SystemInitializer(**settings)  # type: ignore[arg-type]
    assert problem in str(info.value)


def test_configure_changes_nothing_when_one_value_is_bad() -> None:
    """configure() checks every value before applying any."""
    system = SystemInitializer()
    with pytest.raises(ConfigError):
        system.configure(check_ttl=5.0, failure_threshold=0)
    assert (1.0, 1) == (system.check_ttl, system.failure_threshold)


def test_system_settings_come_from_the_environment() -> None:
    """INFRABOOT_* variables configure the default system; 'off' turns the monitor off."""
    settings = settings_from_env(
        {"INFRABOOT_CHECK_TTL": "2.5", "INFRABOOT_FAILURE_THRESHOLD": "3", "INFRABOOT_CHECK_INTERVAL": "off"}
    )
    assert {"check_ttl": 2.5, "failure_threshold": 3, "check_interval": None} == settings


def test_a_bad_environment_value_names_the_variable() -> None:
    """A value that is not a number is refused with the variable's name and an example."""
    with pytest.raises(ConfigError) as info:
        settings_from_env({"INFRABOOT_FAILURE_THRESHOLD": "three", "INFRABOOT_CHECK_TTL": "soon"})
    assert 2 == len(info.value.problems)
    assert "INFRABOOT_FAILURE_THRESHOLD='three'" in str(info.value)
