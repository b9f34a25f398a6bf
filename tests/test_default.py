"""The module-level default system and the package's front door."""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import AsyncIterator

import pytest

import infraboot
import infraboot.exceptions
from infraboot import NotInitializedError


async def test_module_level_functions_use_the_default_system() -> None:
    """register / ensure_initialized / get / shutdown act on one process-wide system."""

    @infraboot.component("thing")
    async def thing(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "T"

    infraboot.register(thing)
    report = await infraboot.ensure_initialized(["thing"])
    assert "ok" == report.status
    assert "T" == infraboot.get("thing")
    assert infraboot.ComponentState.READY == infraboot.state("thing")
    assert infraboot.default_system() is infraboot.default_system()
    await infraboot.shutdown()
    with pytest.raises(NotInitializedError):
        infraboot.get("thing")


async def test_module_level_shutdown_takes_a_budget_as_the_systems_does() -> None:
    """infraboot.shutdown(timeout=...) bounds a hanging teardown; a wrong budget names the argument."""
    import asyncio
    import time

    @infraboot.component("stuck", stop_timeout=30.0)
    async def stuck(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "S"
        await asyncio.sleep(3600)

    with pytest.raises(infraboot.ConfigError, match=r"shutdown\(timeout"):
        await infraboot.shutdown(timeout=-1)
    infraboot.register(stuck)
    await infraboot.ensure_initialized(["stuck"])
    t0 = time.monotonic()
    report = await infraboot.shutdown(timeout=0.2)
    assert time.monotonic() - t0 < 3.0
    assert "stuck" in report.errors


def test_all_is_honest() -> None:
    """Every name in __all__ exists, and every public attribute is in __all__."""
    for name in infraboot.__all__:
        assert hasattr(infraboot, name), name
    submodules = {n for n, v in vars(infraboot).items() if isinstance(v, types.ModuleType)}
    public = (
        {n for n in vars(infraboot) if not n.startswith(("_", "@"))}
        - submodules
        - {
            "annotations",
            "TYPE_CHECKING",
            "Any",
        }
    )
    assert set() == public - set(infraboot.__all__)
    errors = [
        n
        for n, v in vars(infraboot.exceptions).items()
        if isinstance(v, type) and issubclass(v, Exception) and not n.startswith("_")
    ]
    assert sorted(infraboot.exceptions.__all__) == sorted(errors)


def test_exceptions_subclass_what_people_catch() -> None:
    """Each error is also the stdlib error people already catch."""
    assert issubclass(infraboot.ConfigError, ValueError)
    assert issubclass(infraboot.DependencyError, infraboot.ConfigError)
    assert issubclass(infraboot.StartupError, RuntimeError)
    assert issubclass(infraboot.NotInitializedError, LookupError)
    assert issubclass(infraboot.ComponentUnavailableError, RuntimeError)
    for exc in (infraboot.ConfigError, infraboot.StartupError, infraboot.NotInitializedError):
        assert issubclass(exc, infraboot.InfrabootError)


HEAVY = [
    "redis",
    "sqlalchemy",
    "asyncpg",
    "pydantic",
    "fastapi",
    "starlette",
    "fakeredis",
    "aiosqlite",
    "prometheus_client",
    "pydantic_settings",
    "aio_pika",
    "nats",
    "httpx",
    "asyncmy",
    "opentelemetry",
]


def test_import_is_light() -> None:
    """`import infraboot` loads no driver, framework or pydantic."""
    code = (
        "import sys, infraboot\n"
        f"heavy = {HEAVY!r}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "[]" == out.strip()


def test_settings_load_lazily() -> None:
    """The settings classes import pydantic only when they are first touched."""
    code = (
        "import sys, infraboot\n"
        "assert 'pydantic' not in sys.modules\n"
        "infraboot.RedisSettings\n"
        "print('pydantic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "True" == out.strip()


def test_unknown_attribute_is_an_attribute_error() -> None:
    """The lazy loader does not hide typos."""
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        infraboot.Nope  # type: ignore[attr-defined]  # noqa: B018


def test_set_testing_restores_on_exit() -> None:
    """set_testing() as a context manager restores the previous mode."""
    from infraboot._engine._retry import is_testing, testing_attempts

    assert not is_testing()
    with infraboot.set_testing(attempts=4):
        assert (True, 4) == (is_testing(), testing_attempts())
        with infraboot.set_testing(False):
            assert not is_testing()
        assert is_testing()
    assert not is_testing()


def test_set_testing_validates_attempts() -> None:
    """attempts must be >= 1."""
    with pytest.raises(infraboot.ConfigError, match="attempts must be a whole number >= 1"):
        infraboot.set_testing(attempts=0)


def test_entry_points_contribute_components(monkeypatch: pytest.MonkeyPatch) -> None:
    """Components named in the infraboot.components entry-point group are registered; bad ones explained."""
    import importlib.metadata

    from infraboot._front._default import load_entry_points

    class Plugin(infraboot.Component[str]):
        name = "plugin"

    class FakeEntryPoint:
        def __init__(self, name: str, obj: object) -> None:
            self.name, self.value, self._obj = name, f"pkg:{name}", obj

        def load(self) -> object:
            return self._obj

    found = [FakeEntryPoint("plugin", Plugin), FakeEntryPoint("factory", lambda: [infraboot.Component("made")])]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: found)
    system = infraboot.SystemInitializer()
    added = load_entry_points(system)
    assert ["plugin", "made"] == [c.name for c in added]

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [FakeEntryPoint("bad", 42)])
    with pytest.raises(infraboot.ConfigError, match="must name a Component"):
        load_entry_points(infraboot.SystemInitializer())
