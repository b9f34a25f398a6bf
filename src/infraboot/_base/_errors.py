"""What went wrong, in a few safe words: the exception-chain walk, error codes, one-line descriptions."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

from infraboot.exceptions import ConfigError, InfrabootError, _OwnMessage

from ._redact import scrub, scrub_foreign

__all__ = ["classify_error", "describe", "error_chain"]


def error_chain(exc: BaseException) -> Iterator[BaseException]:
    """*exc* and every exception behind it: ``__cause__``, ``__context__`` and a driver's ``orig``, each once."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)  # SQLAlchemy wraps the driver's error here
        todo.extend([current.__cause__, current.__context__, orig if isinstance(orig, BaseException) else None])


def classify_error(exc: BaseException) -> str:
    """Map an exception to one of ``timeout``, ``refused``, ``reset``, ``dns``, ``tls``, ``config``, ``error``."""
    import ssl

    if isinstance(exc, ConfigError):
        return "config"
    for link in error_chain(exc):
        if isinstance(link, TimeoutError | asyncio.TimeoutError):
            return "timeout"
        if isinstance(link, ConnectionRefusedError):
            return "refused"
        if isinstance(link, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
            return "reset"
        if isinstance(link, socket.gaierror):
            return "dns"
        if isinstance(link, ssl.SSLError | ssl.CertificateError):
            return "tls"
    return "error"


#: Base of infraboot's errors whose message is already the whole description (defined beside the public ones,
#: which some of them are).
OwnMessage = _OwnMessage


def describe(exc: BaseException) -> str:
    """A one-line, scrubbed description of *exc*: its type and the first line of its message."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    if isinstance(exc, OwnMessage):
        return scrub(line)
    kind = type(exc).__name__
    said = f"{kind}: {line}" if line else kind
    return scrub(said) if isinstance(exc, InfrabootError) else scrub_foreign(said)
