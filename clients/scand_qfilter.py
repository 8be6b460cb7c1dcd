"""scand-qfilter: a qmail-qfilter filter that asks scand.

Scan the message on descriptor 0; copy it to descriptor 1 only if clean.
"""

from __future__ import annotations

import sys

from clients.cliutil import (
    UsageError,
    env_choice,
    guarded,
    manual_asked,
    not_scanned,
    parse_options,
    scan_timeout,
    stage_and_scan,
    warn,
)
from clients.core import DEFAULT_TIMEOUT, Clean, Infected
from clients.message import copy_range

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
  --install PREFIX  install this file byte-compiled, for a faster
                    start: PREFIX/bin/scand-qfilter runs PREFIX/lib/scand-clients/

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
            argv, ("--drop", "-h", "--help", "--version"),
            ("--socket", "--timeout", "--spool-dir", "--install"),
        )
        if manual_asked(opts, PROG, HELP):
            return EXIT_PASS
        if operands:
            raise UsageError(f"unexpected argument {operands[0]!r}")
        timeout = scan_timeout(opts)
        drop = "--drop" in opts or env_choice("SCAND_ON_INFECTED", ("reject", "drop")) == "drop"
    except UsageError as exc:
        warn(PROG, f"temporary failure: {exc}")
        return EXIT_TEMPFAIL
    msg, verdict = stage_and_scan(opts, timeout)
    if isinstance(verdict, str):
        warn(PROG, f"temporary failure: {verdict}")
        return EXIT_TEMPFAIL
    if isinstance(verdict, Clean):
        try:
            copy_range(msg, 1)  # the same bytes: sendfile from the scanned file
        except OSError as exc:
            warn(PROG, f"temporary failure: cannot pass on the message: {exc}")
            return EXIT_TEMPFAIL
        return EXIT_PASS
    if isinstance(verdict, Infected):
        if drop:
            warn(PROG, f"message dropped: it contains {verdict.name}")
            return EXIT_DROP
        warn(PROG, f"message rejected: it contains {verdict.name}")
        return EXIT_REJECT
    warn(PROG, f"temporary failure: {not_scanned(verdict)}")
    return EXIT_TEMPFAIL


def main(argv: list[str] | None = None) -> int:
    return guarded(run, PROG, sys.argv[1:] if argv is None else argv, EXIT_TEMPFAIL)


if __name__ == "__main__":
    sys.exit(main())
