"""scand: a virus-scanning daemon for mail servers (Sophie protocol)."""

__version__ = "0.1.0"
