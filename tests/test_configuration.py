"""Adopting infraboot in an existing application: settings in code, driver options, named instances, clean errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import text

import infraboot
import infraboot.fastapi as ib
from infraboot import ConfigError, DatabaseComponent, RedisComponent, SystemInitializer
from infraboot.testing import lifespan

pytestmark = pytest.mark.usefixtures("clean_env")


# -- settings in code ---------------------------------------------------------------------------------


async def test_code_beats_the_environment_which_beats_the_env_file(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """configure(): keywords given in code win, then REDIS_* variables, then the env file, then defaults."""
    env_file = tmp_path / ".env"
    env_file.write_text("REDIS_URL=memory://from-file\nREDIS_MAX_RETRIES=7\nREDIS_SOCKET_TIMEOUT=9\n")
    clean_env.setenv("REDIS_MAX_RETRIES", "5")
    clean_env.setenv("REDIS_SOCKET_TIMEOUT", "4")
    infraboot.configure(
        redis={"socket_timeout": 2.5}, database={"url": "sqlite+aiosqlite:///:memory:"}, env_file=env_file
    )
    await infraboot.ensure_initialized(["redis", "database"])
    settings = infraboot.default_system().component("redis").settings  # type: ignore[attr-defined]
    await infraboot.shutdown()

    assert ("memory://from-file", 5, 2.5, 30.0) == (
        str(settings.url),
        settings.max_retries,
        settings.socket_timeout,
        settings.health_check_interval,
    )


async def test_settings_objects_are_taken_as_they_are() -> None:
    """A RedisSettings / DatabaseSettings object is used as given; the app needs no os.environ."""
    infraboot.configure(
        redis=infraboot.RedisSettings(url="memory://", required=False),
        database=infraboot.DatabaseSettings(url="sqlite+aiosqlite:///:memory:"),
    )
    report = await infraboot.ensure_initialized(["redis", "database"])
    required = infraboot.default_system().component("redis").required
    await infraboot.shutdown()

    assert ("ok", False) == (report.status, required)


async def test_settings_for_a_started_component_are_refused() -> None:
    """configure(redis=...) after startup is a clear error, not a silent no-op."""
    infraboot.configure(redis={"url": "memory://"}, database={"url": "sqlite+aiosqlite:///:memory:"})
    await infraboot.ensure_initialized(["redis"])
    with pytest.raises(ConfigError, match=r"settings for .redis.: it is ready; give them before ensure_initialized"):
        infraboot.configure(redis={"url": "memory://other"})
    await infraboot.shutdown()


async def test_every_problem_is_reported_at_once_with_variable_and_value(clean_env: pytest.MonkeyPatch) -> None:
    """Type and range problems together, each naming its variable, the bad value and an example."""
    clean_env.setenv("REDIS_URL", "memory://")
    clean_env.setenv("REDIS_REQUIRED", "maybe")
    clean_env.setenv("REDIS_MAX_RETRIES", "-1")
    clean_env.setenv("REDIS_CONNECT_TIMEOUT", "0")
    with pytest.raises(ConfigError) as info:
        await SystemInitializer([RedisComponent()]).initialize_all()

    problems = info.value.problems
    assert 3 == len(problems)
    assert "REDIS_REQUIRED='maybe': must be true or false, e.g. REDIS_REQUIRED=false" in problems
    assert any(p.startswith("REDIS_MAX_RETRIES=-1: must be a whole number >= 0") for p in problems)
    assert any(p.startswith("REDIS_CONNECT_TIMEOUT=0.0:") and "e.g. REDIS_CONNECT_TIMEOUT=5" in p for p in problems)


async def test_a_value_given_in_code_is_named_by_its_keyword() -> None:
    """A bad value from code names the keyword the code used, not an environment variable."""
    system = SystemInitializer([RedisComponent(settings={"url": "memory://", "connect_timeout": -1})])
    with pytest.raises(ConfigError) as info:
        await system.initialize_all()
    assert info.value.problems[0].startswith("connect_timeout=-1: must be a finite number of seconds > 0")


async def test_a_settings_object_names_its_keyword_not_a_variable_nobody_set() -> None:
    """RedisSettings(connect_timeout=-1) is reported as connect_timeout=-1, the value as written, no REDIS_ name."""
    system = SystemInitializer([RedisComponent(settings=infraboot.RedisSettings(url="memory://", connect_timeout=-1))])
    with pytest.raises(ConfigError) as info:
        await system.initialize_all()
    expected = ("connect_timeout=-1: must be a finite number of seconds > 0, e.g. connect_timeout=5",)
    assert expected == info.value.problems


def test_a_settings_object_with_a_bad_type_is_a_config_error_naming_the_keyword() -> None:
    """RedisSettings(connect_timeout="soon") raises a ConfigError naming the keyword, not a pydantic traceback."""
    with pytest.raises(ConfigError) as info:
        infraboot.RedisSettings(connect_timeout="soon")  # type: ignore[arg-type]
    assert ("connect_timeout='soon': must be a number, e.g. connect_timeout=5",) == info.value.problems


def test_a_secret_of_the_wrong_type_given_in_code_is_not_shown() -> None:
    """RedisSettings(sentinel_password=<not a string>) names the keyword and hides the value."""
    with pytest.raises(ConfigError) as info:
        infraboot.RedisSettings(sentinel_password=73310572)  # type: ignore[arg-type]
    assert ("sentinel_password=***: must be a valid value, e.g. sentinel_password=...",) == info.value.problems


async def test_configure_applies_nothing_when_anything_is_wrong(clean_env: pytest.MonkeyPatch) -> None:
    """configure(redis=..., check_ttl=-1) raises and keeps neither the redis settings nor the system's."""
    clean_env.setenv("REDIS_URL", "memory://")
    system = infraboot.default_system()
    before = system.check_ttl
    with pytest.raises(ConfigError) as info:
        infraboot.configure(redis={"url": "memory://given"}, check_ttl=-1)
    with pytest.raises(ConfigError) as bad_redis:
        infraboot.configure(redis={"url": "memory://given", "max_retries": -1}, check_ttl=7)
    infraboot.configure(database={"url": "sqlite+aiosqlite:///:memory:"})
    await infraboot.ensure_initialized(["redis", "database"])
    redis_url = str(system.component("redis").settings.url)  # type: ignore[attr-defined]
    await infraboot.shutdown()
    assert ("check_ttl=-1: must be a finite number of seconds > 0, e.g. check_ttl=1",) == info.value.problems
    assert ("redis: max_retries=-1: must be a whole number >= 0, e.g. max_retries=3",) == bad_redis.value.problems
    assert ("memory://", before) == (redis_url, system.check_ttl)


