"""Environment variables under infraboot's prefixes that no setting reads: likely typos, with a did-you-mean.

``REDIS_REQUIRD=false`` is read by nothing, so the component stays required and nobody is
told. A variable is reported when it starts with a prefix infraboot reads (``REDIS_``,
``DATABASE_``, ``INFRABOOT_``, a named instance's ``CACHE_REDIS_``), is not one of its
settings, and is close to one (:func:`difflib.get_close_matches`, or two neighbouring
letters swapped: ``REDIS_ULR``): other software shares
these prefixes (``REDIS_HOST`` for a worker library, ``REDIS_PASSWORD`` for an image's
entrypoint), so a name like no setting of ours is left alone. The variables Kubernetes
(``<SVC>_SERVICE_HOST``, ``<SVC>_SERVICE_PORT_*``, ``<SVC>_PORT_6379_TCP_ADDR``) and Docker
links (``<ALIAS>_NAME``, ``<ALIAS>_ENV_*``) inject for a service named ``redis`` are never
reported. Values are never shown.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from ._log import event
from ._names import APP_VARIABLE, RUNTIME_VARIABLES

__all__ = [
    "APP_VARIABLE",
    "check_variables",
    "know_variables",
    "readers_of",
    "unknown_variables",
    "warn_unknown_variables",
]

#: How close a name must be to a setting's to be called a typo of it (difflib's ratio).
CUTOFF = 0.8
# What Kubernetes service links and Docker links define after a service's (or alias's) prefix.
# (A pattern string: re compiles it on first use and caches it, so importing costs nothing.)
_INJECTED = (
    r"SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?|NAME|ENV_[A-Z0-9_]*"
)
_warned: set[str] = set()
_lock = threading.Lock()
# The INFRABOOT_* variables read by the rooms above: the command line's and the state file's (named in
# ``_names``), and the system settings' (``_engine._system_settings`` registers them when imported).
_known: set[str] = set(RUNTIME_VARIABLES)


def know_variables(names: Iterable[str]) -> None:
    """Add *names* (``INFRABOOT_*``) to the variables the check knows: a room above ``_base`` registers its own."""
    with _lock:
        _known.update(names)


def unknown_variables(readers: Mapping[str, Collection[str]], environ: Iterable[str]) -> list[str]:
    """One line per variable in *environ* that looks like a misspelt setting.

    *readers* maps each prefix (``REDIS_``) to the full names of the variables read under
    it (``REDIS_URL``, ...). Names are compared upper-cased, as the settings read them.
    """
    known = {name.upper() for names in readers.values() for name in names}
    prefixes = sorted(readers, key=len, reverse=True)  # CACHE_REDIS_ before REDIS_... before C_
    out: list[str] = []
    for name in sorted(environ):
        upper = name.upper()
        if upper in known:
            continue
        for prefix in (p for p in prefixes if upper.startswith(p.upper())):
            rest = upper[len(prefix) :]
            if re.fullmatch(_INJECTED, rest):
                break
            settings = {n.upper()[len(prefix) :]: n.upper() for n in readers[prefix]}
            import difflib  # here, not at import: most processes never meet a typo

            match = difflib.get_close_matches(rest, list(settings), n=1, cutoff=CUTOFF)
            match = match or [s for s in settings if _swapped(rest, s)]
            if match:
                out.append(f"{name} is not a setting infraboot reads (ignored); did you mean {settings[match[0]]}?")
                break
    return out


def _swapped(a: str, b: str) -> bool:
    """Whether *a* is *b* with two neighbouring letters swapped (``ULR`` for ``URL``: short names score low)."""
    if len(a) != len(b) or a == b:
        return False
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]


def warn_unknown_variables(readers: Mapping[str, Collection[str]], environ: Iterable[str]) -> list[str]:
    """Log each line of :func:`unknown_variables` as a warning, once per process; returns every line."""
    lines = unknown_variables(readers, environ)
    with _lock:
        fresh = [line for line in lines if line not in _warned]
        _warned.update(fresh)
    for line in fresh:
        event(logging.WARNING, "unknown_variable", None, problem=line)
    return lines


def readers_of(components: Iterable[Any]) -> tuple[dict[str, set[str]], list[str]]:
    """The prefixes and variables that *components* (and the system's ``INFRABOOT_*``) read, and their env files.

    A component reads variables when it has ``env_names()`` (the built-in Redis and
    database components and their named instances). The ``INFRABOOT_*`` names are those of ``_names``
    and those registered through :func:`know_variables` (the system settings', when a system exists).
    """
    with _lock:
        readers: dict[str, set[str]] = {"INFRABOOT_": set(_known)}
    files: list[str] = []
    for component in components:
        names = getattr(component, "env_names", None)
        if names is None:
            continue
        prefix, read, env_file = names()
        readers.setdefault(prefix, set()).update(read)
        if env_file is not None:
            files.append(env_file)
    return readers, files


def check_variables(components: Iterable[Any], *, warn: bool = True) -> list[str]:
    """Every likely typo among the environment's variables and the components' env files; logged once each."""
    readers, files = readers_of(components)
    names = set(os.environ)
    for path in dict.fromkeys(files):
        names.update(_file_names(path))
    return warn_unknown_variables(readers, names) if warn else unknown_variables(readers, names)


def _file_names(path: str) -> list[str]:
    try:
        from dotenv import dotenv_values

        return list(dotenv_values(path))
    except (ImportError, OSError):  # a missing file is the settings' ConfigError to report
        return []
