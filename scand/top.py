"""``scand top`` (a live view, clamdtop's role) and ``scand stats`` (the same, once).

Both ask the daemon ``STATS`` over its Sophie socket: a Unix socket path, or
``host:port`` of a ``server.tcp`` / ``server.tls`` listener (``--tls``,
``--ca``). The layout is :mod:`scand.topview` (pure); this module only talks to
the socket and to the terminal. ``top`` draws with plain ANSI sequences (no
curses, no terminfo needed: any terminal an SSH session gives), in the
alternate screen, with the terminal in cbreak mode; whatever ends it (``q``,
Ctrl-C, SIGTERM, SIGHUP) restores the terminal first. Stdlib only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import ssl
import sys
import termios
import textwrap
import time
import tty
from collections.abc import Iterator
from typing import Any, TextIO

from scand import config as configmod
from scand import topview
from scand.config import default_socket_path

# sysexits.h: EX_UNAVAILABLE, the daemon did not answer.
EX_UNAVAILABLE = 69
# A STATS reply longer than this is not scand's (a few KiB even with 64 workers).
MAX_REPLY = 4 * 1024 * 1024
# Alternate screen and cursor (xterm, and every terminal SSH users meet).
ENTER = "\x1b[?1049h\x1b[?25l"
LEAVE = "\x1b[?25h\x1b[?1049l"


class Unreachable(Exception):
    """The daemon did not answer STATS (connect, TLS, timeout, or a bad reply)."""


class StatsClient:
    """One connection to the Sophie socket, reused for each STATS and remade on error."""

    def __init__(self, address: str, tls: bool = False, ca: str = "",
                 timeout: float = 5.0) -> None:
        self.address, self.tls, self.ca, self.timeout = address, tls, ca, timeout
        self._sock: socket.socket | None = None
        self._buf = b""

    def _connect(self) -> socket.socket:
        if "/" in self.address or ":" not in self.address:
            if self.tls:
                raise Unreachable("--tls needs host:port, not a Unix socket path")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.address)
            except OSError:
                sock.close()
                raise
            return sock
        host, _, port = self.address.rpartition(":")
        host = host.strip("[]")
        if not port.isdigit():
            raise Unreachable(f"not a socket path or host:port: {self.address!r}")
        sock = socket.create_connection((host, int(port)), timeout=self.timeout)
        if not self.tls:
            return sock
        ctx = ssl.create_default_context(cafile=self.ca or None)
        try:
            return ctx.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise

    def fetch(self) -> dict[str, Any]:
        """One STATS reply as a dict; :class:`Unreachable` with the reason if none."""
        try:
            if self._sock is None:
                self._sock, self._buf = self._connect(), b""
            self._sock.sendall(b"STATS\n")
            while b"\n" not in self._buf:
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise Unreachable("the daemon closed the connection")
                self._buf += chunk
                if len(self._buf) > MAX_REPLY:
                    raise Unreachable("reply too long: not a scand STATS line")
            line, _, self._buf = self._buf.partition(b"\n")
            data = json.loads(line)
            if not isinstance(data, dict):
                raise Unreachable(f"not a STATS reply: {line[:80]!r}")
            return data
        except (OSError, ValueError, Unreachable) as exc:
            self.close()
            if isinstance(exc, Unreachable):
                raise
            if isinstance(exc, ValueError):
                raise Unreachable(f"not a STATS reply ({exc})") from exc
            raise Unreachable(exc.strerror or str(exc)) from exc

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


class _Stop(Exception):
    """SIGTERM or SIGHUP while the view runs: leave it like ``q``."""


def _stop(signum: int, frame: object) -> None:
    raise _Stop


@contextlib.contextmanager
def terminal(fd: int, out: TextIO) -> Iterator[None]:
    """cbreak mode (keys one at a time, no echo; Ctrl-C still a signal) and the
    alternate screen; both undone however the block ends."""
    saved = termios.tcgetattr(fd)
    handlers = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        tty.setcbreak(fd)
        out.write(ENTER)
        out.flush()
        yield
    finally:
        out.write(LEAVE)
        out.flush()
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def draw(out: TextIO, lines: list[str]) -> None:
    """Home, each line cleared to its end, the rest of the screen cleared."""
    out.write("\x1b[H" + "".join(f"{line}\x1b[K\r\n" for line in lines[:-1])
              + (lines[-1] + "\x1b[K" if lines else "") + "\x1b[J")
    out.flush()


def wait_key(fd: int, seconds: float) -> bytes:
    """Keys typed within ``seconds`` (b"" if none)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            return os.read(fd, 64) or b"q"  # end of input: leave too
    return b""


def run_top(client: StatsClient, interval: float = 1.0, fd: int = 0,
            out: TextIO = sys.stdout) -> int:
    """The live view until ``q`` or a signal; 0 when left cleanly."""
    previous: tuple[float, int] | None = None
    try:
        with terminal(fd, out):
            while True:
                cols, rows = os.get_terminal_size(out.fileno())
                status = (f"q quit   refresh {interval:g}s   {client.address}   "
                          f"{time.strftime('%H:%M:%S')}")
                try:
                    stats = client.fetch()
                except Unreachable as exc:
                    previous = None
                    lines = topview.unreachable(client.address, str(exc), cols, rows, status)
                else:
                    now, requests = time.monotonic(), int(stats.get("requests", 0))
                    rate = None
                    if previous is not None and requests >= previous[1] and now > previous[0]:
                        rate = (requests - previous[1]) / (now - previous[0])
                    previous = (now, requests)
                    lines = topview.render(stats, cols, rows, rate, status)
                draw(out, lines)
                if any(k in wait_key(fd, interval) for k in (b"q", b"Q")):
                    return 0
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        client.close()


