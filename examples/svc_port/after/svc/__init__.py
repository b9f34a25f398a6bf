"""An events service: FastAPI, SQLAlchemy on asyncpg, Redis, a raw asyncpg pool and a scheduled rollup."""
