"""Variables under our prefixes that no setting reads: a warning with a did-you-mean, never for others' names."""

from __future__ import annotations

import logging

import pytest

from infraboot import DatabaseComponent, RedisComponent, SystemInitializer
from infraboot._variables import readers_of, unknown_variables

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
