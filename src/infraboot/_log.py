"""Structured logging through the standard library.

Every record goes to the ``infraboot`` logger with a stable event name as its
message and in ``record.event``, the component's name in ``record.component`` and
the other fields in ``record.infraboot`` (a dict), so JSON formatters and structlog's
stdlib bridge can pick them up. Values are scrubbed of secrets before logging.
"""

from __future__ import annotations

import logging
from typing import Any

from ._redact import scrub

__all__ = ["event", "logger"]

logger = logging.getLogger("infraboot")


def event(level: int, name: str, component: str | None = None, **fields: Any) -> None:
    if not logger.isEnabledFor(level):
        return
    clean = {k: scrub(v) if isinstance(v, str) else v for k, v in fields.items()}
    parts = [name]
    if component is not None:
        parts.append(f"component={component}")
    parts.extend(f"{k}={_fmt(v)}" for k, v in clean.items() if v is not None)
    logger.log(
        level,
        "%s",
        " ".join(parts),
        extra={"event": name, "component": component, "infraboot": clean},
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    text = str(value)
    return repr(text) if " " in text else text
