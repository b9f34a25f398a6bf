"""The names of the ``INFRABOOT_*`` variables read outside the system's settings table.

Kept here, below every room, so that the did-you-mean check (``_variables``) knows them without
importing the rooms that read them: the command line's ``INFRABOOT_APP`` and the state file's
``INFRABOOT_STATE_FILE`` / ``INFRABOOT_STATE_INTERVAL`` (``_engine._statefile``). Imports nothing:
``infraboot probe`` reads the state file's name from here on every probe.
"""

from __future__ import annotations

__all__ = ["APP_VARIABLE", "RUNTIME_VARIABLES", "STATE_FILE_VARIABLE", "STATE_INTERVAL_VARIABLE"]

#: What ``infraboot check|wait|graph`` read when ``--app`` is not given: the application to load.
APP_VARIABLE = "INFRABOOT_APP"
#: Where a process that serves no HTTP keeps its probes' answers for ``infraboot probe``.
STATE_FILE_VARIABLE = "INFRABOOT_STATE_FILE"
#: Seconds between two writes of the state file.
STATE_INTERVAL_VARIABLE = "INFRABOOT_STATE_INTERVAL"
#: Every name above (the system's own settings, ``INFRABOOT_STARTUP_TIMEOUT`` ..., are registered by
#: ``_engine._system_settings`` through ``_variables.know_variables``).
RUNTIME_VARIABLES = (APP_VARIABLE, STATE_FILE_VARIABLE, STATE_INTERVAL_VARIABLE)
