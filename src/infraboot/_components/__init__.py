"""The built-in components, built on the engine's public frame.

Owns: URL rules and settings given in code or read from the environment (``_urls``,
``_settings``, ``_configured``), Redis with Sentinel and Cluster (``_redis``,
``_redis_topology``), the SQL database with PostgreSQL failover (``_database``,
``_pg_failover``), warm pools (``_warmup``), run-once startup tasks (``_once``) and the set
registered on the default system (``_builtin``). Drivers are imported inside, never at import.
"""
