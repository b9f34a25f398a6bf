"""Health groups: tags, groups in code and in INFRABOOT_HEALTH_GROUPS, policies, budgets, paths and the CLI."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

import infraboot
from infraboot import ConfigError, HealthGroup, SystemInitializer
from infraboot._engine._groups import parse_groups
from infraboot._front._default import settings_from_env
from infraboot.starlette import ProbeMiddleware

from .servers import TcpProxy
from .test_cli import run


class Gate(infraboot.Component[str]):
    """A component whose probe the test makes pass, fail or hang."""

    def __init__(self, name: str, **options: object) -> None:
        super().__init__(name, **options)  # type: ignore[arg-type]
        self.up = True
        self.hang = asyncio.Event()
        self.hang.set()

    async def start(self, ctx: infraboot.Context) -> str:
        return self.name

    async def check(self, resource: str) -> None:
        await self.hang.wait()
        if not self.up:
            raise ConnectionRefusedError("connection refused")


def test_tags_are_validated_and_deduplicated() -> None:
    """``tags`` is a list of words; a string or a bad word is a ConfigError naming the fix."""
    assert ("critical", "db") == Gate("a", tags=["critical", "db", "critical"]).tags
    with pytest.raises(ConfigError, match=r"tags='critical' must be a list of words, e\.g\. tags=\['critical'\]"):
        Gate("a", tags="critical")
    with pytest.raises(ConfigError, match="tags="):
        Gate("a", tags=["no spaces"])


def test_register_adds_tags() -> None:
    """``register(component, tags=...)`` adds to the component's own tags."""
    system = SystemInitializer(check_interval=None)
    comp = system.register(Gate("a", tags=["x"]), tags=["critical"])
    assert ("x", "critical") == comp.tags


def test_group_definitions_are_checked_all_at_once() -> None:
    """Every bad group is one line naming the group, the key and the fix; nothing is applied."""
    system = SystemInitializer(check_interval=None)
    with pytest.raises(ConfigError) as info:
        system.configure(
            health_groups={
                "a": {"include": [], "policy": "gate"},
                "b": {"include": ["x"], "policy": "block"},
                "c": {"include": ["x"], "timeout": -1},
                "d/e": ["x"],
            }
        )
    problems = info.value.problems
    assert 4 == len(problems)
    assert "health_groups['b']: policy='block' must be one of gate, warn, report" in problems
    assert system.health_groups is None


def test_groups_from_the_environment() -> None:
    """INFRABOOT_HEALTH_GROUPS is JSON: a list of members, or include/policy/timeout."""
    env = {"INFRABOOT_HEALTH_GROUPS": '{"critical": ["database"], "cache": {"include": ["redis"], "policy": "warn"}}'}
    groups = settings_from_env(env)["health_groups"]
    assert HealthGroup("critical", ("database",)) == groups["critical"]
    assert "warn" == groups["cache"].policy
    with pytest.raises(ConfigError, match="INFRABOOT_HEALTH_GROUPS is not valid JSON"):
        settings_from_env({"INFRABOOT_HEALTH_GROUPS": "{critical"})


def test_a_group_that_matches_nothing_fails_validation() -> None:
    """A misspelt member is found before any I/O, naming the components and tags there are."""
    system = SystemInitializer([Gate("db", tags=["critical"])], check_interval=None, health_groups={"x": ["critcal"]})
    with pytest.raises(ConfigError, match=r"matches no component; list component names or tags \(critical, db\)"):
        system.validate()


async def test_policies_decide_the_status_and_the_http_code() -> None:
    """gate: fail is 503; warn: a failure answers warn (200); report: the true status, 200."""
    db, cache = Gate("db", tags=["critical"]), Gate("cache", required=False)
    groups = {
        "critical": ["critical"],
        "soft": {"include": ["db"], "policy": "warn"},
        "dash": {"include": ["db", "cache"], "policy": "report"},
    }
    system = SystemInitializer([db, cache], check_interval=None, check_ttl=1e-9, health_groups=groups)
    async with system:
        db.up = False
        gate, soft, dash = [await system.health(fresh=True, group=g) for g in ("critical", "soft", "dash")]
        assert ("fail", 503, ["db"]) == (gate.status, gate.http_status, list(gate.components))
        assert ("warn", 200) == (soft.status, soft.http_status)
        assert ("fail", 200, ["db", "cache"]) == (dash.status, dash.http_status, list(dash.components))
        body = (await system.health(fresh=True)).to_dict(details=True)
        assert {"status": "fail", "policy": "gate", "components": ["db"]} == body["groups"]["critical"]
        assert "warn" == body["groups"]["soft"]["status"]
        assert "readiness of group critical" == gate.to_dict(details=True)["description"]


async def test_an_unknown_group_is_a_config_error_naming_the_groups() -> None:
    """``readiness(group="nope")`` says which groups there are and how to define one."""
    system = SystemInitializer([Gate("db")], check_interval=None, health_groups={"core": ["db"]})
    async with system:
        with pytest.raises(ConfigError, match=r"no health group named 'nope' \(the groups: core\)"):
            await system.readiness(group="nope")


async def test_a_hung_check_outside_the_group_does_not_delay_it() -> None:
    """The group probes its members only: a check that hangs elsewhere costs it nothing."""
    db, slow = Gate("db"), Gate("slow")
    system = SystemInitializer(
        [db, slow], check_interval=None, check_ttl=1e-9, health_timeout=5, health_groups={"core": ["db"]}
    )
    async with system:
        slow.hang.clear()
        t0 = time.monotonic()
        report = await system.readiness(group="core")
        assert ("pass", True) == (report.status, time.monotonic() - t0 < 1.0)
        slow.hang.set()