async def test_an_empty_variable_is_unset_and_the_env_file_value_applies(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """REDIS_URL= (empty) in the environment does not hide REDIS_URL from the env file: empty means unset."""
    env_file = tmp_path / ".env"
    env_file.write_text("REDIS_URL=memory://from-file\n")
    clean_env.setenv("REDIS_URL", "")
    infraboot.configure(database={"url": "sqlite+aiosqlite:///:memory:"}, env_file=env_file)
    await infraboot.ensure_initialized(["redis"])
    url = str(infraboot.default_system().component("redis").settings.url)  # type: ignore[attr-defined]
    await infraboot.shutdown()
    assert "memory://from-file" == url


@pytest.mark.parametrize(
    ("variable", "example"),
    [
        ("REDIS_CLIENT_OPTIONS", '{"decode_responses": true}'),
        ("DATABASE_ENGINE_OPTIONS", '{"pool_use_lifo": true}'),
        ("DATABASE_SESSION_OPTIONS", '{"expire_on_commit": false}'),
    ],
)
async def test_invalid_json_in_an_options_variable_is_a_config_error_naming_it(
    clean_env: pytest.MonkeyPatch, variable: str, example: str
) -> None:
    """Invalid JSON in an *_OPTIONS variable is one ConfigError line naming the variable and an example, no value."""
    clean_env.setenv("REDIS_URL", "memory://")
    clean_env.setenv("DATABASE_URL", "sqlite+aiosqlite:///:memory:")
    clean_env.setenv(variable, '{"password": "hunter2"')
    system = SystemInitializer([RedisComponent(), DatabaseComponent()])
    with pytest.raises(ConfigError) as info:
        await system.initialize_all()
    expected = (
        f"{variable} is not valid JSON (Expecting ',' delimiter at character 23); give a JSON object, "
        f"e.g. {variable}='{example}'"
    )
    assert (expected,) == info.value.problems


async def test_json_options_from_the_env_file_are_read_as_json(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """REDIS_CLIENT_OPTIONS in an env file is JSON as it is in the environment."""
    env_file = tmp_path / ".env"
    env_file.write_text('REDIS_URL=memory://\nREDIS_CLIENT_OPTIONS={"decode_responses": true}\n')
    system = SystemInitializer([RedisComponent(env_file=env_file)])
    async with system:
        await system.get("redis").set("k", "v")
        value = await system.get("redis").get("k")
    assert "v" == value


# -- driver options -------------------------------------------------------------------------------------


async def test_client_options_reach_the_embedded_redis_too() -> None:
    """client_options={'decode_responses': True} gives str replies on memory://, as on a real server."""
    system = SystemInitializer(
        [RedisComponent(settings={"url": "memory://", "client_options": {"decode_responses": True}})]
    )
    async with system:
        redis = system.get("redis")
        await redis.set("k", "v")
        value = await redis.get("k")
    assert "v" == value


@pytest.mark.real
async def test_client_options_reach_the_real_redis(redis_url: str) -> None:
    """The same option on a real server: decode_responses=True, str replies."""
    system = SystemInitializer(
        [RedisComponent(settings={"url": redis_url, "client_options": {"decode_responses": True}})]
    )
    async with system:
        redis = system.get("redis")
        await redis.set("infraboot:test:decode", "v")
        value = await redis.get("infraboot:test:decode")
        await redis.delete("infraboot:test:decode")
    assert "v" == value


async def test_options_infraboot_owns_are_refused_with_the_setting_to_use() -> None:
    """socket_timeout in client_options, echo in engine_options, bind in session_options: each names the setting."""
    system = SystemInitializer(
        [
            RedisComponent(settings={"url": "memory://", "client_options": {"socket_timeout": 1}}),
            DatabaseComponent(
                settings={
                    "url": "sqlite+aiosqlite:///:memory:",
                    "engine_options": {"echo": True},
                    "session_options": {"bind": None},
                }
            ),
        ]
    )
    with pytest.raises(ConfigError) as info:
        await system.initialize_all()
    problems = info.value.problems
    assert "client_options: 'socket_timeout' is set by infraboot; use REDIS_SOCKET_TIMEOUT instead" in problems
    assert "engine_options: 'echo' is set by infraboot; use DATABASE_ECHO instead" in problems
    assert "session_options: 'bind' is set by infraboot; use url instead" in problems  # url was given in code


async def test_session_options_shape_every_session_and_a_call_can_override_them() -> None:
    """get_session() takes the component's session_options; keyword arguments given to the call win."""
    infraboot.configure(
        redis={"url": "memory://"},
        database={"url": "sqlite+aiosqlite:///:memory:", "session_options": {"autoflush": False, "info": {"a": 1}}},
    )
    await infraboot.ensure_initialized(["database"])
    async with infraboot.get_session() as session:
        configured = (session.autoflush, session.info)
    async with infraboot.get_session(autoflush=True) as session:
        overridden = session.autoflush
    await infraboot.shutdown()

    assert ((False, {"a": 1}), True) == (configured, overridden)


async def test_engine_options_reach_the_engine() -> None:
    """engine_options go to create_async_engine as they are (here: hide_parameters)."""
    options = {"url": "sqlite+aiosqlite:///:memory:", "engine_options": {"hide_parameters": True}}
    system = SystemInitializer([DatabaseComponent(settings=options)])
    async with system:
        hidden = system.get("database").sync_engine.hide_parameters
    assert hidden is True


# -- named instances, replacing a built-in ------------------------------------------------------------------


async def test_a_named_redis_reads_its_own_variables(clean_env: pytest.MonkeyPatch) -> None:
    """RedisComponent('cache', env_prefix='CACHE_REDIS_') reads CACHE_REDIS_URL; get_redis('cache') returns it."""
    clean_env.setenv("REDIS_URL", "memory://main")
    clean_env.setenv("CACHE_REDIS_URL", "memory://cache")
    clean_env.setenv("DATABASE_ENABLED", "false")
    infraboot.register(RedisComponent("cache", env_prefix="CACHE_REDIS_"))
    await infraboot.ensure_initialized(["redis", "cache"])
    await infraboot.get_redis("cache").set("where", "cache")
    main_sees = await infraboot.get_redis().get("where")
    cache_sees = await infraboot.get_redis("cache").get("where")
    target = infraboot.default_system().component("cache").target
    await infraboot.shutdown()

    assert (None, b"cache", "memory://cache") == (main_sees, cache_sees, target)


async def test_a_named_instance_names_its_own_variables_in_errors(clean_env: pytest.MonkeyPatch) -> None:
    """The default prefix of 'queue' is QUEUE_: its unset URL is named QUEUE_URL, with its three ways out."""
    with pytest.raises(ConfigError) as info:
        await SystemInitializer([RedisComponent("queue")]).initialize_all()
    problem = info.value.problems[0]
    assert problem.startswith("QUEUE_URL is not set and 'queue' is required")
    assert "QUEUE_ENABLED=false" in problem
    assert "QUEUE_REQUIRED=false" in problem


async def test_register_replace_swaps_a_built_in_before_startup() -> None:
    """register(component, replace=True) swaps the built-in 'redis'; without replace the message says how."""
    with pytest.raises(infraboot.DependencyError, match=r"replace=True"):
        infraboot.register(RedisComponent(settings={"url": "memory://"}))
    mine = infraboot.register(RedisComponent(settings={"url": "memory://mine"}), replace=True)
    await infraboot.ensure_initialized(["redis"])
    with pytest.raises(ConfigError, match="cannot replace 'redis' while it is ready"):
        infraboot.register(RedisComponent(settings={"url": "memory://"}), replace=True)
    swapped = infraboot.default_system().component("redis") is mine
    await infraboot.shutdown()

    assert swapped


async def test_the_report_covers_what_was_asked_for() -> None:
    """After ensure_initialized(['redis']) the system's report shows redis, not a pending database."""
    infraboot.configure(redis={"url": "memory://"})
    await infraboot.ensure_initialized(["redis"])
    report = infraboot.default_system().report
    await infraboot.shutdown()

    assert (["redis"], "ok") == (list(report.components), report.status)


# -- frameworks ---------------------------------------------------------------------------------------------


def make_app(system: SystemInitializer) -> FastAPI:
    app = FastAPI(lifespan=ib.lifespan(system=system), exception_handlers=ib.exception_handlers)

    @app.get("/direct")
    async def direct() -> str:
        return str(await system.get("cache").ping())

    @app.get("/dependency")
    async def dependency(cache: Annotated[object, Depends(ib.redis_client_for("cache"))]) -> str:
        return type(cache).__name__

    return app


async def test_a_required_component_down_gives_503_json_not_500() -> None:
    """Down after startup, required: the dependency and a direct get() both answer 503 with Retry-After and JSON."""
    cache = RedisComponent("cache", settings={"url": "memory://down-later"})
    system = SystemInitializer([cache], check_interval=None, recovery=False)
    app = make_app(system)
    async with lifespan(app), httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        assert 200 == (await client.get("/dependency")).status_code
        infraboot.testing.memory_server("down-later").connected = False
        await system.health(fresh=True)
        answers = [await client.get("/dependency"), await client.get("/direct")]
        infraboot.testing.memory_server("down-later").connected = True

    assert [503, 503] == [a.status_code for a in answers]
    assert all("5" == a.headers["retry-after"] for a in answers)
    assert all("cache is unavailable" in a.json()["detail"] for a in answers)


async def test_an_optional_dependency_hands_out_none_while_the_component_is_down() -> None:
    """redis_client_for('cache', optional=True) gives the handler None to take its degraded path, not a 503."""
    cache = RedisComponent("cache", settings={"url": "memory://optional-cache", "required": False})
    system = SystemInitializer([cache], check_interval=None, recovery=False)
    app = FastAPI(lifespan=ib.lifespan(system=system))

    @app.get("/maybe")
    async def maybe(cache: Annotated[object, Depends(ib.redis_client_for("cache", optional=True))]) -> str:
        return "none" if cache is None else "client"

    async with lifespan(app), httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        up = (await client.get("/maybe")).json()
        infraboot.testing.memory_server("optional-cache").connected = False
        await system.health(fresh=True)
        down = (await client.get("/maybe")).json()
        infraboot.testing.memory_server("optional-cache").connected = True

    assert ("client", "none") == (up, down)


def test_the_dependency_for_a_name_is_one_callable_the_override_key() -> None:
    """redis_client_for('cache') is the same callable every time, so app.dependency_overrides can use it."""
    assert ib.redis_client_for("cache") is ib.redis_client_for("cache")
    assert ib.redis_client_for("redis") is ib.redis_client
    assert ib.database_session_for("database") is ib.database_session


async def test_metrics_without_the_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """/metrics asked for (metrics=True) answers 501 with the pip command when prometheus_client is missing."""
    import infraboot.starlette as ibs

    monkeypatch.setattr(ibs, "has_metrics", lambda: False)
    app = FastAPI()
    app.include_router(ib.health_router(SystemInitializer(), metrics=True))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        answer = await client.get("/metrics")
    assert (501, 'metrics need prometheus_client: pip install "infraboot[metrics]"') == (
        answer.status_code,
        answer.text.strip(),
    )


async def test_the_default_routes_leave_metrics_out_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without prometheus_client the default health_router has no /metrics: the app's own route answers it."""
    import infraboot.starlette as ibs

    monkeypatch.setattr(ibs, "has_metrics", lambda: False)
    app = FastAPI()
    app.include_router(ib.health_router(SystemInitializer()))

    @app.get("/metrics")
    async def own_metrics() -> dict[str, str]:
        return {"metrics": "the app's own"}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        answer = await client.get("/metrics")
    assert (200, {"metrics": "the app's own"}) == (answer.status_code, answer.json())


async def test_probe_middleware_leaves_metrics_to_the_app_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without prometheus_client the default ProbeMiddleware passes /metrics on; metrics=True answers 501."""
    import infraboot._web._asgi as asgi

    monkeypatch.setattr(asgi, "has_metrics", lambda: False)
    app = FastAPI()

    @app.get("/metrics")
    async def own_metrics() -> dict[str, str]:
        return {"metrics": "the app's own"}

    system = SystemInitializer()
    default, asked = asgi.ProbeMiddleware(app, system=system), asgi.ProbeMiddleware(app, system=system, metrics=True)
    statuses = []
    for wrapped in (default, asked):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(wrapped), base_url="http://t") as client:
            statuses.append((await client.get("/metrics")).status_code)
    assert [200, 501] == statuses


def test_drivers_are_imported_before_the_first_attempt_starts_its_clock() -> None:
    """In a fresh interpreter the built-ins' drivers are loaded when component_starting is logged, not inside it."""
    script = """
import asyncio, logging, sys
import infraboot

seen = {}

class Watch(logging.Handler):
    def emit(self, record):
        if getattr(record, "event", "") == "component_starting":
            seen[record.component] = [m in sys.modules for m in ("fakeredis", "aiosqlite", "sqlalchemy.ext.asyncio")]

logging.getLogger("infraboot").addHandler(Watch())
logging.getLogger("infraboot").setLevel(logging.INFO)

async def main():
    await infraboot.ensure_initialized(["redis", "database"])
    await infraboot.shutdown()

asyncio.run(main())
print(sorted(seen.items()))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "INFRABOOT_"))}
    env.update(REDIS_URL="memory://", DATABASE_URL="sqlite+aiosqlite:///:memory:")
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert ("[('database', [True, True, True]), ('redis', [True, True, True])]", "") == (
        run.stdout.strip(),
        run.stderr,
    )


def test_a_misspelt_system_setting_is_named_with_a_did_you_mean_beside_the_other_problems() -> None:
    """configure(check_tll=1) names the setting and its likely spelling; other problems keep their own lines."""
    with pytest.raises(ConfigError) as caught:
        infraboot.configure(check_ttl=-1, check_tll=1)
    lines = str(caught.value).splitlines()[1:]
    assert 2 == len(lines)
    assert "check_ttl=-1: must be a finite number of seconds > 0" in lines[0]
    assert "unknown setting 'check_tll'; did you mean 'check_ttl'?" in lines[1]


def test_a_value_given_in_code_is_named_with_its_component(clean_env: pytest.MonkeyPatch) -> None:
    """The same wrong value given to redis and to database is reported twice, each line naming its component."""
    with pytest.raises(ConfigError) as caught:
        infraboot.configure(
            redis={"url": "memory://", "connect_timeout": -1},
            database={"url": "sqlite+aiosqlite:///:memory:", "connect_timeout": -1},
        )
    assert ["redis", "database"] == [line.split(":")[0] for line in caught.value.problems]


@pytest.mark.real
async def test_configure_components_creates_named_instances_by_their_url(redis_url: str, database_url: str) -> None:
    """configure(components=...) makes a Redis and a database instance not registered yet, told by the URL."""
    infraboot.configure(
        components={
            "queue": {"url": redis_url, "client_options": {"decode_responses": True}},
            "limiter": {"url": redis_url},
            "reports": {"url": database_url},
        }
    )
    system = infraboot.default_system()
    kinds = {name: type(system.component(name)).__name__ for name in ("queue", "limiter", "reports")}
    await infraboot.ensure_initialized(["queue", "limiter", "reports"])
    try:
        assert await infraboot.get_redis("queue").ping()
        async with infraboot.get_session("reports") as session:
            one = (await session.execute(text("SELECT 1"))).scalar_one()
    finally:
        await infraboot.shutdown()
    assert {"queue": "RedisComponent", "limiter": "RedisComponent", "reports": "DatabaseComponent"} == kinds
    assert 1 == one


async def test_configure_components_without_a_kind_names_the_fix() -> None:
    """An unknown name whose settings tell no kind: one ConfigError naming the URL or register() fix; nothing made."""
    with pytest.raises(ConfigError, match=r"components\['search'\].*infraboot.register"):
        infraboot.configure(components={"search": {"timeout": 3}, "queue": {"url": "memory://"}})
    assert "queue" not in infraboot.default_system().components  # all or nothing


async def test_configure_components_checks_a_new_instance_settings() -> None:
    """A new instance's settings are checked like a registered one's: the field is named."""
    with pytest.raises(ConfigError, match="connect_timeout"):
        infraboot.configure(components={"queue": {"url": "redis://127.0.0.1:6379/0", "connect_timeout": -1}})
    assert "queue" not in infraboot.default_system().components