def address(args: argparse.Namespace, command: str) -> str | None:
    """--socket, else server.socket of --config, else the default socket path."""
    if args.socket:
        return str(args.socket)
    if not args.config:
        return default_socket_path()
    try:
        return configmod.load(args.config).socket_path
    except configmod.ConfigError as exc:
        print(f"scand {command}: {exc}", file=sys.stderr)
        return None


def cmd_top(args: argparse.Namespace) -> int:
    if not (os.isatty(0) and sys.stdout.isatty()):
        print("scand top: needs a terminal (for one report: scand stats)", file=sys.stderr)
        return 2
    where = address(args, "top")
    if where is None:
        return 2
    return run_top(StatsClient(where, args.tls, args.ca, args.timeout), args.interval)


def cmd_stats(args: argparse.Namespace) -> int:
    where = address(args, "stats")
    if where is None:
        return 2
    args.socket = where
    client = StatsClient(args.socket, args.tls, args.ca, args.timeout)
    try:
        stats = client.fetch()
    except Unreachable as exc:
        print(f"scand stats: cannot reach the daemon at {args.socket}: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    finally:
        client.close()
    if args.json:
        print(json.dumps(stats, indent=2, sort_keys=True))
    else:
        width = os.get_terminal_size().columns if sys.stdout.isatty() else 100
        print("\n".join(topview.render(stats, width, height=10_000)))
    return 0


ADDRESS_HELP = textwrap.dedent("""\
    address:
      /path/to/socket      the daemon's Unix socket (default: server.socket of
                           --config FILE, else the daemon's default: /var/run/sophie
                           when /var/run is writable, else
                           $XDG_RUNTIME_DIR/scand/sophie or /tmp/scand-<uid>/sophie)
      host:port            a server.tcp listener; with --tls a server.tls one
                           ([::1]:3310 for IPv6). The peer must be in
                           server.tcp_allow.""")

TOP_DESCRIPTION = textwrap.dedent("""\
    A live view of a running daemon, as clamdtop is for clamd: it asks STATS
    every second and shows the engine and why it was chosen, the signature
    generation, requests per second and latency percentiles (ms, over the last
    4,096 requests), verdicts, queue depth, recycles by reason, the verdict
    cache's hit rate, the pool's memory, and one row per worker: pid, state
    (busy/idle), generation, private memory (what its exit would free), PSS,
    jobs done and age. Laid out for 80x24 and up (more workers on a taller
    terminal); plain ANSI, so any terminal over SSH works. While the daemon
    does not answer, the screen says so and keeps retrying.""")

TOP_EPILOG = ADDRESS_HELP + textwrap.dedent("""

    keys:
      q                    quit (so do Ctrl-C, SIGTERM and SIGHUP); the terminal
                           is restored in every case

    exit status:
      0   left with q or a signal;  2   not a terminal, a bad command line
          or a bad --config file

    examples:
      scand top
      scand top --config /etc/scand/scand.toml
      scand top --socket scan1.example.org:3311 --tls --ca /etc/scand/ca.pem""")

STATS_DESCRIPTION = textwrap.dedent("""\
    Ask a running daemon STATS once and print it: the same report as
    scand top, as a table, or with --json the daemon's reply itself (pretty
    printed; the keys are described in README.md, "Control lines"). The request
    rate is the average since the daemon started.""")

STATS_EPILOG = ADDRESS_HELP + textwrap.dedent("""

    exit status:
      0   printed;  2   bad command line or --config file;  69  the daemon did not answer
          (the message says why: no such socket, refused, TLS, timeout)

    examples:
      scand stats
      scand stats --json | jq .pool.recycles
      scand stats --socket 127.0.0.1:3311""")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", metavar="ADDR",
                        help="the daemon's Unix socket path or host:port (see below)")
    parser.add_argument("--config", metavar="FILE",
                        help="take the socket path from this scand.toml (server.socket)")
    parser.add_argument("--tls", action="store_true",
                        help="speak TLS to host:port (a server.tls listener)")
    parser.add_argument("--ca", metavar="FILE", default="",
                        help="PEM CA bundle to verify the daemon's certificate "
                             "(default: the system's)")
    parser.add_argument("--timeout", metavar="SECONDS", type=float, default=5.0,
                        help="give up on one STATS after this long (default 5)")


def add_parsers(sub: Any) -> None:
    """``top`` and ``stats`` on the ``scand`` command line (``sub``: its subparsers)."""
    fmt = argparse.RawDescriptionHelpFormatter
    top = sub.add_parser("top", help="live view of a running daemon (clamdtop's role)",
                         description=TOP_DESCRIPTION, epilog=TOP_EPILOG, formatter_class=fmt)
    _common(top)
    top.add_argument("--interval", metavar="SECONDS", type=float, default=1.0,
                     help="refresh every SECONDS (default 1)")
    stats = sub.add_parser("stats", help="print a running daemon's statistics once",
                           description=STATS_DESCRIPTION, epilog=STATS_EPILOG,
                           formatter_class=fmt)
    _common(stats)
    stats.add_argument("--json", action="store_true", help="the STATS reply as JSON")
