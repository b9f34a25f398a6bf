"""Cache keys of a function call: from a template (``"user:{user_id}"``), a callable, or the arguments."""

from __future__ import annotations

import hashlib
import inspect
import string
from collections.abc import Callable, Mapping
from typing import Any

from infraboot.exceptions import ConfigError

__all__ = ["KeyBuilder", "key_part"]

_P = inspect.Parameter
_MAX_KEY = 200  # longer argument keys are hashed: Redis keys stay short and never carry big payloads
_PLAIN = (str, int, float, bool, type(None))


def key_part(value: object) -> str:
    """One argument as it appears in a key: scalars as themselves, the rest by ``repr``."""
    if isinstance(value, str):
        return value
    if isinstance(value, _PLAIN):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(key_part(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{key_part(k)}={key_part(v)}" for k, v in sorted(value.items(), key=repr)) + "}"
    return repr(value)


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
    - ``None``: ``module.qualname:arg1,arg2,name=value`` (``self``/``cls`` left out), hashed when long.
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
        """``"user:{user_id}"`` as ``"user:{0}"``: a positional call then formats without building a dict."""
        pieces = []
        for literal, field, spec, conversion in string.Formatter().parse(template):
            pieces.append(literal.replace("{", "{{").replace("}", "}}"))
            if field is None:
                continue
            root, rest = _split_field(field)
            if root.isdigit():
                return None  # already positional: the general path handles it
            pieces.append("{" + str(self._names.index(root)) + rest)
            if conversion:
                pieces.append("!" + conversion)
            if spec:
                if "{" in spec:
                    return None  # nested fields: leave them to the general path
                pieces.append(":" + spec)
            pieces.append("}")
        return "".join(pieces)

    @property
    def qualname(self) -> str:
        return self._prefix

    def static_prefix(self) -> str:
        """What every key of this function starts with (for ``invalidate_all``)."""
        template = self._template
        if template is None:
            return f"{self._prefix}:"
        if isinstance(template, str):
            for literal, field, _, _ in string.Formatter().parse(template):
                return literal if field is not None else template
            return ""
        msg = (
            f"invalidate_all() of {self._prefix} cannot know the keys a key= callable makes; "
            "use a key template, or cache.delete_prefix(...) with the prefix your callable uses"
        )
        raise ConfigError(msg)

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
                body = ",".join([key_part(a) for a in parts])
            else:
                values = self.bind(args, kwargs)
                names = self._names[1:] if self._method else self._names
                items = [key_part(values[n]) if n in values else "" for n in names]
                items += [key_part(v) for v in values.get("*", ())]
                items += [f"{k}={key_part(v)}" for k, v in sorted(values.get("**", {}).items())]
                body = ",".join(items)
            key = f"{self._prefix}:{body}"
            if len(key) > _MAX_KEY:
                key = f"{self._prefix}:#{hashlib.sha256(body.encode()).hexdigest()[:32]}"
            return key
        if isinstance(template, str):
            if self._positional is not None and not kwargs and len(args) == len(self._names):
                return self._positional.format(*args)  # the fast path: a positional call
            return template.format(*args, **self.bind(args, kwargs))
        result = template(*args, **kwargs)
        if not isinstance(result, str):
            msg = f"the key= callable of {self._prefix} returned {type(result).__name__}; it must return a str"
            raise TypeError(msg)
        return result
