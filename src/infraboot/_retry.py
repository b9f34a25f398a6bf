"""Retry settings and the testing switch.

The retry loop itself uses tenacity, imported on the first start so that
``import infraboot`` stays light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import TracebackType

__all__ = ["RetryPolicy", "TestingMode", "is_testing", "set_testing", "testing_attempts"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a component's start is retried.

    ``retries`` extra attempts after the first; waits grow exponentially from
    ``backoff_initial`` and are capped at ``backoff_max``, each one drawn at random
    between 0 and that value ("full jitter") so that many processes restarting
    together do not hammer a recovering server in step.
    """

    retries: int = 3
    backoff_initial: float = 0.1
    backoff_max: float = 5.0

    @property
    def attempts(self) -> int:
        return self.retries + 1


@dataclass(frozen=True, slots=True)
class _Testing:
    enabled: bool = False
    attempts: int = 1


_testing = _Testing()


def is_testing() -> bool:
    return _testing.enabled


def testing_attempts() -> int:
    return _testing.attempts


class TestingMode:
    """Returned by :func:`set_testing`; as a context manager it restores the previous mode."""

    __test__ = False  # not a pytest test class, whatever its name says

    def __init__(self, previous: _Testing) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        global _testing
        _testing = self._previous


def set_testing(testing: bool = True, *, attempts: int = 1) -> TestingMode:
    """Switch retries to testing mode: no backoff waits, at most *attempts* attempts.

    Use it in a test suite so that failure paths are fast. It takes effect at once;
    used as a context manager, it restores the previous mode on exit::

        with infraboot.set_testing(attempts=2):
            ...
    """
    global _testing
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        from .exceptions import ConfigError

        msg = f"set_testing(attempts={attempts!r}): attempts must be a whole number >= 1, e.g. attempts=1"
        raise ConfigError(msg)
    previous = _testing
    _testing = _Testing(enabled=testing, attempts=attempts)
    return TestingMode(previous)


def check_positive_seconds(field: str, value: object, *, allow_none: bool = False) -> str | None:
    """Return a problem message when *value* is not a finite number of seconds > 0."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{field}={value!r}: must be a number of seconds > 0, e.g. {field}=5.0"
    if math.isnan(value) or math.isinf(value) or value <= 0:
        return f"{field}={value!r}: must be a finite number of seconds > 0, e.g. {field}=5.0"
    return None


def check_non_negative_int(field: str, value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return f"{field}={value!r}: must be a whole number >= 0, e.g. {field}=3"
    return None
