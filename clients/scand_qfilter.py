#!/usr/bin/env -S python3 -IS
"""scand-qfilter: a qmail-qfilter filter that asks scand about each message.

A single-file, stdlib-only client: copy it anywhere that has Python 3.11+.
Run ``scand-qfilter --help`` for the manual.
"""

from __future__ import annotations

import os
import sys

from clients.cliutil import (
    UsageError,
    env_float,
    option_float,
    option_str,
    parse_options,
    scan_message,
    warn,
)
from clients.core import CLIENT_VERSION, DEFAULT_TIMEOUT, Clean, Infected, ScandError
from clients.message import copy_range, stage, unspool
from clients.sync import Client

PROG = "scand-qfilter"
USAGE = f"usage: {PROG} [--socket PATH] [--timeout S] [--spool-dir DIR] [--drop]"
# qmail-queue exit codes (qmail-queue(8)), which qmail-qfilter passes on to qmail-smtpd.
EXIT_PASS = 0
EXIT_REJECT = 31  # "mail server permanently rejected message" (554)
EXIT_TEMPFAIL = 71  # "mail server temporarily rejected message" (451): the sender retries
EXIT_DROP = 99  # qmail-qfilter: accept, then silently discard
HELP = f"""{USAGE}

A filter for qmail-qfilter(1). It reads the message on standard input, asks
the scand daemon whether it is clean, and then:

  clean                 copies the message unchanged to standard output and
                        exits 0: qmail-qfilter passes it on to qmail-queue
  infected or banned    prints one line on standard error and exits 31: the
                        SMTP client gets a permanent 554 rejection; with
                        --drop it exits 99 instead, so qmail-qfilter accepts
                        the message and silently discards it
  anything else         daemon unreachable, timeout, a -1:<reason> reply, a
                        bad option: prints one line on standard error and
                        exits 71, a temporary 451, so the sender retries later.
                        A message is never passed unless scand said it is clean.

By default the message is streamed to the daemon (STREAM <n>), which needs no
shared filesystem; the daemon's server.max_stream_bytes must then be at least
qmail's databytes. With --spool-dir the message is written to a new file
(mode 0640, created exclusively) in DIR, the daemon is sent its path, and the
file is removed afterwards, whatever happened. The daemon must be able to read
it: make DIR setgid and owned by a group the daemon is in. The message is never
held in memory: qmail-qfilter's seekable input is sent as it is (sendfile), and
a pipe is first moved into a memfd, so memory does not grow with the message.

options:
  --socket PATH     the daemon's Unix socket (default: $SCAND_SOCKET, else
                    /var/run/sophie if it exists, else
                    $XDG_RUNTIME_DIR/scand/sophie, else /tmp/scand-<uid>/sophie)
  --timeout S       total seconds for the scan, connect to reply
                    (default: $SCAND_TIMEOUT, else {DEFAULT_TIMEOUT:g})
  --spool-dir DIR   spool to DIR and send the path instead of streaming
                    (default: $SCAND_SPOOL_DIR; unset = stream)
  --drop            on infection exit 99 (drop silently) instead of 31
                    (default: $SCAND_ON_INFECTED, "reject" or "drop")
  -h, --help        show this manual and exit
  --version         show the version and exit

exit status:
  0 clean (message copied to standard output), 31 infected, 99 infected with
  --drop, 71 any failure.

environment:
  SCAND_SOCKET, SCAND_TIMEOUT, SCAND_SPOOL_DIR, SCAND_ON_INFECTED (reject|drop)

example: QMAILQUEUE cannot carry arguments, so point it at a wrapper,
/var/qmail/bin/qmail-scand (mode 0755):
  #!/bin/sh
  exec /usr/local/bin/qmail-qfilter /usr/local/bin/scand-qfilter --socket /var/run/sophie
and set QMAILQUEUE=/var/qmail/bin/qmail-scand for qmail-smtpd (tcprules or its
run file). Other filters can follow after "--" on the qmail-qfilter line.
"""


def run(argv: list[str]) -> int:
    try:
        opts, operands = parse_options(
            argv, ("--drop", "-h", "--help", "--version"), ("--socket", "--timeout", "--spool-dir")
        )
        if "-h" in opts or "--help" in opts:
            sys.stdout.write(HELP)
            return EXIT_PASS
        if "--version" in opts:
            sys.stdout.write(f"{PROG} {CLIENT_VERSION}\n")
            return EXIT_PASS
        if operands:
            raise UsageError(f"unexpected argument {operands[0]!r}")
        timeout = option_float(opts, "--timeout", env_float("SCAND_TIMEOUT", DEFAULT_TIMEOUT))
        on_infected = os.environ.get("SCAND_ON_INFECTED", "reject") or "reject"
        if on_infected not in ("reject", "drop"):
            raise UsageError(f"SCAND_ON_INFECTED must be reject or drop, got {on_infected!r}")
        drop = "--drop" in opts or on_infected == "drop"
    except UsageError as exc:
        warn(PROG, f"temporary failure: {exc}")
        return EXIT_TEMPFAIL
    socket_path = option_str(opts, "--socket", "SCAND_SOCKET") or None
    try:
        msg = stage(0, option_str(opts, "--spool-dir", "SCAND_SPOOL_DIR"))
    except OSError as exc:
        warn(PROG, f"temporary failure: cannot spool the message: {exc}")
        return EXIT_TEMPFAIL
    try:
        with Client(socket_path, timeout) as client:
            verdict = scan_message(client, msg)
        if isinstance(verdict, Clean):
            copy_range(msg, 1)  # the same bytes: sendfile from the scanned file
            return EXIT_PASS
    except ScandError as exc:
        warn(PROG, f"temporary failure: virus scanner unavailable: {exc}")
        return EXIT_TEMPFAIL
    except OSError as exc:
        warn(PROG, f"temporary failure: cannot read or pass on the message: {exc}")
        return EXIT_TEMPFAIL
    finally:
        unspool(msg)
    if isinstance(verdict, Infected):
        if drop:
            warn(PROG, f"message dropped: it contains {verdict.name}")
            return EXIT_DROP
        warn(PROG, f"message rejected: it contains {verdict.name}")
        return EXIT_REJECT
    detail = f" {verdict.detail}" if verdict.detail else ""
    warn(PROG, f"temporary failure: message not scanned: {verdict.reason}{detail}")
    return EXIT_TEMPFAIL


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except Exception as exc:  # any bug must defer the mail, never pass or bounce it
        warn(PROG, f"temporary failure: internal error: {type(exc).__name__}: {exc}")
        return EXIT_TEMPFAIL


if __name__ == "__main__":
    sys.exit(main())
