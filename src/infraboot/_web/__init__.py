"""ASGI pieces shared by the FastAPI and Starlette adapters, and the demo app.

Owns: lifespans, probe routes and ``ProbeMiddleware`` (``_asgi``, no framework imported there) and
the FastAPI app behind ``infraboot demo`` (``_demo``). The public adapters are the front door.
"""
