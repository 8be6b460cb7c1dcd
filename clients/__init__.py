"""Thin, stdlib-only scand clients for MTAs (see docs/CLIENTS.md).

Every module here is also a single file that can be copied on its own to a
host without scand: ``scandclient.py`` (the Python API) and the command-line
clients ``scand_scan.py``, ``scand_qfilter.py``, ``scand_queue.py`` and
``scand_pipe.py``, each of which embeds the client core.
"""
