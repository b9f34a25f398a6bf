"""Testing support: run an application's tests without servers and without leaks.

See ``docs/testing.md``.
"""

from __future__ import annotations

from ._override import override, reset_default_system

__all__ = ["override", "reset_default_system"]
