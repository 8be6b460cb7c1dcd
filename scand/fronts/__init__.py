"""Protocol fronts other than Sophie, served by the same Service and Pool.

``clamd_proto`` is sans-IO (bytes in, events out; its vocabulary in
``clamd_events``); ``clamd_reply`` turns
verdicts into clamd's exact reply text; ``clamd_walk`` lists a directory the
way clamd does; ``clamd_handler`` answers one request; ``clamd_server`` and
``clamd_listen`` are the trio glue (Unix socket, TCP with allow-list and TLS).
"""
