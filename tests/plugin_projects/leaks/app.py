"""An application that registers its component at import time, as the README shows."""

from __future__ import annotations

import warnings
import weakref

import infraboot


class Pool:
    """A resource that must be closed: it says so (ResourceWarning) when collected open."""

    def __init__(self) -> None:
        self.open = True
        POOLS.add(self)

    def close(self) -> None:
        self.open = False

    def __del__(self) -> None:
        if self.open:
            warnings.warn("app.Pool was collected without being closed", ResourceWarning, stacklevel=1)


POOLS: weakref.WeakSet[Pool] = weakref.WeakSet()


class PoolComponent(infraboot.Component[Pool]):
    name = "pool"

    async def start(self, ctx: infraboot.Context) -> Pool:
        return Pool()

    async def stop(self, resource: Pool) -> None:
        resource.close()


infraboot.register(PoolComponent())
