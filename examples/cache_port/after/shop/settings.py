"""The app's own settings, read from the environment (or given in code, as the tests do)."""

from __future__ import annotations

from pydantic_settings import BaseSettings


class Settings(BaseSettings):
    """``DATABASE_URL``, the three Redis URLs (cache, queue, rate limiter) and the rate limit."""

    database_url: str = "sqlite+aiosqlite:///./items.db"
    redis_cache_url: str = "redis://127.0.0.1:6379/0"
    redis_queue_url: str = "redis://127.0.0.1:6379/1"
    redis_rate_limit_url: str = "redis://127.0.0.1:6379/2"
    rate_limit: int = 10  # requests per client in each period
    rate_period: int = 60  # seconds
