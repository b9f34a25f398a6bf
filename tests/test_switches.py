"""<NAME>_ENABLED / <NAME>_REQUIRED: components of your own read the operator's switches like the built-ins."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import infraboot
from infraboot import ComponentState, ConfigError, SystemInitializer


def broken(name: str) -> infraboot.Component[None]:
    """A required component whose every start fails at once."""

    @infraboot.component(name, retries=0)
    async def start(ctx: infraboot.Context) -> AsyncIterator[None]:
        raise ConnectionRefusedError("no search here")
        yield

    return start


async def test_required_false_in_the_environment_makes_a_custom_component_optional(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SEARCH_REQUIRED=false lets startup go on without a failing 'search' that the code made required."""
    monkeypatch.setenv("SEARCH_REQUIRED", "false")
    async with SystemInitializer([broken("search")]) as system:
        result = system.report.components["search"]
        assert (ComponentState.FAILED, False) == (result.state, result.required)


async def test_enabled_false_switches_off_a_custom_component_named_with_a_dash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PG_POOL_ENABLED=false disables the component 'pg-pool' (non-alphanumerics become '_') without starting it."""
    monkeypatch.setenv("PG_POOL_ENABLED", "false")
    async with SystemInitializer([broken("pg-pool")]) as system:
        result = system.report.components["pg-pool"]
        assert (ComponentState.DISABLED, 0) == (result.state, result.attempts)


async def test_unsetting_required_restores_what_the_code_said(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once SEARCH_REQUIRED is unset again, the component is as required as its definition says."""
    system = SystemInitializer([broken("search")])
    monkeypatch.setenv("SEARCH_REQUIRED", "false")
    await system.ensure_initialized()
    await system.shutdown()
    monkeypatch.delenv("SEARCH_REQUIRED")
    with pytest.raises(infraboot.StartupError):
        await system.ensure_initialized()
    await system.shutdown()
    assert True is system.component("search").required


async def test_a_switch_that_is_not_a_boolean_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """SEARCH_REQUIRED=maybe is a ConfigError naming the variable, the value and an example, before any start."""
    monkeypatch.setenv("SEARCH_REQUIRED", "maybe")
    monkeypatch.setenv("SEARCH_ENABLED", "nah")
    system = SystemInitializer([broken("search")])
    with pytest.raises(ConfigError) as info:
        await system.ensure_initialized()
    expected = (
        "SEARCH_ENABLED='nah': must be true or false, e.g. SEARCH_ENABLED=false",
        "SEARCH_REQUIRED='maybe': must be true or false, e.g. SEARCH_REQUIRED=false",
    )
    assert expected == info.value.problems
    assert 0 == system.report.components["search"].attempts
