"""The scanner worker pool.

``child`` and ``wire`` run inside worker processes and never import trio;
``process`` and ``pool`` are the daemon side. This ``__init__`` imports nothing,
so importing the child does not drag the daemon side in.
"""
