"""The pytest plugin (entry point ``pytest11``): fixtures for testing with infraboot."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infraboot._default import reset_default_system

__all__ = ["infraboot_reset"]


@pytest.fixture(autouse=True)
def infraboot_reset() -> Iterator[None]:
    """Give every test a fresh default system and restore the previous one afterwards."""
    previous = reset_default_system(None)
    try:
        yield
    finally:
        reset_default_system(previous)
