"""Thin, stdlib-only scand clients for MTAs (see docs/CLIENTS.md).

One source, many single files. The core is ``core.py`` (verdicts, errors, the
sans-IO reply parser), ``sync.py`` (the blocking client), ``message.py`` (the
message as a file range: memfd, sendfile, splice) and ``cliutil.py`` (what the
command-line clients share). The entry modules ``scand_scan.py``,
``scand_qfilter.py``, ``scand_queue.py``, ``scand_pipe.py`` and
``scandclient.py`` (the Python API, with the trio client) import them;
``build.py`` inlines those imports into one copyable file per client
(``python3 -m clients.build DIR``; ``pip install`` does it for the console
scripts). Nothing here imports anything but the stdlib (trio only inside
``AsyncClient``).
"""
