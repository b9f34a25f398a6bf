"""Structured logging through the standard library.

Every record goes to the ``infraboot`` logger with a stable event name as its
message and in ``record.event``, the component's name in ``record.component`` and
the other fields in ``record.infraboot`` (a dict), so JSON formatters and structlog's
stdlib bridge can pick them up. Values are scrubbed of secrets before logging.

:data:`listeners` hear every event, whatever the log level, with the same scrubbed
fields: ``listener(level, name, component, fields)``. ``infraboot.otel`` builds its spans
there. An empty list costs one truth test per event; a listener must not raise (what it
raises is logged and swallowed, so telemetry never breaks a start or a stop).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from ._redact import scrub

__all__ = ["Listener", "event", "listeners", "logger"]

logger = logging.getLogger("infraboot")

#: ``listener(level, event name, component or None, scrubbed fields)``.
Listener = Callable[[int, str, "str | None", Mapping[str, Any]], None]

#: Who hears every event besides the logger (see the module docstring); append and remove, never rebind.
listeners: list[Listener] = []


def event(level: int, name: str, component: str | None = None, **fields: Any) -> None:
    if listeners:
        _tell(level, name, component, fields)
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


def _tell(level: int, name: str, component: str | None, fields: dict[str, Any]) -> None:
    clean = {k: scrub(v) if isinstance(v, str) else v for k, v in fields.items()}
    for listener in tuple(listeners):
        try:
            listener(level, name, component, clean)
        except Exception:  # telemetry must never break a start or a stop
            logger.exception("an infraboot event listener failed on %s", name)
