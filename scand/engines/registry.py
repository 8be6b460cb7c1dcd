"""Engine names and where each engine lives: data only, no imports.

:mod:`scand.config` checks ``engine.name`` against it, and
:func:`scand.engines.base.engine_class` imports an engine lazily from it, so a
worker imports only the engine it runs and config and engines never import
each other.
"""

# Name -> "module:Class"; imported on first use so workers load only what they run.
REGISTRY: dict[str, str] = {
    "builtin": "scand.engines.builtin:BuiltinEngine",
    "chaos": "scand.engines.chaos:ChaosEngine",
    "clamd": "scand.clamd.engine:ClamdEngine",
    "clamav": "scand.engines.clamav.engine:ClamavEngine",
}
