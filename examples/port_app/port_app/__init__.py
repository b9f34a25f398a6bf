"""A FastAPI + SQLAlchemy (asyncpg) + Redis service whose infrastructure infraboot starts and stops."""
