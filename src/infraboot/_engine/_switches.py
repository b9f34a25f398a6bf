"""``<NAME>_ENABLED`` / ``<NAME>_REQUIRED``: the operator's two switches, for components of your own too.

The built-in components read them through their settings (``REDIS_ENABLED``,
``DATABASE_REQUIRED``, a named instance's ``CACHE_REDIS_REQUIRED``); every other component
reads them here, just before its ``configure()``, at every start. The prefix is the
component's name upper-cased, each character that is not a letter or digit made ``_``:
``search`` reads ``SEARCH_REQUIRED``, ``pg-pool`` reads ``PG_POOL_REQUIRED``.
``<NAME>_REQUIRED`` beats the ``required=`` the code gave (that is the default an operator
overrides); unset or empty, the code's value holds again.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from infraboot.exceptions import ConfigError

__all__ = ["TRUE", "env_prefix", "read_switches", "switched"]

#: The values a switch reads as true (lower-cased, stripped).
TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_TRUE = TRUE
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})
# The required= a component had in code, before the environment changed it (restored when unset).
_IN_CODE = "_infraboot_required_in_code"


def env_prefix(name: str) -> str:
    """The prefix of *name*'s variables: ``pg-pool`` → ``PG_POOL_``."""
    prefix = _PREFIXES.get(name)
    if prefix is None:  # worked out once per name: every start asks
        plain = name.isascii() and name.replace("_", "").isalnum()  # the common case, without a regex
        prefix = _PREFIXES[name] = (name if plain else re.sub(r"[^A-Za-z0-9]", "_", name)).upper() + "_"
    return prefix


_PREFIXES: dict[str, str] = {}


def _flag(variable: str, problems: list[str], environ: Mapping[str, str]) -> bool | None:
    raw = environ.get(variable, "")
    if not raw.strip():
        return None
    value = raw.strip().lower()
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    problems.append(f"{variable}={raw!r}: must be true or false, e.g. {variable}=false")
    return None


def switched(environ: Mapping[str, str]) -> frozenset[str]:
    """The prefixes (``PG_POOL_``) of every ``<NAME>_ENABLED`` and ``<NAME>_REQUIRED`` in *environ*."""
    return frozenset(
        k[: -len(suffix)] for k in environ for suffix in _SUFFIXES if k.endswith(suffix) and len(k) > len(suffix)
    )


_SUFFIXES = ("ENABLED", "REQUIRED")


def read_switches(
    component: Any, environ: Mapping[str, str] = os.environ, present: frozenset[str] | None = None
) -> str | None:
    """Apply ``<NAME>_REQUIRED`` to *component* and return the disabled reason of ``<NAME>_ENABLED=false``.

    A value that is not true or false is a :class:`ConfigError` naming the variable. *environ*:
    the environment as read once for many components (a miss in ``os.environ`` is slow);
    *present*: its :func:`switched` prefixes, worked out once for them too.
    """
    if present is None:
        present = switched(environ)
    if not present or (prefix := env_prefix(component.name)) not in present:  # the common case: neither set
        in_code = component.__dict__.get(_IN_CODE)
        if in_code is not None:  # set once, unset since: the code's value holds again
            component.required = in_code
        return None
    enabled_variable, required_variable = f"{prefix}ENABLED", f"{prefix}REQUIRED"
    problems: list[str] = []
    enabled = _flag(enabled_variable, problems, environ)
    required = _flag(required_variable, problems, environ)
    if problems:
        raise ConfigError.from_problems(problems)
    in_code = component.__dict__.setdefault(_IN_CODE, component.required)
    component.required = in_code if required is None else required
    return f"{enabled_variable}=false" if enabled is False else None
