"""A sync test that leaves a component running in a loop that is gone: the warning names this test."""

from __future__ import annotations

import asyncio

import app  # noqa: F401 - the application registers "pool" at import time

import infraboot


def test_forgets_to_shut_down() -> None:
    asyncio.run(infraboot.ensure_initialized(["pool"]))


def test_a_later_test_is_not_blamed() -> None:
    assert infraboot.ComponentState.PENDING == infraboot.state("pool")
