"""scand-queue: a QMAILQUEUE replacement that asks scand before queueing.

Read the message from descriptor 0, scan it, exec the real qmail-queue if clean.
"""

from __future__ import annotations

import os
import sys

from clients.cliutil import (
    UsageError,
    env_choice,
    guarded,
    manual_asked,
    not_scanned,
    option_str,
    parse_options,
    scan_timeout,
    stage_and_scan,
    warn,
)
from clients.core import DEFAULT_TIMEOUT, Clean, Infected
from clients.message import Message, as_stdin

PROG = "scand-queue"
USAGE = f"usage: {PROG} [--socket PATH] [--timeout S] [--spool-dir DIR] [--qmail-queue PATH]"
DEFAULT_QMAIL_QUEUE = "/var/qmail/bin/qmail-queue"
# qmail-queue(8) exit codes, which qmail-smtpd and qmail-inject turn into SMTP replies.
EXIT_REJECT = 31  # permanent: 554 mail server permanently rejected message
EXIT_TEMPFAIL = 71  # temporary: 451, the sender retries later
EXIT_BUG = 81  # temporary: 451 qq internal bug
EXIT_CUSTOM = 82  # notqmail: the reply is the text on descriptor 6 (D permanent, Z temporary)
HELP = f"""{USAGE}

A drop-in replacement for qmail-queue(8), in the role of qmail-scanner or
simscan: set QMAILQUEUE to this program for qmail-smtpd (or any qmail program
that honours QMAILQUEUE). Like qmail-queue it reads the message on descriptor 0
and the envelope on descriptor 1. It reads only the message, asks the scand
daemon whether it is clean, and then:

  clean                 execs the real qmail-queue with the very same message
                        on descriptor 0 and the untouched envelope descriptor 1
                        (the envelope is never read, so it cannot be altered)
  infected or banned    prints one line on standard error and exits 31: the
                        SMTP client gets a permanent 554 rejection
  anything else         daemon unreachable, timeout, a -1:<reason> reply, a
                        real qmail-queue that cannot be executed, bad settings:
                        prints one line on standard error and exits 71 (81 for
                        an internal error), a temporary 451: the sender retries.
                        A message is never queued unless scand said it is clean.

Nothing is ever written to standard output: descriptor 1 is the envelope.
QMAILQUEUE takes no arguments, so configure it with the environment (for
example in the tcprules file or the run file of qmail-smtpd). The options are
for testing by hand.

By default the message is streamed to the daemon (STREAM <n>), which needs no
shared filesystem; the daemon's server.max_stream_bytes must be at least qmail's
databytes. The message is never held in memory: it goes from descriptor 0 into
a memfd, from there to the daemon (sendfile) and, when clean, to the real
qmail-queue as its descriptor 0, so memory does not grow with the message.
With a spool directory the message is written to a new file there (mode 0640,
created exclusively) instead of a memfd, the daemon is sent its path, and the
name is removed afterwards, whatever happened.

options:
  --socket PATH       the daemon's Unix socket (default: $SCAND_SOCKET, else
                      /var/run/sophie if it exists, else
                      $XDG_RUNTIME_DIR/scand/sophie, else /tmp/scand-<uid>/sophie)
  --timeout S         total seconds for the scan (default: $SCAND_TIMEOUT, else
                      {DEFAULT_TIMEOUT:g})
  --spool-dir DIR     spool to DIR and send the path (default: $SCAND_SPOOL_DIR;
                      unset = stream)
  --qmail-queue PATH  the real qmail-queue (default: $SCAND_QMAILQUEUE, else
                      {DEFAULT_QMAIL_QUEUE})
  -h, --help          show this manual and exit
  --version           show the version and exit
  --install PREFIX    install this file byte-compiled, for a faster
                      start: PREFIX/bin/scand-queue runs PREFIX/lib/scand-clients/

exit status:
  that of the real qmail-queue when clean; 31 infected; 71 any failure;
  81 internal error; 82 infected with SCAND_QMAIL_CUSTOM_ERROR=1.

environment:
  SCAND_SOCKET, SCAND_TIMEOUT, SCAND_SPOOL_DIR, SCAND_QMAILQUEUE
  SCAND_QMAIL_CUSTOM_ERROR=1  name the virus in the SMTP reply: write
      "Dmessage rejected: it contains NAME (#5.7.1)" on descriptor 6 and exit 82
      (notqmail's custom error). Off by default: an older qmail-smtpd reads
      82 as a temporary failure and would defer the virus for ever. Without
      a descriptor 6 it falls back to exit 31.

example (/service/qmail-smtpd/run):
  #!/bin/sh
  QMAILQUEUE=/usr/local/bin/scand-queue; export QMAILQUEUE
  SCAND_SOCKET=/var/run/sophie; export SCAND_SOCKET
  exec softlimit -m 24000000 tcpserver -v -H -R -x /etc/tcp.smtp.cdb \\
    -u 7791 -g 2108 0 smtp /var/qmail/bin/qmail-smtpd 2>&1
  (the whole recipe, tcprules included: docs/CLIENTS.md)
"""


