"""gunicorn's uvicorn worker with a bound on the requests still running after SIGTERM (uvicorn's own setting).

``uvicorn.workers.UvicornWorker`` does not pass gunicorn's ``--graceful-timeout`` to uvicorn: a stuck
request keeps the worker until gunicorn kills it, and the lifespan's shutdown never runs. Here uvicorn
cancels what still runs after 2 s and then runs the shutdown, well inside gunicorn's grace.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # uvicorn.workers moved to the uvicorn-worker package
    from uvicorn.workers import UvicornWorker


class BoundedWorker(UvicornWorker):
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {"loop": "auto", "http": "auto", "timeout_graceful_shutdown": 2}
