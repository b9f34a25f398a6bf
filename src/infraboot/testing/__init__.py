"""Testing support: run an application's tests without servers and without leaks.

- :func:`override` -- replace a component's resource inside a block.
- :func:`outage` -- take a component down inside a block, to test your degraded paths.
- :func:`fake_env` -- point ``REDIS_URL`` / ``DATABASE_URL`` at fresh fakes.
- :func:`lifespan` -- run an ASGI app's lifespan around a block (``components=[...]``: only those).
- :class:`TcpProxy` -- a fault-injecting TCP proxy (refuse, blackhole, reset, delay) for real servers.
- :func:`use_session` -- hand one session to ``get_session()`` and the framework dependencies.
- :func:`infraboot.set_testing` -- no backoff waits.

The pytest plugin (loaded automatically) adds the fixtures ``infraboot_system``,
``fake_redis``, ``fake_database``, ``infraboot_override`` and ``infraboot_lifespan``, which
run in the test's own event loop under pytest-asyncio or anyio's plugin. Between tests it
puts the default system back as the application registered it, shuts down what a test
left running, and restores testing mode and overrides (ini option ``infraboot_reset``:
``function``, ``session`` or ``off``). See ``docs/testing.md``.
"""

from __future__ import annotations

from infraboot._accessors import use_session
from infraboot._retry import set_testing

from ._kit import fake_env, lifespan, memory_server, outage
from ._override import override, reset_default_system
from ._proxy import TcpProxy

__all__ = [
    "TcpProxy",
    "fake_env",
    "lifespan",
    "memory_server",
    "outage",
    "override",
    "reset_default_system",
    "set_testing",
    "use_session",
]