def _exec_qmail_queue(qmail_queue: str, msg: Message) -> int:
    """Replace this process with the real qmail-queue; return only on failure."""
    try:
        me = os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        if me and os.path.realpath(qmail_queue) == me:
            warn(PROG, f"temporary failure: {qmail_queue} is scand-queue itself (loop)")
            return EXIT_TEMPFAIL
        as_stdin(msg)  # the very bytes that were scanned; descriptor 1 is untouched
        import _signal  # type: ignore[import-not-found]  # C module: `signal` builds enums (~3 ms)

        # Python ignores SIGPIPE and SIGXFSZ; qmail-queue expects the defaults, as
        # subprocess's restore_signals would give it.
        for name in ("SIGPIPE", "SIGXFSZ"):
            if hasattr(_signal, name):
                _signal.signal(getattr(_signal, name), _signal.SIG_DFL)
        os.execv(qmail_queue, [qmail_queue])
    except OSError as exc:
        warn(PROG, f"temporary failure: cannot run {qmail_queue}: {exc.strerror or exc}")
        return EXIT_TEMPFAIL
    raise AssertionError("unreachable")  # pragma: no cover - execv does not return


def _custom_error(kind: str, text: str) -> int:
    """notqmail's custom reply: the text on descriptor 6, then exit 82.

    ``kind`` is ``D`` (permanent, 5xx) or ``Z`` (temporary, 4xx). Only when the
    admin asked for it: an older qmail-smtpd reads exit 82 as a temporary
    failure and would defer a virus for ever.
    """
    try:
        os.write(6, f"{kind}{text}".encode("utf-8", "replace"))
    except OSError:  # no descriptor 6: this qmail-smtpd cannot take a custom reply
        return EXIT_REJECT if kind == "D" else EXIT_TEMPFAIL
    return EXIT_CUSTOM


def run(argv: list[str]) -> int:
    try:
        opts, operands = parse_options(
            argv,
            ("-h", "--help", "--version"),
            ("--socket", "--timeout", "--spool-dir", "--qmail-queue", "--install"),
        )
        if manual_asked(opts, PROG, HELP):
            return 0
        if operands:
            raise UsageError(f"unexpected argument {operands[0]!r}")
        timeout = scan_timeout(opts)
        custom = env_choice("SCAND_QMAIL_CUSTOM_ERROR", ("0", "1"))
    except UsageError as exc:
        warn(PROG, f"temporary failure: {exc}")
        return EXIT_TEMPFAIL
    qmail_queue = option_str(opts, "--qmail-queue", "SCAND_QMAILQUEUE", DEFAULT_QMAIL_QUEUE)
    msg, verdict = stage_and_scan(opts, timeout)
    if isinstance(verdict, str):
        warn(PROG, f"temporary failure: {verdict}")
        return EXIT_TEMPFAIL
    if isinstance(verdict, Clean):
        return _exec_qmail_queue(qmail_queue, msg)
    if isinstance(verdict, Infected):
        warn(PROG, f"message rejected: it contains {verdict.name}")
        if custom == "1":
            return _custom_error("D", f"message rejected: it contains {verdict.name} (#5.7.1)")
        return EXIT_REJECT
    warn(PROG, f"temporary failure: {not_scanned(verdict)}")
    return EXIT_TEMPFAIL


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not any(a in ("-h", "--help", "--version") or a.startswith("--install") for a in args):
        # Descriptor 1 is the envelope pipe: a stray print() must not corrupt it.
        sys.stdout = sys.stderr
    return guarded(run, PROG, args, EXIT_BUG)  # a bug defers the mail, never queues it


if __name__ == "__main__":
    sys.exit(main())
