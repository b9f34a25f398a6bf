"""Variables under our prefixes that no setting reads: a warning with a did-you-mean, never for others' names."""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from infraboot import DatabaseComponent, RedisComponent, SystemInitializer
from infraboot._base._variables import readers_of, unknown_variables
from infraboot._components._configured import SETTINGS_FIELDS, ConfiguredComponent

READERS, _ = readers_of([RedisComponent(), DatabaseComponent(), RedisComponent("cache", env_prefix="CACHE_REDIS_")])


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("REDIS_REQUIRD", "REDIS_REQUIRED"),
        ("REDIS_ULR", "REDIS_URL"),
        ("redis_conect_timeout", "REDIS_CONNECT_TIMEOUT"),
        ("DATABASE_POOLSIZE", "DATABASE_POOL_SIZE"),
        ("DATABASE_PGBOUNCR", "DATABASE_PGBOUNCER"),
        ("INFRABOOT_STARTUP_TIMOUT", "INFRABOOT_STARTUP_TIMEOUT"),
        ("INFRABOOT_STATE_FIEL", "INFRABOOT_STATE_FILE"),  # the state file's, read in _engine
        ("INFRABOOT_STATE_INTERVALL", "INFRABOOT_STATE_INTERVAL"),
        ("INFRABOOT_AP", "INFRABOOT_APP"),  # the command line's
        ("CACHE_REDIS_ENABLE", "CACHE_REDIS_ENABLED"),
    ],
)
def test_a_misspelt_variable_is_named_with_the_setting_meant(variable: str, meant: str) -> None:
    """A near miss of a setting's variable is one line naming it and the variable it was meant to be."""
    expected = [f"{variable} is not a setting infraboot reads (ignored); did you mean {meant}?"]
    assert expected == unknown_variables(READERS, [variable, "REDIS_URL", "PATH"])


@pytest.mark.parametrize(
    "variable",
    [
        "REDIS_SERVICE_HOST",  # Kubernetes, for a Service named redis
        "REDIS_SERVICE_PORT",
        "REDIS_SERVICE_PORT_REDIS",
        "REDIS_PORT",
        "REDIS_PORT_6379_TCP",
        "REDIS_PORT_6379_TCP_ADDR",
        "REDIS_PORT_6379_TCP_PROTO",
        "DATABASE_PORT_5432_TCP_PORT",
        "REDIS_NAME",  # Docker links
        "REDIS_ENV_REDIS_VERSION",
        "REDIS_HOST",  # other software's own settings, like none of ours
        "REDIS_PASSWORD",
        "REDIS_DB",
        "DATABASE_DIRECT_URL",
        "DATABASE_USER",
        "INFRABOOT_TEST_REDIS_URL",
        "REDISX_URL",
    ],
)
def test_variables_of_kubernetes_docker_and_other_software_are_left_alone(variable: str) -> None:
    """Service-link variables and names unlike any setting of ours are never reported."""
    assert [] == unknown_variables(READERS, [variable])


async def test_a_start_logs_each_misspelt_variable_once(
    clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """At startup a misspelt variable is a warning with the did-you-mean, once per process, never its value."""
    clean_env.setenv("REDIS_URL", "memory://")
    clean_env.setenv("REDIS_MAX_RETRES", "7")
    caplog.set_level(logging.WARNING, logger="infraboot")
    for _ in range(2):
        async with SystemInitializer([RedisComponent()]):
            pass
    lines = [r.getMessage() for r in caplog.records if getattr(r, "event", None) == "unknown_variable"]
    expected = [
        "unknown_variable problem='REDIS_MAX_RETRES is not a setting infraboot reads (ignored); "
        "did you mean REDIS_MAX_RETRIES?'"
    ]
    assert expected == lines


def test_infraboot_own_variables_are_known_and_get_no_did_you_mean() -> None:
    """The state file's, the command line's and the system settings' variables are settings, not typos."""
    names = ["INFRABOOT_STATE_FILE", "INFRABOOT_STATE_INTERVAL", "INFRABOOT_APP", "INFRABOOT_STARTUP_TIMEOUT"]
    assert set(names) <= READERS["INFRABOOT_"]
    assert [] == unknown_variables(READERS, names)


def _configured_classes() -> list[type[ConfiguredComponent]]:  # type: ignore[type-arg]
    found: list[type[ConfiguredComponent]] = []  # type: ignore[type-arg]
    todo: list[type[ConfiguredComponent]] = [ConfiguredComponent]  # type: ignore[type-arg]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("infraboot.") and "settings_class" in vars(sub):
                found.append(sub)
    return found


def test_the_static_field_lists_match_the_settings_classes() -> None:
    """SETTINGS_FIELDS (what the typo check knows without pydantic) is each built-in settings class's fields."""
    for module in ("_redis", "_database", "_nats", "_rabbitmq", "_http", "_mysql"):
        importlib.import_module(f"infraboot._components.{module}")
    classes = _configured_classes()
    assert {"RedisSettings", "DatabaseSettings", "NatsSettings", "RabbitMQSettings", "HttpSettings"} <= {
        c.settings_class for c in classes
    }
    for component in classes:
        key = (component.settings_module, component.settings_class)
        assert key in SETTINGS_FIELDS, f"{component.__name__}: add {key} to SETTINGS_FIELDS"
    for (module, name), fields in SETTINGS_FIELDS.items():
        settings = getattr(importlib.import_module(module), name)
        assert tuple(settings.model_fields) == fields, f"SETTINGS_FIELDS[{name}] is out of step with {name}"


BARE_APP = """
    import infraboot
    import infraboot.asyncio

    @infraboot.component("thing")
    async def thing(ctx):
        yield "hello"

    infraboot.register(thing)
"""
NO_PYDANTIC = """
    import sys
    sys.modules["pydantic"] = sys.modules["pydantic_settings"] = None  # an install without the extras
    import infraboot.asyncio
    from infraboot.__main__ import main

    import app

    async def use():
        return infraboot.get("thing")

    print("run:", infraboot.asyncio.run(use, components=["thing"]))
    print("check:", main(["check", "--app", "app", "thing"]))
    print("pydantic:", sys.modules["pydantic"])
"""


def test_custom_components_run_without_pydantic(tmp_path: Path) -> None:
    """A bare install (no extras) runs and checks its own components; the typo check still names REDIS_ULR."""
    (tmp_path / "app.py").write_text(textwrap.dedent(BARE_APP))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "INFRABOOT_"))}
    env.update(REDIS_ULR="redis://x", INFRABOOT_STATE_FIEL="/tmp/x", PYTHONPATH=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(NO_PYDANTIC)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert 0 == result.returncode, result.stderr
    assert ["run: hello", "check: 0", "pydantic: None"] == [
        line for line in result.stdout.splitlines() if line.startswith(("run:", "check:", "pydantic:"))
    ]
    assert "thing      ready" in result.stdout
    assert "did you mean REDIS_URL?" in result.stdout + result.stderr
    assert "did you mean INFRABOOT_STATE_FILE?" in result.stdout + result.stderr
