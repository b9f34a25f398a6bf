"""The built-in components registered on the default system."""

from __future__ import annotations

from typing import Any

from infraboot._engine._component import Component

from ._database import DatabaseComponent
from ._redis import RedisComponent

__all__ = ["builtin_components"]


def builtin_components() -> list[Component[Any]]:
    """``redis`` and ``database``, configured from the environment when they start."""
    return [RedisComponent(), DatabaseComponent()]
