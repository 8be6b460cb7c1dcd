"""Scanner engines behind one small interface (:mod:`scand.engines.base`).

Lives here: ``base`` (the interface, ``load_engine``), ``registry`` (names and
where each engine lives, data only), ``builtin`` (EICAR, hash and body
signatures: ``signatures``, ``ndb``) and ``chaos`` (fault injection for tests
and benchmarks). The clamd engine is :mod:`scand.clamd.engine`.

Engines run in workers: they may import the stdlib, :mod:`scand.events`,
:mod:`scand.cache.keys` and their own libraries; never trio or anything
daemon-side (tests/unit/test_import_rules.py).
"""
