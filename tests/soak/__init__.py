"""The flapping soak: a FastAPI app under load while its Redis and database come and go (issue #14)."""

__all__: list[str] = []
