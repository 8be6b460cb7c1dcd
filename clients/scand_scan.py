"""scand-scan: scan files with the scand daemon, clamdscan style.

One line per file, clamdscan-like exit codes (0 clean, 1 infected, 2 other).
"""

from __future__ import annotations

import os
import stat
import sys

from clients.cliutil import UsageError, manual_asked, parse_options, scan_timeout, warn
from clients.core import (
    DEFAULT_TIMEOUT,
    Clean,
    Infected,
    ScandError,
    Unchecked,
    Verdict,
)
from clients.message import stage
from clients.sync import Client

PROG = "scand-scan"
USAGE = f"usage: {PROG} [--socket PATH] [--stream] [--json] [--timeout S] PATH... | -"
HELP = f"""{USAGE}

Ask the scand virus-scanning daemon whether files are clean, and print one
line per file in the style of clamdscan. By default the daemon is sent each
file's absolute path and reads the file itself (relative paths are made
absolute first; the daemon must be able to read them, and scans directories
recursively). With --stream, or for "-" (standard input), the content itself
is sent (STREAM <n>), so no shared filesystem is needed; --stream walks
directories on this side and sends each regular file.

options:
  --socket PATH   the daemon's Unix socket (default: $SCAND_SOCKET, else
                  /var/run/sophie if it exists, else
                  $XDG_RUNTIME_DIR/scand/sophie, else /tmp/scand-<uid>/sophie);
                  or a comma-separated list of servers: unix:/path,
                  tcp://host:port, tls://host:port (CA: $SCAND_TLS_CA). Requests
                  spread over them and fail over on connection errors and
                  -1:busy; over TCP, use --stream (paths are refused remotely)
  --stream        send file contents instead of paths
  --json          print one JSON object per line instead of text:
                  {{"path": ..., "verdict": "clean"|"infected"|"unchecked"|"error",
                   "name": ..., "reason": ..., "detail": ..., "error": ...}}
  --timeout S     total seconds allowed for each file, connect to reply
                  (default: $SCAND_TIMEOUT, else {DEFAULT_TIMEOUT:g})
  -h, --help      show this manual and exit
  --version       show the version and exit
  --install PREFIX
                  install this file byte-compiled, for a faster start:
                  PREFIX/bin/scand-scan runs PREFIX/lib/scand-clients/

output (one line per file, on standard output):
  PATH: OK                    scanned completely, nothing found
  PATH: NAME FOUND            infected (or banned by the daemon's policy)
  PATH: REASON UNCHECKED      the daemon could not scan it completely; REASON
                              is its -1:<reason> word (not-found, too-large,
                              timeout, busy, ...)
  PATH: MESSAGE ERROR         no verdict: daemon unreachable, timed out, or a
                              local file could not be read (--stream)
  Standard input is reported as "stream". PATH is printed as given.

exit status:
  0   every file is clean
  1   at least one file is infected
  2   no file is infected, but at least one is unchecked or had an error
      (also: bad command line). Never treat 2 as clean.

environment:
  SCAND_SOCKET    default socket path (or server list)
  SCAND_TLS_CA    CA file for tls:// servers (default: the system's)
  SCAND_TIMEOUT   default --timeout

examples:
  scand-scan /var/spool/scan/1a2b3c/
  scand-scan --stream --socket /run/scand/sophie message.eml
  some-mda < mail | scand-scan - && echo clean
"""


def _report(label: str, outcome: Verdict | str, as_json: bool) -> int:
    """Print one result line; return its exit-code weight (0 clean, 1 infected, 2 other)."""
    if isinstance(outcome, Clean):
        text, record, code = "OK", {"verdict": "clean"}, 0
    elif isinstance(outcome, Infected):
        text, record, code = f"{outcome.name} FOUND", {"verdict": "infected"}, 1
        record["name"] = outcome.name
    elif isinstance(outcome, Unchecked):
        text, record, code = f"{outcome.reason} UNCHECKED", {"verdict": "unchecked"}, 2
        record.update(reason=outcome.reason, detail=outcome.detail)
    else:
        text, record, code = f"{outcome} ERROR", {"verdict": "error", "error": outcome}, 2
    if as_json:
        import json

        sys.stdout.write(json.dumps({"path": label, **record}) + "\n")
    else:
        sys.stdout.write(f"{label}: {text}\n")
    return code


def _scan_content(client: Client, path: str) -> Verdict | str:
    """STREAM one local file, straight from the file with sendfile."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # never block on a FIFO
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device has no size to promise
            return "cannot read: not a regular file"
        return client.scan_fd(fd, 0, st.st_size)
    except ScandError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    finally:
        os.close(fd)


def _stream_targets(path: str) -> list[str]:
    """The regular files under ``path`` (itself if it is not a directory), sorted.

    Like the daemon, the walk follows no symlinks, and skips sockets and FIFOs
    (reading a FIFO could block for ever).
    """
    if not os.path.isdir(path):
        return [path]
    found = []
    for top, dirs, files in os.walk(path):  # does not descend into symlinked directories
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(top, name)
            if os.path.isfile(full) and not os.path.islink(full):
                found.append(full)
    return found


def scan_operand(client: Client, operand: str, stream: bool) -> list[tuple[str, Verdict | str]]:
    """Scan one command-line operand; a directory with --stream gives one result per file."""
    if operand == "-":
        try:
            msg = stage(0)
            return [("stream", client.scan_fd(msg.fd, msg.offset, msg.length))]
        except ScandError as exc:
            return [("stream", str(exc))]
        except OSError as exc:
            return [("stream", f"cannot read standard input: {exc.strerror or exc}")]
    if stream:
        return [(p, _scan_content(client, p)) for p in _stream_targets(operand)]
    # Not abspath(): that folds "dir/../x" lexically, which a symlinked dir makes wrong.
    absolute = operand if operand.startswith("/") else os.path.join(os.getcwd(), operand)
    try:
        return [(operand, client.scan_path(absolute))]
    except ValueError as exc:  # LF or NUL in the name: Sophie cannot carry it
        return [(operand, str(exc))]
    except ScandError as exc:
        return [(operand, str(exc))]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        opts, operands = parse_options(
            args, ("--stream", "--json", "-h", "--help", "--version"),
            ("--socket", "--timeout", "--install"),
        )
        if manual_asked(opts, PROG, HELP):
            return 0
        timeout = scan_timeout(opts)
        if not operands:
            raise UsageError("no PATH given")
        if operands.count("-") > 1:
            raise UsageError("standard input (-) can be scanned only once")
    except UsageError as exc:
        warn(PROG, f"{exc}\n{USAGE}")
        return 2
    socket_path = opts.get("--socket")
    stream, as_json = "--stream" in opts, "--json" in opts
    worst = 0
    with Client(socket_path if isinstance(socket_path, str) else None, timeout) as client:
        for operand in operands:
            for label, outcome in scan_operand(client, operand, stream):
                code = _report(label, outcome, as_json)
                # Infected outranks unchecked: the message must not pass either way,
                # and 1 tells the caller a rejection (not a retry) is justified.
                worst = 1 if 1 in (worst, code) else max(worst, code)
    sys.stdout.flush()
    return worst


if __name__ == "__main__":
    sys.exit(main())
