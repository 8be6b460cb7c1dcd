"""The daemon side of the worker pool (trio).

Lives here: ``pool`` (the bounded queue in front of warm workers: deadlines,
recycling, warm replacement, reload), ``process`` (one worker seen from the
daemon: spawn, send, receive, kill) and ``spawner`` (asks the zygote to fork
workers and receives their pipes and pidfds).

May import: trio, structlog, psutil, :mod:`scand.config`, :mod:`scand.events`
and :mod:`scand.worker.wire` (the message contract). The code that runs in a
worker lives in :mod:`scand.worker`; this ``__init__`` imports nothing.
"""
