"""Shared vocabulary below the engine.

Owns: redaction of secrets (``_redact``), safe one-line error descriptions (``_errors``), the
``infraboot`` logger (``_log``), the range checks every setting goes through (``_checks``) and
the did-you-mean for unknown environment variables (``_variables``) and the names of the
``INFRABOOT_*`` variables read outside the settings table (``_names``). No I/O; imports nothing above.
"""
