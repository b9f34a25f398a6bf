"""The cache's private rooms; the public names are in :mod:`infraboot.cache`."""

from __future__ import annotations

__all__: list[str] = []
