"""What the command-line clients share: options, environment, warnings, one scan.

A small getopt stands in for argparse and getopt, which pull in ``re`` and
``gettext``: about 7 ms on every message.
"""

from __future__ import annotations

import os
import sys

from clients.core import Verdict
from clients.message import Message, unspool
from clients.sync import Client


class UsageError(Exception):
    """A bad command line or environment variable (the message says which)."""


def env_float(name: str, default: float) -> float:
    """A positive number from the environment, or ``default`` when unset."""
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a number") from None
    if not value > 0:
        raise UsageError(f"{name} must be > 0, got {raw!r}")
    return value


def parse_options(
    argv: list[str], flags: tuple[str, ...], valued: tuple[str, ...]
) -> tuple[dict[str, str | bool], list[str]]:
    """``--opt VALUE``, ``--opt=VALUE``, ``-o VALUE``, flags, ``--``.

    ``-`` alone is an operand. Options may follow operands until ``--``.
    """
    opts: dict[str, str | bool] = {}
    operands: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            operands += args[i:]
            break
        if arg == "-" or not arg.startswith("-"):
            operands.append(arg)
            continue
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in flags and not eq:
            opts[name] = True
        elif name in valued:
            if not eq:
                if i >= len(args):
                    raise UsageError(f"option {name} needs a value")
                value = args[i]
                i += 1
            opts[name] = value
        else:
            raise UsageError(f"unknown option {arg!r}")
    return opts, operands


def option_float(opts: dict[str, str | bool], name: str, default: float) -> float:
    """A positive number given as ``name`` on the command line, else ``default``."""
    raw = opts.get(name)
    if not isinstance(raw, str):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name}: not a number: {raw!r}") from None
    if not value > 0:
        raise UsageError(f"{name}: must be > 0, got {raw!r}")
    return value


def option_str(opts: dict[str, str | bool], name: str, env: str, default: str = "") -> str:
    """``name`` from the command line, else ``$env``, else ``default``."""
    raw = opts.get(name)
    return raw if isinstance(raw, str) and raw else os.environ.get(env, "") or default


def scan_message(client: Client, msg: Message) -> Verdict:
    """Scan a staged message: by path if it was spooled (then unspool it), else STREAM it."""
    if msg.spool_path:
        try:
            return client.scan_path(msg.spool_path)
        finally:
            unspool(msg)
    return client.scan_fd(msg.fd, msg.offset, msg.length)


def warn(prog: str, message: str) -> None:
    """One line on stderr, prefixed with the program name."""
    sys.stderr.write(f"{prog}: {message}\n")
    sys.stderr.flush()
