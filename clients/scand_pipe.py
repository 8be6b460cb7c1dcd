"""scand-pipe: a Postfix pipe(8) content filter that asks scand, then reinjects.

Scan the message; reinject it with sendmail (posix_spawn) only if clean.
"""

from __future__ import annotations

import os
import sys
import syslog
import time

from clients.cliutil import (
    UsageError,
    env_choice,
    env_float,
    guarded,
    manual_asked,
    not_scanned,
    option_float,
    option_str,
    parse_options,
    scan_timeout,
    stage_and_scan,
    warn,
)
from clients.core import DEFAULT_TIMEOUT, Infected, Unchecked
from clients.message import Message, copy_range, write_all

PROG = "scand-pipe"
USAGE = f"usage: {PROG} [options] -f SENDER -- RECIPIENT..."
DEFAULT_SENDMAIL = "/usr/sbin/sendmail -G -i"
DEFAULT_SENDMAIL_TIMEOUT = 300.0
# sysexits.h, as Postfix pipe(8) reads them.
EX_OK = 0
EX_UNAVAILABLE = 69  # permanent: Postfix bounces (to a sender that worms usually forge)
EX_TEMPFAIL = 75  # temporary: Postfix keeps the mail queued and retries
HELP = f"""{USAGE}

A content filter for Postfix's pipe(8) delivery agent, in the shape of
Postfix's FILTER_README "simple content filter". It reads the message on
standard input, asks the scand daemon whether it is clean, and then:

  clean                 reinjects the unchanged message with the sendmail
                        command plus "-f SENDER -- RECIPIENT...", and exits 0
                        when that succeeds
  infected or banned    logs it (mail.warning in syslog, and standard error)
                        and exits 0 so Postfix forgets it: the message is
                        discarded, or first saved in the --quarantine directory
                        as NAME.eml plus NAME.json (sender, recipients, virus).
                        With --bounce it exits 69 instead and Postfix bounces
                        it: not advised, as worms forge their senders.
  anything else         daemon unreachable, timeout, a -1:<reason> reply,
                        sendmail failing or timing out, quarantine not
                        writable, a bad option: prints one line on standard
                        error and exits 75, so Postfix defers the message and
                        retries. A message is never delivered unless scand
                        said it is clean.

options:
  -f SENDER              envelope sender (may be empty: Postfix null_sender=)
  --socket PATH          the daemon's Unix socket (default: $SCAND_SOCKET, else
                         /var/run/sophie if it exists, else
                         $XDG_RUNTIME_DIR/scand/sophie, else /tmp/scand-<uid>/sophie)
  --timeout S            total seconds for the scan (default: $SCAND_TIMEOUT,
                         else {DEFAULT_TIMEOUT:g})
  --spool-dir DIR        write the message to a new file in DIR (mode 0640) and
                         send its path instead of streaming it; the file is
                         always removed (default: $SCAND_SPOOL_DIR; unset = stream)
  --sendmail CMD         reinjection command, split like a shell would
                         (default: $SCAND_SENDMAIL, else "{DEFAULT_SENDMAIL}")
  --sendmail-timeout S   seconds sendmail may take (default:
                         $SCAND_SENDMAIL_TIMEOUT, else {DEFAULT_SENDMAIL_TIMEOUT:g})
  --quarantine DIR       keep infected messages in DIR (default:
                         $SCAND_QUARANTINE; unset = discard)
  --bounce               exit 69 for infected messages instead of discarding
                         them (default: $SCAND_ON_INFECTED=bounce)
  --no-syslog            log to standard error only (default: $SCAND_SYSLOG=0)
  -h, --help             show this manual and exit
  --version              show the version and exit
  --install PREFIX       install this file byte-compiled, for a faster
                         start: PREFIX/bin/scand-pipe runs PREFIX/lib/scand-clients/

exit status:
  0 reinjected, discarded or quarantined; 69 infected with --bounce;
  75 any failure.

environment:
  SCAND_SOCKET, SCAND_TIMEOUT, SCAND_SPOOL_DIR, SCAND_SENDMAIL,
  SCAND_SENDMAIL_TIMEOUT, SCAND_QUARANTINE, SCAND_ON_INFECTED (discard|bounce),
  SCAND_SYSLOG (1|0)

example (master.cf; apply the filter to mail from outside only, so the
reinjected mail, which arrives through pickup, is not filtered again):
  smtp      inet  n       -       n       -       -       smtpd
    -o content_filter=scand:dummy
  scand     unix  -       n       n       -       10      pipe
    flags=Rq user=scand-filter null_sender=
    argv=/usr/local/bin/scand-pipe -f ${{sender}} -- ${{recipient}}
"""


