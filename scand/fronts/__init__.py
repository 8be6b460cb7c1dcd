"""Protocol fronts other than Sophie, served by the same Service and Pool (daemon side).

``clamd_proto`` is sans-IO (bytes in, events out; its vocabulary in
``clamd_events``); ``clamd_reply`` turns verdicts into clamd's exact reply
text; ``clamd_walk`` lists a directory the way clamd does; ``clamd_handler``
answers one request; ``clamd_server`` and ``clamd_listen`` are the trio glue
(Unix socket, TCP with allow-list and TLS).

May import: trio, structlog, :mod:`scand.service`, :mod:`scand.events`,
:mod:`scand.config`, :mod:`scand.connection`; the sans-IO modules
(``clamd_events``, ``clamd_proto``, ``clamd_reply``) the stdlib and
:mod:`scand.events` only.
"""
