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

import difflib
import logging
import os
import re
import threading
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from ._log import event

__all__ = ["check_variables", "readers_of", "unknown_variables", "warn_unknown_variables"]

#: How close a name must be to a setting's to be called a typo of it (difflib's ratio).
CUTOFF = 0.8
# What Kubernetes service links and Docker links define after a service's (or alias's) prefix.
_INJECTED = re.compile(
    r"SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?|NAME|ENV_[A-Z0-9_]*"
)
_warned: set[str] = set()
_lock = threading.Lock()


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
            if _INJECTED.fullmatch(rest):
                break
            settings = {n.upper()[len(prefix) :]: n.upper() for n in readers[prefix]}
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
    database components and their named instances).
    """
    from ._default import ENV_VARIABLES

    readers: dict[str, set[str]] = {"INFRABOOT_": set(ENV_VARIABLES)}
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