class _Log:
    """Standard error always (pipe(8) shows it when the mail is deferred); syslog
    (facility mail) unless switched off, because on exit 0 Postfix drops the output."""

    def __init__(self, use_syslog: bool) -> None:
        self.use_syslog = use_syslog
        if use_syslog:
            syslog.openlog(PROG, syslog.LOG_PID, syslog.LOG_MAIL)

    def __call__(self, message: str, warning: bool = False) -> None:
        warn(PROG, message)
        if self.use_syslog:
            syslog.syslog(syslog.LOG_WARNING if warning else syslog.LOG_INFO, message)


def _quarantine(directory: str, msg: Message, meta: dict[str, object]) -> str:
    """Save the message and its envelope as NAME.eml + NAME.json; return NAME.eml's path."""
    import json

    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    base = os.path.join(directory, f"{stamp}-{os.getpid()}-{os.urandom(4).hex()}")
    written: list[str] = []
    try:
        for suffix in (".eml", ".json"):
            path = base + suffix
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            written.append(path)
            try:
                if suffix == ".eml":
                    copy_range(msg, fd)
                else:
                    write_all(fd, json.dumps(meta).encode() + b"\n")
                os.fsync(fd)  # a quarantined virus is the only copy left: make it durable
            finally:
                os.close(fd)
    except OSError:
        for path in written:
            try:  # noqa: SIM105 - no contextlib: start-up cost
                os.unlink(path)
            except OSError:
                pass
        raise
    return base + ".eml"


def split_command(text: str) -> list[str]:
    """Split like a shell would; shlex (and its ``re``, ~6 ms) only when quoting is used."""
    if any(c in text for c in "'\"\\#"):
        import shlex

        return shlex.split(text)
    return text.split()


def _spawn(command: list[str], msg: Message) -> tuple[int, int]:
    """Start ``command`` (posix_spawn) with the message on descriptor 0, a pipe on 1 and 2."""
    import _signal  # type: ignore[import-not-found]  # C module: `signal` builds enums (~3 ms)

    read_end, write_end = os.pipe()
    actions = [(os.POSIX_SPAWN_DUP2, write_end, 1), (os.POSIX_SPAWN_DUP2, write_end, 2),
               (os.POSIX_SPAWN_DUP2, msg.fd, 0)]
    os.lseek(msg.fd, msg.offset, os.SEEK_SET)
    # Python ignores SIGPIPE and SIGXFSZ; sendmail gets the defaults, as with subprocess.
    defaults = [getattr(_signal, n) for n in ("SIGPIPE", "SIGXFSZ") if hasattr(_signal, n)]
    try:
        spawn = os.posix_spawn if "/" in command[0] else os.posix_spawnp
        pid = spawn(command[0], command, dict(os.environ), file_actions=actions,
                    setsigdef=defaults)
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return pid, read_end


def _kill(pid: int) -> None:
    """SIGKILL our own child, by its pid, and reap it."""
    os.kill(pid, 9)
    os.waitpid(pid, 0)


