from __future__ import annotations

import enum

__all__ = ["ComponentState"]


class ComponentState(enum.StrEnum):
    """Where a component is in its life.

    ``pending`` → ``starting`` → ``ready`` → ``stopping`` → ``stopped``; a start that
    gives up ends in ``failed``; ``blocked`` means a requirement is not available;
    ``disabled`` means configuration switched the component off (``REDIS_ENABLED=false``);
    ``unhealthy`` is a component that was ready, then failed its health checks: its
    resource is kept, ``get()`` raises at once, nothing reports it ready, and a background
    probe brings it back to ``ready`` when it answers again.
    """

    PENDING = "pending"
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    BLOCKED = "blocked"
    UNHEALTHY = "unhealthy"
    DISABLED = "disabled"
    STOPPING = "stopping"
    STOPPED = "stopped"
