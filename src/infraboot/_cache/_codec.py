"""Values on the wire: a serializer, zlib above a size threshold, a size cap, and a small header.

The header (12 bytes) holds a format byte, a flags byte, the wall-clock time until which the
value is fresh (so every process agrees on when a stale-while-revalidate value went stale) and
the length of the entry's tags, which follow it (UTF-8, NUL-separated): a process that reads the value
from Redis knows its tags, so ``delete_tag`` reaches its L1 copy too. ``max_value_size`` caps the
*decoded* size: a compressed entry is inflated at most that far, whoever wrote it.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Collection
from typing import Any, Protocol, runtime_checkable

from infraboot.exceptions import ValueTooLargeError

__all__ = [
    "Codec",
    "DecodeError",
    "JsonSerializer",
    "OversizeError",
    "Serializer",
    "ValueTooLargeError",
]

_FORMAT = 2  # 1: before tags were stored with the value (read as a miss, then overwritten)
_COMPRESSED = 0x01
_HEADER = struct.Struct("!BBdH")
_MAX_TAGS = 0xFFFF
_decode = json.JSONDecoder().decode


@runtime_checkable
class Serializer(Protocol):
    """Turns a value into bytes and back. ``loads`` gets bytes that another process may have written:
    it must be safe on untrusted input (``pickle`` is not)."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JsonSerializer:
    """The default serializer: JSON (dicts with str keys, lists, strings, ints, floats, booleans, ``None``).

    Safe on untrusted bytes, and exact: what it accepts reads back equal and of the same types.
    Anything else (a tuple, a dict with a non-str key, a subclass such as an enum or a named tuple)
    is a ``TypeError`` at ``set`` time that names where it is and the fix (give ``serializer=`` your own).
    """

    def dumps(self, value: Any) -> bytes:
        problem = _not_json(value)
        if problem is not None:
            msg = (
                f"the cache's JSON serializer would not read back {problem} as it is; "
                "return lists, str-keyed dicts, str, int, float, bool and None only, "
                "or give serializer= an object with dumps()/loads()"
            )
            raise TypeError(msg)
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:  # pragma: no cover - _not_json found what json refuses
            msg = f"the cache's JSON serializer cannot store this value ({exc}); give serializer= your own"
            raise TypeError(msg) from None

    def loads(self, data: bytes) -> Any:
        return _decode(data.decode())  # str: json skips guessing the encoding of bytes

    def __repr__(self) -> str:
        return "JsonSerializer()"


_SCALARS = (str, int, float, bool, type(None))


def _not_json(value: Any) -> str | None:
    """Where *value* holds something JSON would not give back as it is (``None``: nothing)."""
    todo: list[tuple[Any, str]] = [(value, "the value")]
    while todo:
        item, where = todo.pop()
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is list:
            todo.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
        elif kind is dict:
            for k, v in item.items():
                if type(k) is not str:
                    return f"the {type(k).__name__} key {k!r} of {where} (JSON keys are strings)"
                todo.append((v, f"{where}[{k!r}]"))
        else:
            return f"{where}, a {kind.__qualname__}"
    return None


class DecodeError(ValueError):
    """Bytes in Redis that this cache did not write (another format or version): read as a miss."""


class OversizeError(DecodeError):
    """An entry in Redis that is, or inflates to, more than ``max_value_size``: read as a miss."""


class Codec:
    """Encode and decode values for the shared level."""

    __slots__ = ("compress_over", "max_size", "serializer")

    def __init__(self, serializer: Serializer, compress_over: int | None, max_size: int | None) -> None:
        self.serializer = serializer
        self.compress_over = compress_over
        self.max_size = max_size

    def encode(self, value: Any, fresh_until: float, tags: Collection[str] = (), *, key: str = "") -> bytes:
        body = self.serializer.dumps(value)
        if not isinstance(body, bytes | bytearray):
            msg = f"{self.serializer!r}.dumps() returned {type(body).__name__}; it must return bytes"
            raise TypeError(msg)
        if self.max_size is not None and len(body) > self.max_size:
            msg = (
                f"cache value for {key!r} is {len(body)} bytes serialized, over max_value_size={self.max_size}; "
                "cache something smaller, or raise max_value_size"
            )
            raise ValueTooLargeError(msg)
        flags = 0
        if self.compress_over is not None and len(body) > self.compress_over:
            packed = zlib.compress(body, 6)
            if len(packed) < len(body):
                body, flags = packed, _COMPRESSED
        listed = "\x00".join(tags).encode() if tags else b""
        if tags and listed.count(b"\x00") != len(tags) - 1:
            msg = f"a tag of the cache value for {key!r} holds a NUL character; use tags without one"
            raise ValueError(msg)
        if len(listed) > _MAX_TAGS:
            msg = f"cache value for {key!r} has {len(listed)} bytes of tags, over {_MAX_TAGS}; use fewer, shorter tags"
            raise ValueTooLargeError(msg)
        return _HEADER.pack(_FORMAT, flags, fresh_until, len(listed)) + listed + bytes(body)

    def decode(self, data: bytes) -> tuple[Any, float, tuple[str, ...]]:
        """``(value, fresh_until, tags)``; :class:`DecodeError` for bytes of another writer, or over the cap."""
        if len(data) < _HEADER.size:
            raise DecodeError("too short for a cache entry")
        fmt, flags, fresh_until, tags_len = _HEADER.unpack_from(data)
        if fmt != _FORMAT:
            raise DecodeError(f"unknown cache entry format {fmt}")
        start = _HEADER.size + tags_len
        body = data[start:]
        cap = self.max_size
        try:
            tags = tuple(data[_HEADER.size : start].decode().split("\x00")) if tags_len else ()
            if flags & _COMPRESSED:
                inflater = zlib.decompressobj()
                # Inflated at most one byte past the cap: a small entry cannot blow up into gigabytes.
                body = inflater.decompress(body, 0 if cap is None else cap + 1)
                if not inflater.eof and cap is not None and len(body) > cap:
                    raise OversizeError(f"a compressed cache entry inflates past max_value_size={cap}")
            if cap is not None and len(body) > cap:
                raise OversizeError(f"a cache entry of {len(body)} bytes is over max_value_size={cap}")
            return self.serializer.loads(body), fresh_until, tags
        except DecodeError:
            raise
        except Exception as exc:
            raise DecodeError(f"cannot decode a cache entry: {type(exc).__name__}") from None
