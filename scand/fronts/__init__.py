"""The fronts (Sophie, clamd; the milter lives in scand.milter) and the listener toolkit
they all stand on (daemon side).

Toolkit: ``listen`` (bind Unix/TCP before privileges drop, host:port, allow-list,
TLS context, fd budget), ``transport`` (socket, TLS, memory stream), ``accept``
(one accept loop, per-connection fault guard, counters, drain), ``budget`` (the
daemon-wide memory budget), ``network`` (what a network peer may ask),
``unlinker`` (removing socket files after privileges dropped), ``wiring`` (the
configured fronts, for ``cli.serve``).

A front is small: a sans-IO protocol (``scand.protocol``, ``clamd_proto`` with
``clamd_events``/``clamd_reply``, ``scand.milter.protocol``), a session
(``sophie.ClientConnection``, ``clamd_session.ClamdClient``,
``scand.milter.session.MilterSession``) and its busy/closing/fault replies
(``SophieFront``, ``ClamdFront``, ``MilterFront``). The sans-IO modules and
``budget``/``network`` import the stdlib and :mod:`scand.events` only.
"""
