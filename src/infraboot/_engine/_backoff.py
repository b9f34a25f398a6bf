"""One backoff for every loop that waits between tries, and the testing switch that turns it off.

Every loop in infraboot that tries again after a failure -- a component's start and recovery,
the Sentinel watcher, ``infraboot wait``, a run-once task waiting for its lock, the cache
waiting for another process' value -- asks :func:`backoff` how long to wait. Under
:func:`set_testing` there is no wait at all, except a short pause for a loop that never gives
up on its own (so a test does not spin a core).
"""

from __future__ import annotations

from types import TracebackType

__all__ = ["TESTING_FOREVER_WAIT", "TestingMode", "backoff", "is_testing", "set_testing", "testing_attempts"]

#: With set_testing(), a loop that never gives up still pauses this long between tries (no busy loop).
TESTING_FOREVER_WAIT = 0.01

# (enabled, attempts): one immutable value, swapped whole, so a reader never sees half a change.
_mode: tuple[bool, int] = (False, 1)


def is_testing() -> bool:
    """Whether :func:`set_testing` is on."""
    return _mode[0]


def testing_attempts() -> int:
    """The attempts a component gets at most under :func:`set_testing`."""
    return _mode[1]


class TestingMode:
    """Returned by :func:`set_testing`; as a context manager it restores the previous mode."""

    __test__ = False  # not a pytest test class, whatever its name says

    def __init__(self, previous: tuple[bool, int]) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        global _mode
        _mode = self._previous


def set_testing(testing: bool = True, *, attempts: int = 1) -> TestingMode:
    """Switch retries to testing mode: no backoff waits, at most *attempts* attempts.

    Use it in a test suite so that failure paths are fast. It takes effect at once;
    used as a context manager, it restores the previous mode on exit::

        with infraboot.set_testing(attempts=2):
            ...
    """
    global _mode
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        from infraboot.exceptions import ConfigError

        msg = f"set_testing(attempts={attempts!r}): attempts must be a whole number >= 1, e.g. attempts=1"
        raise ConfigError(msg)
    previous = _mode
    _mode = (bool(testing), attempts)
    return TestingMode(previous)


def backoff(failures: int, *, initial: float, maximum: float, forever: bool = False) -> float:
    """Seconds to wait after the *failures*-th failed try in a row (1 after the first failure).

    Exponential and capped, with full jitter: drawn at random between 0 and
    ``min(maximum, initial * 2 ** (failures - 1))``, so that many processes failing together
    do not come back in step and hammer a recovering server. Under :func:`set_testing`: 0, or
    :data:`TESTING_FOREVER_WAIT` for a loop that never gives up by itself (*forever*).
    """
    if _mode[0]:
        return TESTING_FOREVER_WAIT if forever else 0.0
    import random

    ceiling = min(maximum, initial * 2.0 ** min(max(failures - 1, 0), 64))  # the exponent capped: no overflow
    return random.uniform(0.0, ceiling)
