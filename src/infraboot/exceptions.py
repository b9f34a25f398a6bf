"""The exceptions infraboot raises.

Each subclasses the standard error people already catch, says when it is raised,
and carries a message that names the fix.  None of them ever contains a secret:
messages are scrubbed and driver exceptions are not chained when they could leak one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._engine._report import StartupReport

__all__ = [
    "CacheUnavailableError",
    "ComponentUnavailableError",
    "ConfigError",
    "DependencyError",
    "InfrabootError",
    "NotInitializedError",
    "OnceLockTimeout",
    "StartupError",
    "StoppedBySignal",
    "UnknownComponentError",
    "ValueTooLargeError",
]


class InfrabootError(Exception):
    """Base class of every error infraboot raises on purpose."""


class _OwnMessage(Exception):
    """Base of the errors whose message is already the whole description: shown without their type's name."""


class ConfigError(InfrabootError, ValueError):
    """A component, a setting or an argument is invalid.

    Raised before any network I/O: at decoration, at registration, by
    :func:`infraboot.validate_config`, or at the start of ``ensure_initialized``.
    The message lists every bad field with its fix.
    """

    def __init__(self, message: str, *, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        #: One line per problem, each naming the field and the fix.
        self.problems: tuple[str, ...] = problems or (message,)

    @classmethod
    def from_problems(cls, problems: Iterable[str], *, title: str = "invalid configuration") -> ConfigError:
        """One error listing every problem, one per line, with secrets scrubbed."""
        from ._base._redact import scrub

        clean = tuple(scrub(p) for p in problems)
        return cls(f"{title}:\n" + "\n".join(f"  - {p}" for p in clean), problems=clean)


class DependencyError(ConfigError):
    """The dependency graph is invalid: an unknown requirement, a cycle, a duplicate name."""


class StartupError(InfrabootError, RuntimeError):
    """A required component could not be started.

    Attributes:
        component: the name of the required component that failed.
        attempts: how many start attempts were made.
        report: the :class:`~infraboot.StartupReport` of the failed startup;
            every component that had started was stopped again (rolled back).
    """

    def __init__(self, message: str, *, component: str, attempts: int, report: StartupReport) -> None:
        super().__init__(message)
        self.component = component
        self.attempts = attempts
        self.report = report


class NotInitializedError(InfrabootError, LookupError):
    """A component was asked for before it was started, or is not registered at all."""


class ComponentUnavailableError(InfrabootError, RuntimeError):
    """An optional component is down (it failed, or a dependency of it did).

    Raised at once by ``get()``, without waiting for a timeout, so that callers can
    take their degraded path.  The component recovers by itself when it can.
    """

    def __init__(self, message: str, *, component: str) -> None:
        super().__init__(message)
        self.component = component


class UnknownComponentError(DependencyError, NotInitializedError):
    """A name given to the system is not registered.

    Raised the same way by every method that takes names (``ensure_initialized``,
    ``stop``, ``wait_ready``, ``get``, ``state``, ``override``), with a did-you-mean
    suggestion and the list of registered names. It is both a :class:`DependencyError`
    and a :class:`NotInitializedError`, so code that catches either keeps working.
    """

    def __init__(self, message: str, *, name: str, suggestion: str | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.suggestion = suggestion


class StoppedBySignal(StartupError):
    """The startup was stopped by SIGTERM or SIGINT and rolled back: logged once, as a warning, not a failure.

    Raised by the framework adapters' lifespan (and ``infraboot.asyncio.run``) instead of finishing
    a startup the server is about to abandon anyway.
    """


class OnceLockTimeout(_OwnMessage, InfrabootError, TimeoutError):
    """Another session held a run-once lock for longer than the task's ``timeout``; the message names it."""


class CacheUnavailableError(ComponentUnavailableError):
    """Raised by a cache made with ``required=True`` when its Redis cannot be used (down, unhealthy,
    not started). An optional cache (the default) never raises it: it serves its local level instead."""


class ValueTooLargeError(InfrabootError, ValueError):
    """Raised by a cache's ``set`` (and a cached call's store) when a serialized value exceeds ``max_value_size``."""
