"""Polluters and checkers: in whatever order they run, every checker sees the application's clean default system."""

from __future__ import annotations

import asyncio
import gc

import pytest
from app import POOLS

import infraboot
import infraboot.testing
from infraboot._engine._retry import is_testing

KEPT: list[object] = []  # what a careless test keeps alive: an override it entered and never left


async def test_polluter_leaves_testing_mode_on() -> None:
    infraboot.set_testing(attempts=5)


async def test_polluter_leaves_a_component_running() -> None:
    await infraboot.ensure_initialized(["pool"])
    assert infraboot.get("pool").open


@pytest.mark.filterwarnings("ignore:infraboot.*left components:ResourceWarning")
def test_polluter_leaves_a_component_running_in_a_gone_loop() -> None:
    asyncio.run(infraboot.ensure_initialized(["pool"]))


async def test_polluter_leaves_overrides_open() -> None:
    await infraboot.ensure_initialized(["pool"])
    infraboot.testing.override("pool", "fake").__enter__()
    KEPT.append(infraboot.default_system().override("pool", "fake, too"))
    KEPT[-1].__enter__()  # type: ignore[attr-defined]
    assert "fake, too" == infraboot.get("pool")


def test_polluter_changes_the_registrations() -> None:
    infraboot.default_system().components["pool"].required = False
    infraboot.register(infraboot.Component("extra"))


def check_clean() -> None:
    gc.collect()  # a pool left open would warn now, in this checker, and fail it
    system = infraboot.default_system()
    assert not is_testing()
    assert {"redis", "database", "pool"} == set(system.components)
    assert infraboot.ComponentState.PENDING == system.state("pool")
    assert system.components["pool"].required
    with pytest.raises(infraboot.NotInitializedError):
        infraboot.get("pool")
    assert [] == [p for p in POOLS if p.open]


async def test_checker_1() -> None:
    check_clean()


def test_checker_2() -> None:
    check_clean()


async def test_checker_3() -> None:
    check_clean()


def test_checker_4() -> None:
    check_clean()


async def test_checker_5() -> None:
    check_clean()
