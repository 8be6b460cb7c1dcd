"""A real Exim daemon on a loopback port, for the SMTP bomber and the Exim tests.

Debian's exim4-daemon-heavy, started as ``exim4 -C <config> -bdf`` (root keeps
its privileges with ``-C``), listening on 127.0.0.1 only, delivering every
accepted message into one Maildir. With ``av_scanner`` set, its DATA ACL asks
the scanner (``deny malware = *``): a virus or banned file is refused with a
5xx during the SMTP session, and a scanner that cannot answer makes the ACL
defer (4xx), so the sender retries. Stopped by its pid; ``stop`` returns the
CPU time of the daemon and every process it reaped (receivers, deliveries).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

EXIM = shutil.which("exim4", path="/usr/sbin:/usr/bin") or shutil.which("exim", path="/usr/sbin")


def exim_user() -> str:
    assert EXIM is not None
    done = subprocess.run([EXIM, "-C", "/dev/null", "-bP", "exim_user"], capture_output=True,
                          text=True, check=False)
    return done.stdout.split("=")[-1].strip() or "Debian-exim"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_text(work: Path, port: int, av_scanner: str | None, user: str) -> str:
    """The whole Exim configuration: accept everything, scan at DATA if ``av_scanner``."""
    scan = (f"av_scanner = {av_scanner}\n" if av_scanner else "")
    data_acl = ("  deny    malware = *\n"
                "          message = 5.7.1 message refused: it contains $malware_name\n"
                if av_scanner else "")
    return (
        "primary_hostname = scand.test\n"
        "qualify_domain = scand.test\n"
        f"spool_directory = {work}/spool\n"
        f"log_file_path = {work}/log/%slog\n"
        f"pid_file_path = {work}/exim.pid\n"
        f"daemon_smtp_ports = {port}\n"
        "local_interfaces = 127.0.0.1\n"
        "host_lookup =\n"
        "rfc1413_hosts =\n"
        "smtp_accept_max = 256\n"
        "smtp_accept_queue_per_connection = 0\n"
        "message_size_limit = 50M\n"
        "acl_smtp_rcpt = acl_rcpt\n"
        "acl_smtp_data = acl_data\n"
        + scan +
        "\nbegin acl\n\nacl_rcpt:\n  accept\n\nacl_data:\n" + data_acl + "  accept\n"
        "\nbegin routers\n\nstore:\n  driver = accept\n  transport = store\n"
        "\nbegin transports\n\nstore:\n  driver = appendfile\n"
        f"  directory = {work}/maildir\n  maildir_format\n  create_directory\n"
        f"  user = {user}\n  mode = 0600\n"
        "\nbegin retry\n\n*  *  F,10m,1s\n"
    )


@dataclass
class Exim:
    proc: subprocess.Popen[bytes]
    work: Path
    port: int
    config: Path

    def queue_count(self) -> int:
        assert EXIM is not None
        done = subprocess.run([EXIM, "-C", str(self.config), "-bpc"], capture_output=True,
                              text=True, timeout=60, check=False)
        return int(done.stdout.strip() or "0")

    def delivered(self) -> list[Path]:
        box = self.work / "maildir"
        return sorted(p for sub in ("new", "cur") for p in (box / sub).glob("*") if p.is_file())

    def wait_queue_empty(self, limit: float) -> float:
        """Seconds until nothing is left in the queue (raises after ``limit``)."""
        t0 = time.monotonic()
        while self.queue_count():
            if time.monotonic() - t0 > limit:
                raise TimeoutError(f"exim queue not empty after {limit:g}s")
            time.sleep(0.1)
        return time.monotonic() - t0

    def stop(self) -> float:
        """SIGTERM the daemon (by pid), reap it; CPU seconds of it and all it reaped."""
        if self.proc.returncode is not None:
            return 0.0
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                return usage.ru_utime + usage.ru_stime
            if time.monotonic() > deadline:
                self.proc.kill()
            time.sleep(0.05)


def start(work: Path, av_scanner: str | None) -> Exim:
    """Start Exim in ``work`` (spool, log, maildir inside); wait until it answers."""
    assert EXIM is not None, "exim4-daemon-heavy is not installed"
    user = exim_user()
    entry = pwd.getpwnam(user)
    for d in ("spool", "log", "maildir"):
        (work / d).mkdir(parents=True, exist_ok=True)
        os.chown(work / d, entry.pw_uid, entry.pw_gid)
    port = free_port()
    config = work / "exim.conf"
    config.write_text(config_text(work, port, av_scanner, user))
    proc = subprocess.Popen([EXIM, "-C", str(config), "-bdf", "-q2s"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(work / "exim.stderr", "wb"))  # noqa: SIM115
    exim = Exim(proc, work, port, config)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exim exited {proc.returncode}: "
                               f"{(work / 'exim.stderr').read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(64).startswith(b"220"):
                    return exim
        except OSError:
            time.sleep(0.1)
    exim.stop()
    raise RuntimeError("exim did not greet within 30 s")
