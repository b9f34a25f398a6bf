"""Testing support: run an application's tests without servers and without leaks.

- :func:`override` -- replace a component's resource inside a block.
- :func:`outage` -- take a component down inside a block, to test your degraded paths.
- :func:`fake_redis` / :func:`fake_database` -- start a Redis / database component (a named one too) on
  a fresh in-process fake; :func:`fake_component` -- a component of your own stands in with a resource.
- :func:`fake_env` -- point ``REDIS_URL`` / ``DATABASE_URL`` at fresh fakes.
- :func:`lifespan` -- run an ASGI app's lifespan around a block (``components=[...]``: only those).
- :class:`TcpProxy` -- a fault-injecting TCP proxy (refuse, blackhole, reset, delay) for real servers.
- :func:`use_session` -- hand one session to ``get_session()`` and the framework dependencies.

:func:`infraboot.set_testing` turns backoff waits off (``infraboot.testing.set_testing`` is a deprecated
second name for it).

The pytest plugin (loaded automatically) adds the fixtures ``infraboot_system``,
``fake_redis``, ``fake_database``, ``infraboot_fake``, ``infraboot_override`` and ``infraboot_lifespan``, which
run in the test's own event loop under pytest-asyncio or anyio's plugin. Between tests it
puts the default system back as the application registered it, shuts down what a test
left running, and restores testing mode and overrides (ini option ``infraboot_reset``:
``function``, ``session`` or ``off``). See ``docs/testing.md``.
"""

from __future__ import annotations

from typing import Any

from infraboot._front._accessors import use_session

from ._kit import (
    Fakes,
    LifespanRunner,
    fake_component,
    fake_database,
    fake_env,
    fake_redis,
    lifespan,
    memory_server,
    outage,
)
from ._override import override, reset_default_system
from ._proxy import TcpProxy

__all__ = [
    "Fakes",
    "LifespanRunner",
    "TcpProxy",
    "fake_component",
    "fake_database",
    "fake_env",
    "fake_redis",
    "lifespan",
    "memory_server",
    "outage",
    "override",
    "reset_default_system",
    "use_session",
]


def __getattr__(name: str) -> Any:
    if name == "set_testing":
        import warnings

        from infraboot._engine._backoff import set_testing

        msg = "infraboot.testing.set_testing is deprecated; use infraboot.set_testing (the same function)"
        warnings.warn(msg, DeprecationWarning, stacklevel=2)
        return set_testing
    msg = f"module 'infraboot.testing' has no attribute {name!r}"
    raise AttributeError(msg)
