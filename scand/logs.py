"""structlog set-up: configured once per process, JSON unless stderr is a TTY.

Every request writes one line, so the JSON chain is kept cheap (issue 27): the
timestamp reuses the formatted date and time within the same second, and the
line is encoded by one C encoder made once (``json.dumps`` builds an encoder
per call, and so does ``JSONEncoder.encode``). The output is what structlog's
``TimeStamper(fmt="iso", utc=True)`` and ``JSONRenderer`` write.
"""

from __future__ import annotations

import datetime
import json
import json.encoder
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
    """structlog's JSONRenderer with one encoder for the process: ``json``'s C
    encoder (what ``JSONEncoder.encode`` makes afresh for every call), with the
    same separators, ASCII escapes, ``default`` and circular check; the pure
    ``JSONEncoder`` where the C one is missing, or for a dict it failed on."""

    def __init__(self) -> None:
        self._slow = json.JSONEncoder(default=_fallback).encode
        self._markers: dict[int, Any] = {}
        make = getattr(json.encoder, "c_make_encoder", None)  # CPython's _json
        self._fast: Any = None if make is None else make(
            self._markers, _fallback, json.encoder.encode_basestring_ascii, None, ": ", ", ",
            False, False, True)

    def __call__(self, logger: Any, method: str, event_dict: Any) -> str:
        if self._fast is not None and type(event_dict) is dict:
            try:
                return "".join(self._fast(event_dict, 0))
            except Exception:
                self._markers.clear()  # (what a failure left behind)
        return self._slow(event_dict)


def format_exc_info(logger: Any, method: str, event_dict: Any) -> Any:
    """structlog's ``format_exc_info``, called only for a line that carries
    ``exc_info`` (what it does to any other line: nothing, after two calls)."""
    if "exc_info" in event_dict:
        return structlog.processors.format_exc_info(logger, method, event_dict)
    return event_dict


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
            format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
