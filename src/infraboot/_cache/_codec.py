"""Values on the wire: a serializer, zlib above a size threshold, a size cap, and a small header.

The header (10 bytes) holds a format byte, a flags byte and the wall-clock time until which
the value is fresh, so every process agrees on when a stale-while-revalidate value went stale.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Codec",
    "DecodeError",
    "JsonSerializer",
    "Serializer",
    "ValueTooLargeError",
]

_FORMAT = 1
_COMPRESSED = 0x01
_HEADER = struct.Struct("!BBd")
_decode = json.JSONDecoder().decode


@runtime_checkable
class Serializer(Protocol):
    """Turns a value into bytes and back. ``loads`` gets bytes that another process may have written:
    it must be safe on untrusted input (``pickle`` is not)."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JsonSerializer:
    """The default serializer: JSON (dicts, lists, strings, numbers, booleans, ``None``).

    Safe on untrusted bytes. Tuples come back as lists; anything else JSON cannot hold is a
    ``TypeError`` at ``set`` time that names the fix (give ``serializer=`` your own).
    """

    def dumps(self, value: Any) -> bytes:
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:
            msg = (
                f"the cache's JSON serializer cannot store a {type(value).__name__} ({exc}); "
                "return JSON-compatible data, or give serializer= an object with dumps()/loads()"
            )
            raise TypeError(msg) from None

    def loads(self, data: bytes) -> Any:
        return _decode(data.decode())  # str: json skips guessing the encoding of bytes

    def __repr__(self) -> str:
        return "JsonSerializer()"


class ValueTooLargeError(ValueError):
    """Raised by ``set`` (and a cached call's store) when an encoded value exceeds ``max_value_size``."""


class DecodeError(ValueError):
    """Bytes in Redis that this cache did not write (another format or version): read as a miss."""


class Codec:
    """Encode and decode values for the shared level."""

    __slots__ = ("compress_over", "max_size", "serializer")

    def __init__(self, serializer: Serializer, compress_over: int | None, max_size: int | None) -> None:
        self.serializer = serializer
        self.compress_over = compress_over
        self.max_size = max_size

    def encode(self, value: Any, fresh_until: float, *, key: str = "") -> bytes:
        body = self.serializer.dumps(value)
        if not isinstance(body, bytes | bytearray):
            msg = f"{self.serializer!r}.dumps() returned {type(body).__name__}; it must return bytes"
            raise TypeError(msg)
        flags = 0
        if self.compress_over is not None and len(body) > self.compress_over:
            packed = zlib.compress(body, 6)
            if len(packed) < len(body):
                body, flags = packed, _COMPRESSED
        if self.max_size is not None and len(body) > self.max_size:
            msg = (
                f"cache value for {key!r} is {len(body)} bytes encoded, over max_value_size={self.max_size}; "
                "cache something smaller, or raise max_value_size"
            )
            raise ValueTooLargeError(msg)
        return _HEADER.pack(_FORMAT, flags, fresh_until) + bytes(body)

    def decode(self, data: bytes) -> tuple[Any, float]:
        """``(value, fresh_until)``; :class:`DecodeError` for bytes of another writer."""
        if len(data) < _HEADER.size:
            raise DecodeError("too short for a cache entry")
        fmt, flags, fresh_until = _HEADER.unpack_from(data)
        if fmt != _FORMAT:
            raise DecodeError(f"unknown cache entry format {fmt}")
        body = data[_HEADER.size :]
        try:
            if flags & _COMPRESSED:
                body = zlib.decompress(body)
            return self.serializer.loads(body), fresh_until
        except Exception as exc:
            raise DecodeError(f"cannot decode a cache entry: {type(exc).__name__}") from None
