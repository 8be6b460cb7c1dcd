"""The worker side: everything that runs in the zygote and in the workers it forks.

Lives here: ``zygote`` (loads each signature generation's engine once, drops
privileges, forks workers), ``child`` (a worker's job loop and memory cap),
``scanner`` (one request: the content walk, the engine, the policy),
``paths`` (which files a request may read and how they are opened) and
``wire`` (the frames and messages between the daemon and a worker or the
zygote; the daemon side imports it too).

May import: the stdlib, :mod:`scand.config`, :mod:`scand.events`,
:mod:`scand.privileges`, :mod:`scand.policy`, :mod:`scand.content` and the
engines. Never trio, never structlog, never anything daemon-side
(:data:`DAEMON_SIDE`): a forked worker reports what it holds of these in its
``Ready`` message, and a test asserts it holds none.
"""

# Module prefixes a worker must never hold (checked in each forked worker).
DAEMON_SIDE = (
    "trio", "structlog", "psutil", "scand.pool", "scand.service",
    "scand.cli", "scand.logs", "scand.stats", "scand.clamd.supervisor", "scand.fronts",
    "scand.milter", "scand.metrics", "scand.farm", "scand.selfcheck", "scand.top",
)
