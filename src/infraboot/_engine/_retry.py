"""Retry settings and the one retry loop.

Startup and background recovery both go through :func:`retry`: one rule for what may
be retried, one backoff (:func:`~infraboot._engine._backoff.backoff`: exponential, full
jitter), one log line per retry. The testing switch lives in ``_backoff`` and is re-exported
here for the callers that imported it from this module. The loop is a plain ``while``: a
start that succeeds at once never enters it, and a retry imports nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from infraboot._base._errors import OwnMessage

from ._backoff import TESTING_FOREVER_WAIT, TestingMode, backoff, is_testing, set_testing, testing_attempts

if TYPE_CHECKING:
    from dataclasses import dataclass
else:  # the methods are written on first use, not at import (see _base._record)
    from infraboot._base._record import dataclass

__all__ = [
    "TESTING_FOREVER_WAIT",
    "OutOfTime",
    "RetryPolicy",
    "TestingMode",
    "is_testing",
    "retry",
    "set_testing",
    "testing_attempts",
]

T = TypeVar("T")


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
    attempts = min(policy.attempts, testing_attempts()) if is_testing() else policy.attempts
    number, error = first, failed
    last: Exception | None = None
    while True:
        if error is None:
            try:
                return await attempt(number)
            except OutOfTime:
                if last is None:
                    raise
                raise last from None  # the wait ended a hair past the deadline: the last real error is the news
            except Exception as exc:
                error = exc
        if isinstance(error, OutOfTime) or not retryable(error) or (not forever and number - first + 1 >= attempts):
            raise error
        pause = backoff(number, initial=policy.backoff_initial, maximum=policy.backoff_max, forever=forever)
        if deadline is not None and time.monotonic() + pause >= deadline:
            raise error
        if on_retry is not None:
            on_retry(error, number, pause)
        if pause:
            await asyncio.sleep(pause)
        last, error = error, None
        number += 1
