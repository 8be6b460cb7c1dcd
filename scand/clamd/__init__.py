"""ClamAV's clamd as scand's engine: both halves, apart.

* ``engine`` is the worker half (an :class:`~scand.engines.base.Engine`):
  FILDES/INSTREAM/SCAN over ``session`` (one IDSESSION per socket per worker,
  one true deadline per request), reply mapping. It runs in workers and
  imports nothing daemon-side.
* ``supervisor`` is the daemon half (trio): it writes clamd.conf, starts and
  supervises scand's own clamd (restart with backoff, RSS switch, reload).

This ``__init__`` imports neither, so a worker importing the engine never
pulls in the supervisor.
"""
