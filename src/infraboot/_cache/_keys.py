"""Cache keys of a function call: from a template (``"user:{user_id}"``), a callable, or the arguments.

Keys are unambiguous by construction, and the same in every process and Python version:

- **argument keys** (no ``key=``) encode each argument with its type: ``n`` (None), ``b1``/``b0``,
  ``i42``, ``f1.5`` (``repr``), ``s3:abc`` (a str, length-prefixed: no character inside needs escaping),
  ``y2:00ff`` (bytes, hex), ``l(...)``/``t(...)`` (list/tuple), ``S(...)`` (set, sorted), ``d(k=v,...)``
  (dict, sorted by encoded key), ``o`` + type name + text for UUID, Decimal, dates and enums. Any other
  type is a ``TypeError`` that names the fix: its ``repr`` is not a stable key;
- **template keys** percent-encode every character of a field's text outside ``[A-Za-z0-9_]``
  (ints as their digits), so a field never imitates the template's own separators.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import hashlib
import inspect
import re
import string
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from infraboot.exceptions import ConfigError

__all__ = ["KeyBuilder", "encode_arg", "escape_field"]

_P = inspect.Parameter
_MAX_KEY = 200  # longer argument keys are hashed: Redis keys stay short and never carry big payloads
_TEXT_TYPES = (uuid.UUID, decimal.Decimal, datetime.datetime, datetime.date, datetime.time, datetime.timedelta)
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def _percent(match: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in match.group().encode())


def escape_field(value: Any) -> str:
    """A template field's text: ints as digits, anything else formatted, then percent-encoded."""
    if type(value) is int:
        return str(value)
    text = value if type(value) is str else format(value)
    return _UNSAFE.sub(_percent, text) if _UNSAFE.search(text) else text


def _str(text: str) -> str:
    return f"{len(text)}:{text}"


def encode_arg(value: Any) -> str:
    """One argument, typed and self-delimiting (see the module docstring); ``TypeError`` for other types."""
    kind = type(value)
    if kind is str:
        return "s" + _str(value)
    if kind is int:
        return f"i{value}"
    if value is None:
        return "n"
    if kind is bool:
        return "b1" if value else "b0"
    if kind is float:
        return "f" + repr(value)
    if kind is bytes:
        return f"y{len(value)}:{value.hex()}"
    if kind is list or kind is tuple:
        return ("l(" if kind is list else "t(") + ",".join([encode_arg(v) for v in value]) + ")"
    if kind is set or kind is frozenset:
        return "S(" + ",".join(sorted(encode_arg(v) for v in value)) + ")"
    if kind is dict:
        pairs = sorted((encode_arg(k), encode_arg(v)) for k, v in value.items())
        return "d(" + ",".join(f"{k}={v}" for k, v in pairs) + ")"
    if isinstance(value, enum.Enum):
        return "o" + _str(f"{kind.__module__}.{kind.__qualname__}") + encode_arg(value.value)
    if isinstance(value, _TEXT_TYPES):
        return "o" + _str(kind.__qualname__) + _str(str(value))
    msg = (
        f"@cached cannot make a stable key of a {kind.__qualname__} argument (its repr may differ between "
        "processes or collide); give @cached a key= template or callable, or pass str/int/float/bool/None/bytes, "
        "lists, tuples, sets or dicts of them"
    )
    raise TypeError(msg)


def _split_field(field: str) -> tuple[str, str]:
    """``"user.id"`` -> ``("user", ".id")``; ``"ids[0]"`` -> ``("ids", "[0]")``."""
    for i, c in enumerate(field):
        if c in ".[":
            return field[:i], field[i:]
    return field, ""


