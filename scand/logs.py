"""structlog set-up: configured once per process, JSON unless stderr is a TTY.

Every request writes one line, so the JSON chain is kept cheap (issue 27): the
timestamp reuses the formatted date and time within the same second, and the
line is encoded by one JSON encoder made once (``json.dumps`` with a
``default`` builds a new encoder per call). The output is what structlog's
``TimeStamper(fmt="iso", utc=True)`` and ``JSONRenderer`` write.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import time
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


class IsoStamper:
    """``timestamp``: ISO 8601 in UTC with microseconds, as structlog's
    ``TimeStamper(fmt="iso", utc=True)`` (``2026-12-07T19:22:07.123456Z``)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, logger: Any, method: str, event_dict: Any) -> Any:
        second, micro = divmod(round(time.time() * 1_000_000), 1_000_000)
        if second != self._second:
            moment = datetime.datetime.fromtimestamp(second, datetime.UTC)
            self._second, self._prefix = second, moment.strftime("%Y-%m-%dT%H:%M:%S")
        event_dict["timestamp"] = (f"{self._prefix}.{micro:06d}Z" if micro
                                   else f"{self._prefix}Z")  # as isoformat() drops .000000
        return event_dict


def _fallback(obj: Any) -> Any:
    """What JSON cannot hold: ``__structlog__()`` if it has one, else ``repr``."""
    try:
        return obj.__structlog__()
    except AttributeError:
        return repr(obj)


class JsonRenderer:
    """structlog's JSONRenderer with one encoder for the process."""

    def __init__(self) -> None:
        self._encode = json.JSONEncoder(default=_fallback).encode

    def __call__(self, logger: Any, method: str, event_dict: Any) -> str:
        return self._encode(event_dict)


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Route structlog to stderr: JSON lines for machines, colours for a terminal."""
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if console else JsonRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            IsoStamper(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
