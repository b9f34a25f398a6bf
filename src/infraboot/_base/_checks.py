"""The range checks every setting goes through: one wording, one example, wherever the value came from."""

from __future__ import annotations

import math

__all__ = ["MIN_TOKEN_LENGTH", "count_problem", "seconds_problem", "token_problem"]


#: The shortest ``drain_token`` accepted: a guessable token is no better than none.
MIN_TOKEN_LENGTH = 16


def token_problem(field: str, value: object) -> str | None:
    """A problem line when *value* is not ``None`` nor a string of at least 16 characters; it never shows the value."""
    if value is None:
        return None
    hint = "e.g. the output of: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    if not isinstance(value, str):
        return f"{field} must be a string (a {type(value).__name__} was given), {hint}"
    if len(value) < MIN_TOKEN_LENGTH or value != value.strip():
        return (
            f"{field} must be at least {MIN_TOKEN_LENGTH} characters without surrounding spaces "
            f"(the value given has {len(value)}), {hint}"
        )
    return None


def seconds_problem(
    field: str, value: object, *, allow_none: bool = False, allow_zero: bool = False, example: str | None = None
) -> str | None:
    """A problem line when *value* is not a finite number of seconds > 0 (>= 0 with *allow_zero*), else ``None``.

    *field* is what the user wrote (``timeout``, ``REDIS_CONNECT_TIMEOUT``, ``--timeout``);
    *example* replaces the default ``field=5.0`` hint.
    """
    if value is None and allow_none:
        return None
    bound = ">= 0" if allow_zero else "> 0"
    hint = example or f"{field}=5.0"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{field}={value!r}: must be a number of seconds {bound}, e.g. {hint}"
    if math.isnan(value) or math.isinf(value) or value < 0 or (value == 0 and not allow_zero):
        return f"{field}={value!r}: must be a finite number of seconds {bound}, e.g. {hint}"
    return None


def count_problem(field: str, value: object, *, minimum: int = 0, example: str | None = None) -> str | None:
    """A problem line when *value* is not a whole number >= *minimum*, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return f"{field}={value!r}: must be a whole number >= {minimum}, e.g. {example or f'{field}=3'}"
    return None
