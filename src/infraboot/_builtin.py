"""The built-in components registered on the default system."""

from __future__ import annotations

from typing import Any

from ._component import Component

__all__ = ["builtin_components"]


def builtin_components() -> list[Component[Any]]:
    return []