class KeyBuilder:
    """Builds the key (without namespace) of a call to *fn*.

    - ``template`` a ``str.format`` template over the parameter names (``"user:{user_id}"``) or the
      positional arguments (``"user:{0}"``);
    - a callable taking the same arguments as *fn* and returning the key;
    - ``None``: ``module.qualname:`` and the typed arguments (``self``/``cls`` left out), hashed when long.
    """

    __slots__ = (
        "_defaults",
        "_method",
        "_names",
        "_positional",
        "_prefix",
        "_template",
        "_varargs",
        "_varkw",
        "fn",
        "kind",
    )

    def __init__(self, fn: Callable[..., Any], key: str | Callable[..., str] | None) -> None:
        self.fn = fn
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())
        self._names = [p.name for p in params if p.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD)]
        self._names += [p.name for p in params if p.kind is _P.KEYWORD_ONLY]
        self._defaults = {p.name: p.default for p in params if p.default is not _P.empty}
        self._varargs = any(p.kind is _P.VAR_POSITIONAL for p in params)
        self._varkw = any(p.kind is _P.VAR_KEYWORD for p in params)
        self._method = bool(self._names) and self._names[0] in ("self", "cls")
        self._prefix = f"{fn.__module__}.{fn.__qualname__}"
        self._template: str | Callable[..., str] | None = key
        self._positional: str | None = None  # the template with parameter names turned into positions
        if key is None:
            self.kind = "arguments"
        elif isinstance(key, str):
            self.kind = "template"
            self._check_template(key)
            self._positional = self._by_position(key)
        elif callable(key):
            self.kind = "callable"
        else:
            msg = f"@cached(key=...) takes a template string or a callable, not {type(key).__name__}"
            raise ConfigError(msg)

    def _check_template(self, template: str) -> None:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError as exc:
            msg = f"@cached(key={template!r}) on {self._prefix}: not a valid template ({exc})"
            raise ConfigError(msg) from None
        unknown = []
        for field in fields:
            root = field.split(".", 1)[0].split("[", 1)[0]
            if not root or (root not in self._names and not root.isdigit()):
                unknown.append(field or "{}")
        if unknown:
            example = self._names[-1] if self._names else "arg"
            msg = (
                f"@cached(key={template!r}) on {self._prefix} names {unknown}, not parameters of the function "
                f"({self._names}); use the parameter names in braces, e.g. key='item:{{{example}}}'"
            )
            raise ConfigError(msg)

    def _by_position(self, template: str) -> str | None:
        """``"user:{user_id}"`` as ``"user:{0}"`` when every field is a bare name (no spec, conversion,
        attribute or index): a positional call then formats its escaped arguments without a dict."""
        pieces = []
        for literal, field, spec, conversion in string.Formatter().parse(template):
            pieces.append(literal.replace("{", "{{").replace("}", "}}"))
            if field is None:
                continue
            root, rest = _split_field(field)
            if root.isdigit() or rest or spec or conversion:
                return None  # the general path formats these, then escapes each field
            pieces.append("{" + str(self._names.index(root)) + "}")
        return "".join(pieces)

    @property
    def qualname(self) -> str:
        return self._prefix

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The call's arguments by parameter name, defaults filled in (extra ones under ``*`` and ``**``)."""
        names = self._names
        values = dict(self._defaults)
        values.update(zip(names, args, strict=False))
        if len(args) > len(names):
            if not self._varargs:
                msg = f"{self._prefix}() takes {len(names)} positional arguments but {len(args)} were given"
                raise TypeError(msg)
            values["*"] = args[len(names) :]
        for k, v in kwargs.items():
            if k in names:
                values[k] = v
            elif self._varkw:
                values.setdefault("**", {})[k] = v
            else:
                msg = f"{self._prefix}() got an unexpected keyword argument {k!r}"
                raise TypeError(msg)
        return values

    def __call__(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        template = self._template
        if template is None:
            if not kwargs and not self._defaults and len(args) == len(self._names):
                parts = args[1:] if self._method else args  # the fast path: positional call, every argument given
                body = ",".join([encode_arg(a) for a in parts])
            else:
                values = self.bind(args, kwargs)
                names = self._names[1:] if self._method else self._names
                items = [encode_arg(values[n]) if n in values else "-" for n in names]
                items += [encode_arg(v) for v in values.get("*", ())]
                items += [f"{encode_arg(k)}={encode_arg(v)}" for k, v in sorted(values.get("**", {}).items())]
                body = ",".join(items)
            key = f"{self._prefix}:{body}"
            if len(key) > _MAX_KEY:
                key = f"{self._prefix}:#{hashlib.sha256(body.encode()).hexdigest()[:32]}"
            return key
        if isinstance(template, str):
            if self._positional is not None and not kwargs and len(args) == len(self._names):
                if len(args) == 1:  # the fastest path: one argument, most often an int (its digits need no escape)
                    one = args[0]
                    return self._positional.format(one if type(one) is int else escape_field(one))
                return self._positional.format(*[a if type(a) is int else escape_field(a) for a in args])
            return _ESCAPING.vformat(template, args, self.bind(args, kwargs))
        result = template(*args, **kwargs)
        if not isinstance(result, str):
            msg = f"the key= callable of {self._prefix} returned {type(result).__name__}; it must return a str"
            raise TypeError(msg)
        return result


class _Escaping(string.Formatter):
    """``str.format`` whose every field's text is escaped (see :func:`escape_field`)."""

    def format_field(self, value: Any, format_spec: str) -> str:
        return escape_field(format(value, format_spec) if format_spec else value)


_ESCAPING = _Escaping()
