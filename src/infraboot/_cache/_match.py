"""Redis glob patterns (``SCAN MATCH``), matched the way Redis matches them, and escaped safely.

Redis matches bytes: ``*`` any run, ``?`` one byte, ``[...]`` a set (``^`` first negates it,
``a-z`` a range, ``\\x`` the byte ``x``), ``\\x`` outside a set the byte ``x``. The local level
must drop exactly the keys Redis drops, so it compiles the same rules into a bytes regex.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from infraboot.exceptions import ConfigError

from ._keys import escape_field

__all__ = ["full_pattern", "glob_escape", "glob_matcher", "match_field"]

_GLOB = frozenset("*?[]\\")


def glob_escape(text: str) -> str:
    """*text* with every glob character (``* ? [ ] \\``) escaped: as a pattern it matches *text* only."""
    return "".join("\\" + c if c in _GLOB else c for c in text)


def match_field(value: Any) -> str:
    """The text a ``@cached`` key template stores for *value* (``key="user:{user_id}"``): ints as their
    digits, anything else percent-encoded outside ``[A-Za-z0-9_]``. It holds no glob character, so in a
    :meth:`Cache.delete_match` pattern it matches that value's keys and no other value's::

        await cache.delete_match(f"user_{match_field(user_id)}_items:*")
    """
    return escape_field(value)


def _byte(b: int) -> str:
    return f"\\x{b:02x}"


def _translate(pattern: bytes) -> str:
    """The regex (over ``latin-1``-decoded bytes) of a Redis glob; ``ValueError`` for an unclosed ``[``."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == ord("*"):
            while i + 1 < n and pattern[i + 1] == ord("*"):
                i += 1
            out.append(".*")
            i += 1
        elif c == ord("?"):
            out.append(".")
            i += 1
        elif c == ord("["):
            i += 1
            negate = i < n and pattern[i] == ord("^")
            i += 1 if negate else 0
            ranges: list[tuple[int, int]] = []
            while True:
                if i >= n:
                    msg = "an unclosed '[' (escape it as \\[ to match the character)"
                    raise ValueError(msg)
                if pattern[i] == ord("\\") and i + 1 < n:
                    ranges.append((pattern[i + 1], pattern[i + 1]))
                    i += 2
                elif pattern[i] == ord("]"):
                    i += 1
                    break
                elif i + 2 < n and pattern[i + 1] == ord("-"):
                    lo, hi = sorted((pattern[i], pattern[i + 2]))
                    ranges.append((lo, hi))
                    i += 3
                else:
                    ranges.append((pattern[i], pattern[i]))
                    i += 1
            body = "".join(_byte(lo) if lo == hi else f"{_byte(lo)}-{_byte(hi)}" for lo, hi in ranges)
            if not body:
                out.append("." if negate else "(?!)")  # Redis: [] matches nothing, [^] any one byte
            else:
                out.append(f"[{'^' if negate else ''}{body}]")
        elif c == ord("\\") and i + 1 < n:
            out.append(_byte(pattern[i + 1]))
            i += 2
        else:
            out.append(_byte(c))
            i += 1
    return "".join(out)


@functools.lru_cache(maxsize=256)
def glob_matcher(pattern: str) -> Callable[[str], bool]:
    """``matches(key)``: whether Redis' ``SCAN MATCH pattern`` would list *key* (both as UTF-8 bytes)."""
    regex = re.compile(_translate(pattern.encode()), re.DOTALL)

    def matches(key: str) -> bool:
        return regex.fullmatch(key.encode().decode("latin-1")) is not None

    return matches


def full_pattern(prefix: str, pattern: object) -> str:
    """*pattern* within the namespace *prefix*, checked before any I/O (a :class:`ConfigError` names the fix)."""
    if not isinstance(pattern, str):
        msg = f"delete_match(pattern={pattern!r}): the pattern must be a str, e.g. 'user_*_items:*'"
        raise ConfigError(msg)
    try:
        _translate(pattern.encode())
    except ValueError as exc:
        msg = f"delete_match(pattern={pattern!r}): {exc}"
        raise ConfigError(msg) from None
    return glob_escape(prefix) + pattern
