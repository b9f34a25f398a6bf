"""The default system and the module-level accessors (``infraboot.get_redis()`` and friends).

Owns: the process-wide default ``SystemInitializer`` with the built-ins registered, its
``INFRABOOT_*`` settings (``_default``), and the shortcuts to its components (``_accessors``); what
a process prints when it cannot start (``_failures``), the lifecycle every worker adapter plugs into
its framework's hooks (``_worker``) and the ``infraboot probe`` command (``_probe``).
"""
