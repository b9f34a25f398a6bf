"""The shared frame of the built-in components: settings loaded before I/O drive the component."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from ._component import Component

if TYPE_CHECKING:
    from ._settings import SettingsBase

__all__ = ["ConfiguredComponent"]

T = TypeVar("T")
S = TypeVar("S", bound="SettingsBase")


class ConfiguredComponent(Component[T], Generic[T, S]):
    """A component whose settings come from the environment (or are given), validated in ``configure()``.

    The settings decide ``required``, the attempt ``timeout`` (the connect timeout) and
    ``retries``; keyword overrides win. An optional component never holds startup longer
    than one connect timeout (``deadline``): it degrades at once and is brought back
    in the background when its server answers again.
    """

    settings_class: ClassVar[str]  # the name of the settings class in infraboot._settings

    def __init__(self, settings: S | None = None, *, name: str | None = None, **overrides: Any) -> None:
        self._given = settings
        self.settings: S | None = settings
        self._overrides = overrides
        super().__init__(name, **overrides)
        if settings is not None:
            self._apply(settings)

    def _apply(self, settings: S) -> None:
        self.settings = settings
        o = self._overrides
        self.required = o.get("required", settings.required)
        self.timeout = o.get("timeout", settings.connect_timeout)
        self.retries = o.get("retries", settings.max_retries)
        self.check_timeout = o.get("check_timeout", settings.check_timeout)
        self.deadline = o.get("deadline", None if self.required else settings.connect_timeout)

    @property
    def target(self) -> str | None:
        url = self.settings.url if self.settings is not None else None
        return None if url is None else str(url)

    def configure(self) -> str | None:
        module = importlib.import_module("infraboot._settings")  # pydantic loads here, not at import
        settings: S = module.load_settings(getattr(module, self.settings_class), self._given)
        self._apply(settings)
        reason: str | None = settings.disabled_reason()
        return reason
