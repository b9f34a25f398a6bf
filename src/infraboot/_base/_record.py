"""Frozen dataclasses whose methods are written on first use, not at import.

``@dataclasses.dataclass`` writes and compiles ``__init__``, ``__repr__``, ``__eq__``,
``__hash__`` and the frozen ``__setattr__`` of each class while its module is imported: for
the engine's dozen report classes that was a third of ``import infraboot``. Here the class
is left as written until its first instance is made; then the real ``dataclasses.dataclass``
turns it into a frozen dataclass (in place, without ``__slots__``), and from then on it is one.

A module imports the real names for type checkers and these at run time::

    if TYPE_CHECKING:
        from dataclasses import dataclass, field
    else:
        from infraboot._base._record import dataclass, field

Before that, ``dataclasses.is_dataclass(cls)`` and ``dataclasses.fields(cls)`` already see a
dataclass (reading ``__dataclass_fields__`` makes it one), so pydantic, cattrs and the like can
take the class. The mappings inside a record are :class:`FrozenMap`: read-only, and still a
``dict`` to ``dataclasses.asdict``, ``json``, pydantic, ``pickle`` and ``copy``.

Only what the engine uses is supported: ``frozen=True`` (always), ``field(default_factory=...)``.
Not for classes that are subclassed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

__all__ = ["FrozenMap", "dataclass", "field"]

K = TypeVar("K")
V = TypeVar("V")

C = TypeVar("C", bound=type)

_lock = threading.Lock()


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], Any]) -> Any:
    """A field whose default is made by *default_factory* for each instance."""
    return _Factory(default_factory)


def dataclass(*, frozen: bool = True, slots: bool = False) -> Callable[[C], C]:
    """Make the class a frozen dataclass when its first instance is made (*slots* is ignored)."""

    def wrap(cls: C) -> C:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            _materialize(cls)
            cls.__init__(self, *args, **kwargs)  # type: ignore[misc]  # the dataclass __init__ now

        cls.__init__ = __init__  # type: ignore[misc]
        cls.__dataclass_fields__ = _Fields()  # type: ignore[attr-defined]
        return cls

    return wrap


class _Fields:
    """``cls.__dataclass_fields__`` before the first instance: reading it makes the class a dataclass."""

    def __get__(self, instance: object, owner: type) -> Any:
        _materialize(owner)
        return owner.__dict__["__dataclass_fields__"]


def _materialize(cls: type) -> None:
    with _lock:
        if not isinstance(cls.__dict__.get("__dataclass_fields__"), _Fields):
            return  # another thread got there first
        import dataclasses

        del cls.__dataclass_fields__  # type: ignore[attr-defined]
        del cls.__init__  # type: ignore[misc]  # dataclass() writes __init__ only where the class has none
        for name, value in list(cls.__dict__.items()):
            if isinstance(value, _Factory):
                setattr(cls, name, dataclasses.field(default_factory=value.make))
        dataclasses.dataclass(frozen=True)(cls)
        cls.__init__ = _fast_init(cls, dataclasses)  # type: ignore[misc]
        _resolve_annotations(cls, dataclasses)


def _resolve_annotations(cls: type, dataclasses: Any) -> None:
    """The fields' types as objects, not the strings ``from __future__ import annotations`` leaves.

    A reader that resolves them in its caller's namespace (pydantic before 2.10 does, for
    ``TypeAdapter(StartupReport)``) finds what the record's own module means. Left as strings
    when one cannot be resolved.
    """
    import typing

    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # a name only type checkers see: the strings stay
        return
    cls.__annotations__ = {name: hints.get(name, kind) for name, kind in cls.__annotations__.items()}
    for f in dataclasses.fields(cls):
        f.type = hints.get(f.name, f.type)


def _fast_init(cls: type, dataclasses: Any) -> Callable[..., None]:
    """The dataclass ``__init__``, filling the instance's dict field by field.

    A frozen dataclass's own ``__init__`` calls ``object.__setattr__`` once per field (a report
    row: 2.1 µs on 3.12); this one fills the instance's dict directly (0.65 µs; building a dict and
    setting ``__dict__`` takes 0.87). Same parameters,
    defaults and default factories, so the same ``TypeError`` for a missing or unknown argument.
    """
    params: list[str] = []
    lines: list[str] = []
    namespace: dict[str, Any] = {"_MISSING": dataclasses.MISSING}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_MISSING")
            lines.append(f"    if {f.name} is _MISSING: {f.name} = _factory_{f.name}()")
        else:
            params.append(f.name)
    lines.append("    d = self.__dict__")
    lines.extend(f"    d[{f.name!r}] = {f.name}" for f in dataclasses.fields(cls))
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(lines) + "\n"
    exec(source, namespace)  # noqa: S102 - written from the class's own field names, as dataclasses does
    init: Callable[..., None] = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


class FrozenMap(dict[K, V]):
    """A ``dict`` that refuses changes (``TypeError``): the mappings inside the reports.

    Unlike ``MappingProxyType`` it is a ``dict``: ``dataclasses.asdict``, ``json``, pydantic's
    serializers, ``pickle`` and ``copy`` take it as one, and it hashes (by its items) so a frozen
    report holding it does too.
    """

    __slots__ = ()

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        msg = f"{type(self).__name__} is read-only: copy it with dict(...) to change it"
        raise TypeError(msg)

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (dict(self),)

    def __copy__(self) -> FrozenMap[K, V]:
        return self
