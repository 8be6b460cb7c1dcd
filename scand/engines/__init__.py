"""Scanner engines behind one small interface (see :mod:`scand.engines.base`)."""
