"""What a process that fails to start prints: one ``infraboot: ...`` line per problem, no traceback.

Shared by ``infraboot.asyncio.run``, the worker adapters and the command line, which all exit 2 then.
"""

from __future__ import annotations

from infraboot.exceptions import ConfigError, StartupError

__all__ = ["EXTRAS", "failure_lines"]

# The extra that installs each optional dependency (pyproject.toml's optional-dependencies).
EXTRAS = {
    "redis": '"infraboot[redis]"',
    "fakeredis": '"infraboot[redis]"',
    "pydantic": '"infraboot[redis]" (or "infraboot[postgres]", "infraboot[sqlite]")',
    "pydantic_settings": '"infraboot[redis]" (or "infraboot[postgres]", "infraboot[sqlite]")',
    "pydantic_core": '"infraboot[redis]" (or "infraboot[postgres]", "infraboot[sqlite]")',
    "sqlalchemy": '"infraboot[postgres]" (or "infraboot[sqlite]")',
    "asyncpg": '"infraboot[postgres]"',
    "aiosqlite": '"infraboot[sqlite]"',
    "fastapi": '"infraboot[fastapi]"',
    "uvicorn": '"infraboot[fastapi]"',
    "starlette": '"infraboot[starlette]"',
    "prometheus_client": '"infraboot[metrics]"',
}


def failure_lines(exc: BaseException, *, during_startup: bool = True) -> list[str] | None:
    """What ``run()`` and the CLI print for a failure that exits 2, one line per problem; ``None``: not one.

    A configuration error gives a line per problem, a startup error its message, and an
    ImportError of a known optional dependency (during startup) the install command.
    """
    if isinstance(exc, ConfigError):
        return [f"infraboot: {problem}" for problem in exc.problems]
    if isinstance(exc, StartupError):
        return [f"infraboot: {exc}"]
    if isinstance(exc, ImportError) and during_startup and exc.name:
        module = exc.name.partition(".")[0]
        extra = EXTRAS.get(module)
        if extra is not None:
            return [f"infraboot: the optional dependency {module!r} is not installed: pip install {extra}"]
    return None