def _reinject(command: list[str], msg: Message, timeout: float) -> str | None:
    """Run sendmail with the message on stdin; None on success, else why it failed."""
    import select

    try:
        pid, out = _spawn(command, msg)
    except OSError as exc:
        return f"cannot run {command[0]}: {exc.strerror or exc}"
    said = bytearray()
    deadline = time.monotonic() + timeout
    late = f"{command[0]} did not finish within {timeout:g}s"
    poller = select.poll()
    poller.register(out, select.POLLIN)
    try:
        while True:  # read its output until it closes it (it exits), within the deadline
            left = deadline - time.monotonic()
            if left <= 0:
                _kill(pid)
                return late
            if poller.poll(int(left * 1000) + 1):
                data = os.read(out, 65536)
                if not data:
                    break
                said += data[: max(0, 4096 - len(said))]
        while not (done := os.waitpid(pid, os.WNOHANG))[0]:
            if time.monotonic() > deadline:
                _kill(pid)
                return late
            time.sleep(0.002)
    finally:
        os.close(out)
    code = os.waitstatus_to_exitcode(done[1])
    if code != 0:
        text = said.decode("utf-8", "replace").strip().replace("\n", " / ")[:300]
        return f"{command[0]} exited {code}" + (f": {text}" if text else "")
    return None


def run(argv: list[str]) -> int:
    try:
        opts, recipients = parse_options(
            argv,
            ("--bounce", "--no-syslog", "-h", "--help", "--version"),
            ("-f", "--install", "--socket", "--timeout", "--spool-dir", "--sendmail",
             "--sendmail-timeout", "--quarantine"),
        )
        if manual_asked(opts, PROG, HELP):
            return EX_OK
        timeout = scan_timeout(opts)
        sendmail_timeout = option_float(
            opts, "--sendmail-timeout",
            env_float("SCAND_SENDMAIL_TIMEOUT", DEFAULT_SENDMAIL_TIMEOUT),
        )
        sender = opts.get("-f")
        if not isinstance(sender, str):
            raise UsageError("no -f SENDER given")
        if not recipients:
            raise UsageError("no RECIPIENT given")
        on_infected = env_choice("SCAND_ON_INFECTED", ("discard", "bounce"))
        command = split_command(option_str(opts, "--sendmail", "SCAND_SENDMAIL",
                                           DEFAULT_SENDMAIL))
        if not command:
            raise UsageError("the sendmail command is empty")
    except (UsageError, ValueError) as exc:  # ValueError: unbalanced quotes (shlex)
        warn(PROG, f"temporary failure: {exc}")
        return EX_TEMPFAIL
    log = _Log("--no-syslog" not in opts and os.environ.get("SCAND_SYSLOG", "1") != "0")
    bounce = "--bounce" in opts or on_infected == "bounce"
    quarantine = option_str(opts, "--quarantine", "SCAND_QUARANTINE")
    envelope = f"from=<{sender}> to=<{'>,<'.join(recipients)}>"
    msg, verdict = stage_and_scan(opts, timeout)
    if isinstance(verdict, str):
        log(f"temporary failure: {verdict}", warning=True)
        return EX_TEMPFAIL
    if isinstance(verdict, Unchecked):
        log(f"temporary failure: {not_scanned(verdict)}", warning=True)
        return EX_TEMPFAIL
    if isinstance(verdict, Infected):
        if bounce:
            log(f"bounced: message contains {verdict.name}; {envelope}", warning=True)
            return EX_UNAVAILABLE
        if quarantine:
            meta: dict[str, object] = {
                "sender": sender, "recipients": recipients, "virus": verdict.name,
                "time": int(time.time()),
            }
            try:
                saved = _quarantine(quarantine, msg, meta)
            except OSError as exc:
                log(f"temporary failure: cannot quarantine ({verdict.name}): {exc}", warning=True)
                return EX_TEMPFAIL
            log(f"quarantined: message contains {verdict.name}; {envelope}; saved {saved}",
                warning=True)
        else:
            log(f"discarded: message contains {verdict.name}; {envelope}", warning=True)
        return EX_OK
    failure = _reinject([*command, "-f", sender, "--", *recipients], msg, sendmail_timeout)
    if failure is not None:
        log(f"temporary failure: reinjection failed: {failure}", warning=True)
        return EX_TEMPFAIL
    return EX_OK


def main(argv: list[str] | None = None) -> int:
    return guarded(run, PROG, sys.argv[1:] if argv is None else argv, EX_TEMPFAIL)


if __name__ == "__main__":
    sys.exit(main())
