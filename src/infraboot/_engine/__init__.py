"""The lifecycle engine: what a system does with components it knows nothing about.

Owns: the ``Component`` frame and ``SystemInitializer`` (``_component``, ``_system``), each
component's live record (``_slot``), startup attempts, retries and deadlines (``_startup``,
``_retry``, ``_deadlines``), the dependency graph (``_graph``), health probing, passive health and
recovery (``_monitor``, ``_traffic``), teardown and drain (``_teardown``, ``_drain``), stop signals
and fork hygiene (``_signals``, ``_fork``), the operator's switches (``_switches``) and the frozen
reports (``_state``, ``_health``, ``_report``), and the probes of a process with no web framework:
the state file ``infraboot probe`` reads (``_statefile``) and a tiny health port (``_healthport``).
Imports ``_base`` only: no driver, no framework, no built-in component.
"""