async def test_the_group_budget_bounds_its_answer() -> None:
    """A member whose probe hangs is answered from the last known result once the group's timeout passed."""
    db = Gate("db")
    system = SystemInitializer(
        [db],
        check_interval=None,
        check_ttl=1e-9,
        health_timeout=10,
        health_groups={"g": {"include": ["db"], "timeout": 0.2}},
    )
    async with system:
        db.hang.clear()
        t0 = time.monotonic()
        report = await system.readiness(group="g")
        elapsed = time.monotonic() - t0
        db.hang.set()
        assert "pass" == report.status  # the last known result
        assert 0.15 < elapsed < 2.0


async def test_paths_serve_each_group() -> None:
    """ProbeMiddleware and health_routes answer /readyz/<group>; an unknown group is a 404 naming the groups."""
    from starlette.applications import Starlette

    from infraboot.starlette import health_routes

    db, other = Gate("db"), Gate("other")
    system = SystemInitializer([db, other], check_interval=None, check_ttl=1e-9, health_groups={"core": ["db"]})

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("probes never reach the app")

    async with system:
        other.up = False
        for asgi in (ProbeMiddleware(app, system=system), Starlette(routes=health_routes(system))):
            transport = httpx.ASGITransport(app=asgi)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                core, main, nope = [await client.get(p) for p in ("/readyz/core", "/readyz", "/readyz/nope")]
            assert (200, 503, 404) == (core.status_code, main.status_code, nope.status_code)
            assert {"componentId": "db", "componentType": "component", "status": "pass"} == (
                core.json()["checks"]["db:responseTime"][0]
            )
            assert ["core"] == nope.json()["groups"]


@pytest.mark.real
async def test_real_servers_a_blackholed_redis_outside_the_group(
    redis_proxy: TcpProxy, redis_url: str, database_url: str
) -> None:
    """PostgreSQL answers /readyz/critical at once while Redis, outside the group, is blackholed."""
    redis = infraboot.RedisComponent(settings={"url": redis_proxy.url_for(redis_url), "check_timeout": 3})
    database = infraboot.DatabaseComponent(settings={"url": database_url}, tags=["critical"])
    system = SystemInitializer(
        [redis, database],
        check_interval=None,
        check_ttl=1e-9,
        health_timeout=5,
        health_groups={"critical": ["critical"]},
    )
    async with system:
        redis_proxy.set_mode("blackhole")
        t0 = time.monotonic()
        main = asyncio.ensure_future(system.readiness())
        group = await system.readiness(group="critical")
        group_took = time.monotonic() - t0
        main_report = await main
        main_took = time.monotonic() - t0
        assert ("pass", ["database"]) == (group.status, list(group.components))
        assert group_took < 1.0, group_took
        assert ("fail", "timeout") == (main_report.status, main_report.components["redis"].error_code)
        assert main_took > 2.0
        redis_proxy.set_mode("forward")


def test_parse_accepts_health_group_objects() -> None:
    """A HealthGroup given in code keeps its include, policy and timeout."""
    groups, problems = parse_groups({"g": HealthGroup("ignored", ("db",), "report", 0.5)})
    assert ([], HealthGroup("g", ("db",), "report", 0.5)) == (problems, groups["g"])


def test_cli_check_group() -> None:
    """``check --group`` judges by the group; an unknown group is exit 2 before anything starts."""
    groups = json.dumps({"core": ["redis"]})
    ok = run("check", "--group", "core", "--json", REDIS_URL="memory://", INFRABOOT_HEALTH_GROUPS=groups)
    assert 0 == ok.returncode, ok.stderr
    assert "readiness of group core" == json.loads(ok.stdout)["health"]["description"]
    nope = run("check", "--group", "nope", REDIS_URL="memory://", INFRABOOT_HEALTH_GROUPS=groups)
    assert 2 == nope.returncode
    assert "no health group named 'nope' (the groups: core)" in nope.stderr


def test_configure_checks_groups_with_everything_else() -> None:
    """``infraboot.configure(health_groups=...)`` is all or nothing, as every other setting."""
    from infraboot._front._default import reset_default_system

    old = reset_default_system(SystemInitializer([infraboot.RedisComponent()], check_interval=None))
    try:
        with pytest.raises(ConfigError, match="policy='never' must be one of gate, warn, report"):
            infraboot.configure(
                redis={"url": "memory://"}, health_groups={"g": {"include": ["redis"], "policy": "never"}}
            )
        infraboot.configure(health_groups={"g": ["redis"]})
        assert ("redis",) == infraboot.default_system().health_groups["g"].include
    finally:
        reset_default_system(old)


async def test_fastapi_health_router_serves_groups() -> None:
    """``health_router()`` answers /readyz/<group> in a FastAPI app, with the group's policy."""
    from fastapi import FastAPI

    import infraboot.fastapi as ib

    db, cache = Gate("db"), Gate("cache", required=False)
    groups = {"core": ["db"], "extras": {"include": ["cache"], "policy": "report"}}
    system = SystemInitializer([db, cache], check_interval=None, check_ttl=1e-9, health_groups=groups)
    app = FastAPI()
    app.include_router(ib.health_router(system, details=True))
    async with system:
        cache.up = False
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            core, extras = await client.get("/readyz/core"), await client.get("/readyz/extras")
    assert (200, "pass") == (core.status_code, core.json()["status"])
    assert (200, "warn", "report") == (extras.status_code, extras.json()["status"], extras.json()["policy"])
