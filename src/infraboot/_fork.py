"""Fork hygiene: what a child process forked after startup must forget.

A child inherits the parent's sockets; closing (or even finalising) them in the child
breaks the parent. Owners register a hook here; in the child each hook replaces the
owner's live objects, and the parent's objects are kept alive in :data:`orphans` so
that the child's garbage collector never finalises them.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["orphans", "watch"]

#: The parent's objects, held for the child's whole life so that they are never finalised there.
orphans: list[Any] = []

_hooks: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()


def watch(owner: Any, hook: Callable[[Any], None]) -> None:
    """Call ``hook(owner)`` in every child forked while *owner* is alive (held weakly)."""
    _hooks[owner] = hook


def _in_child() -> None:
    for owner, hook in list(_hooks.items()):
        hook(owner)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_in_child)
