"""Retry settings, the testing switch, and the one retry loop.

Startup and background recovery both go through :func:`retry`: one rule for what may
be retried, one backoff (exponential, full jitter), one log line per retry. tenacity
is imported on the first retry, so that ``import infraboot`` and a start that
succeeds at once never load it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from ._errors import OwnMessage

__all__ = ["OutOfTime", "RetryPolicy", "TestingMode", "is_testing", "retry", "set_testing", "testing_attempts"]

T = TypeVar("T")

#: With set_testing(), a loop that never gives up still pauses this long between tries (no busy loop).
TESTING_FOREVER_WAIT = 0.01


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
    backoff_max: float = 10.0

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


class OutOfTime(OwnMessage, TimeoutError):
    """The overall deadline passed before an attempt could begin; never retried."""


async def retry(
    attempt: Callable[[int], Awaitable[T]],
    *,
    policy: RetryPolicy,
    retryable: Callable[[Exception], bool],
    deadline: float | None = None,
    on_retry: Callable[[Exception, int, float], None] | None = None,
    forever: bool = False,
    first: int = 1,
    failed: Exception | None = None,
) -> T:
    """Call ``attempt(n)`` until it returns, for attempts ``first``, ``first + 1``, ...

    Stops (re-raising the last error) when an error is not *retryable*, when the
    policy's attempts are used up (never, with *forever*), or when the next wait would
    cross the monotonic *deadline*: no attempt ever begins past it. With *failed*, attempt
    *first* was already made by the caller and failed with that error. *on_retry* hears
    of each retry: the error, the attempt that failed, the wait before the next.
    Cancellation is never retried. Under :func:`set_testing` there is no backoff and at
    most the testing attempts (a loop that never gives up pauses briefly instead).
    """
    testing = is_testing()
    attempts = min(policy.attempts, testing_attempts()) if testing else policy.attempts

    def may_retry(exc: BaseException) -> bool:
        return isinstance(exc, Exception) and not isinstance(exc, OutOfTime) and retryable(exc)

    # The first attempt runs bare: most starts succeed at once, and the retry machinery
    # costs more than a no-op start. A caller that made it already passes its error as *failed*.
    try:
        if failed is not None:
            raise failed
        return await attempt(first)
    except Exception as exc:
        if not may_retry(exc) or (attempts <= 1 and not forever):
            raise
        last: list[Exception] = [exc]
        import random

        if testing:
            pause = TESTING_FOREVER_WAIT if forever else 0.0
        else:
            pause = random.uniform(0, min(policy.backoff_max, policy.backoff_initial))
        if deadline is not None and time.monotonic() + pause >= deadline:
            raise
        if on_retry is not None:
            on_retry(exc, first, pause)
    if pause:
        await asyncio.sleep(pause)

    import tenacity

    class past_deadline(tenacity.stop.stop_base):
        """Never start an attempt after the deadline: stop if the next wait would cross it."""

        def __call__(self, rs: tenacity.RetryCallState) -> bool:
            return deadline is not None and time.monotonic() + rs.upcoming_sleep >= deadline

    wait: tenacity.wait.wait_base
    if testing:
        wait = tenacity.wait_fixed(TESTING_FOREVER_WAIT) if forever else tenacity.wait_none()
    else:
        # Attempt k of this loop is attempt k + 1 overall: the exponent carries on from there.
        wait = tenacity.wait_random_exponential(multiplier=policy.backoff_initial * 2, max=policy.backoff_max)
    stop = tenacity.stop_never if forever else tenacity.stop_after_attempt(attempts - 1)

    def before_sleep(rs: tenacity.RetryCallState) -> None:
        exc = rs.outcome.exception() if rs.outcome is not None else None
        if on_retry is not None and isinstance(exc, Exception):
            on_retry(exc, first + rs.attempt_number, rs.upcoming_sleep)

    retrying = tenacity.AsyncRetrying(
        stop=stop | past_deadline(),
        wait=wait,
        retry=tenacity.retry_if_exception(may_retry),
        before_sleep=before_sleep,
        reraise=True,
    )
    counter = [first]

    async def next_attempt() -> T:
        counter[0] += 1
        try:
            return await attempt(counter[0])
        except OutOfTime:
            # The wait ended a hair past the deadline: the last real error is the news, not the clock.
            raise last[0] from None
        except Exception as error:
            last[0] = error
            raise

    result: T = await retrying(next_attempt)
    return result
