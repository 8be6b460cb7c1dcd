"""A real Postfix (Debian 12's 3.7 package) for tests, without installing it.

Debian's ``postfix`` and ``exim4-daemon-heavy`` conflict as packages, and the
Exim tests need Exim installed. So ``scripts/test`` fetches the postfix .deb
(``apt-get download``) and unpacks it with ``dpkg-deb -x`` into
``.cache/postfix`` (or ``$SCAND_POSTFIX_ROOT``); this module runs that tree's
``master`` in the foreground (``master -d``, as root) with a configuration,
queue and data directory of its own, an SMTP listener on a free loopback
port, and a ``deliver`` pipe(8) transport that writes every message it
delivers to ``out/<queue id>``. Nothing is chrooted; unprivileged Postfix
processes run as ``nobody`` (mail_owner), the setgid group is ``mail``.

Start it with :func:`start_postfix`, stop it with :meth:`Postfix.stop`
(SIGTERM to master's pid, then any leftover child by pid).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import smtplib
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
POSTFIX_ROOT = Path(os.environ.get("SCAND_POSTFIX_ROOT", REPO / ".cache" / "postfix"))
# Unprivileged accounts every Debian has; Postfix wants the setgid group apart from
# mail_owner's group, and default_privs apart from mail_owner.
MAIL_OWNER, SETGID_GROUP, DEFAULT_PRIVS = "nobody", "mail", "daemon"
QUEUE_DIRS = ("incoming", "active", "bounce", "defer", "deferred", "flush", "hold", "corrupt",
              "saved", "trace", "private", "maildrop", "public", "pid")


def available() -> str | None:
    """None when Postfix can run here, else why not (for pytest.skip)."""
    if os.geteuid() != 0:
        return "Postfix's master must start as root"
    if not (POSTFIX_ROOT / "usr/lib/postfix/sbin/master").exists():
        return f"no unpacked Postfix in {POSTFIX_ROOT} (scripts/test unpacks it)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


DELIVER = """#!/bin/sh
# pipe(8) delivery for the tests: the message as Postfix hands it, one file per queue id.
umask 022
cat > "{out}/.$1" && mv "{out}/.$1" "{out}/$1"
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
command_directory = {root}/usr/sbin
daemon_directory = {root}/usr/lib/postfix/sbin
meta_directory = {root}/etc/postfix
shlib_directory = {root}/usr/lib/postfix
mail_owner = {owner}
setgid_group = {group}
default_privs = {privs}
import_environment = MAIL_CONFIG MAIL_DEBUG LANG TZ LD_LIBRARY_PATH={root}/usr/lib/postfix
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
myhostname = mx.scand.test
mydomain = scand.test
mydestination =
mynetworks = 127.0.0.0/8
relay_domains = example.net
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtputf8_enable = no
biff = no
alias_maps =
alias_database =
local_recipient_maps =
default_transport = deliver
relay_transport = deliver
local_transport = deliver
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
message_size_limit = 20480000
{extra}
"""

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
{smtpd_options}pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
deliver   unix  -       n       n       -       -       pipe
  flags= user={privs} argv={base}/deliver ${{queue_id}}
{extra}
"""


@dataclass
class Postfix:
    base: Path
    port: int
    proc: subprocess.Popen[bytes]
    conf: Path
    installed: bool = False
    children: set[int] = field(default_factory=set)

    def command(self, *argv: str) -> subprocess.CompletedProcess[bytes]:
        """Run a Postfix command (``postqueue -f``...) as the admin would, as root."""
        if self.installed:  # inside master's mount namespace, where Postfix is "installed"
            cmd = ["nsenter", "--target", str(self.proc.pid), "--mount", "--", *argv]
        else:
            cmd = [str(POSTFIX_ROOT) + argv[0], "-c", str(self.conf), *argv[1:]]
        return subprocess.run(cmd, env=_env(), capture_output=True, timeout=60, check=False)

    @property
    def out(self) -> Path:
        return self.base / "out"

    def smtp(self, timeout: float = 30.0) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.scand.test",
                            timeout=timeout)

    def delivered(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in self.out.iterdir() if not p.name.startswith(".")}

    def wait_delivered(self, count: int, timeout: float = 30.0) -> dict[str, bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.delivered()
            if len(got) >= count:
                return got
            time.sleep(0.1)
        raise AssertionError(f"{len(self.delivered())} delivered, wanted {count}:\n{self.log()}")

    def queued(self) -> list[str]:
        """Queue files still in Postfix's queues (incoming, active, deferred, hold)."""
        found = []
        for sub in ("incoming", "active", "deferred", "hold", "maildrop"):
            for _dirpath, _dirs, files in os.walk(self.base / "queue" / sub):
                found += files
        return found

    def reload(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def log(self) -> str:
        try:
            return (self.base / "maillog").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def track_children(self) -> None:
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self.children.add(child.pid)
        except psutil.Error:
            pass

    def stop(self) -> None:
        self.track_children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in self.children:
            try:
                p = psutil.Process(pid)
                p.kill()
                p.wait(5)
            except psutil.Error:
                pass


def _env() -> dict[str, str]:
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LD_LIBRARY_PATH": str(POSTFIX_ROOT / "usr/lib/postfix")}


def _installed_script(base: Path) -> str:
    """Shell lines that make the unpacked Postfix look installed, in a private mount
    namespace only: read-only overlays put its /usr/sbin/sendmail, /usr/lib/postfix
    and our /etc/postfix over the host's (Exim's sendmail stays the host's)."""
    return (
        f"mount -t overlay scand-pf-usr -o lowerdir={base}/usr:{POSTFIX_ROOT}/usr:/usr /usr && "
        f"mount -t overlay scand-pf-etc -o lowerdir={base}/etc:/etc /etc && "
        "exec /usr/lib/postfix/sbin/master -d"
    )


def _setgid_tools(gid: int) -> None:
    """postdrop and postqueue setgid to setgid_group, as Debian's postinst makes them."""
    for name in ("postdrop", "postqueue"):
        tool = POSTFIX_ROOT / "usr/sbin" / name
        if tool.stat().st_gid != gid or not tool.stat().st_mode & 0o2000:
            os.chown(tool, 0, gid)
            tool.chmod(0o2555)


def start_postfix(base: Path, main_extra: str = "", master_extra: str = "",
                  smtpd_options: str = "", installed: bool = False,
                  timeout: float = 30.0, attempts: int = 3) -> Postfix:
    """Start Postfix (see :func:`_start_once`); retried when its logger never comes up.

    Seen once in ~25 starts on the shared machine: postlogd never created the
    maillog file and then blocked sending its own complaint to itself, and with
    it every process that logs (smtpd hung mid-session). A start only counts once
    master's "daemon started" line is in the maillog file.
    """
    for attempt in range(attempts):
        try:
            return _start_once(base, main_extra, master_extra, smtpd_options, installed,
                               timeout)
        except LoggerStuck:
            if attempt == attempts - 1:
                raise
            shutil.rmtree(base / "queue", ignore_errors=True)
    raise AssertionError("unreachable")


class LoggerStuck(RuntimeError):
    """postlogd never wrote master's first line to the maillog file."""


def _start_once(base: Path, main_extra: str, master_extra: str, smtpd_options: str,
                installed: bool, timeout: float) -> Postfix:
    """Write a configuration under ``base`` and start master on a free loopback port.

    ``installed``: run master in a private mount namespace where the package looks
    installed (/etc/postfix, /usr/sbin/sendmail, /usr/lib/postfix), so recipes that
    reinject with ``sendmail`` work exactly as documented; files placed under
    ``base/usr`` (e.g. ``usr/local/bin/scand-pipe``) appear there too.
    """
    uid = pwd.getpwnam(MAIL_OWNER).pw_uid
    gid = grp.getgrnam(SETGID_GROUP).gr_gid
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    conf = base / "etc/postfix" if installed else base / "conf"
    queue, data, out = (base / d for d in ("queue", "data", "out"))
    for d in (conf, queue, data, out):
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o755)
    if installed:
        (base / "usr").mkdir(exist_ok=True)
        _setgid_tools(gid)
    os.chown(data, uid, gid)
    os.chown(out, pwd.getpwnam(DEFAULT_PRIVS).pw_uid, -1)  # the deliver pipe runs as it
    for sub in QUEUE_DIRS:
        d = queue / sub
        d.mkdir(exist_ok=True)
        if sub == "pid":
            continue
        os.chown(d, uid, gid if sub in ("public", "maildrop") else -1)
        d.chmod({"public": 0o710, "maildrop": 0o730}.get(sub, 0o700))
    deliver = base / "deliver"
    deliver.write_text(DELIVER.format(out=out))
    deliver.chmod(0o755)
    port = free_port()
    root = "" if installed else str(POSTFIX_ROOT)
    (conf / "main.cf").write_text(MAIN_CF.format(
        queue=queue, data=data, root=root, owner=MAIL_OWNER, group=SETGID_GROUP,
        base=base, privs=DEFAULT_PRIVS, extra=main_extra))
    (conf / "master.cf").write_text(MASTER_CF.format(
        port=port, privs=DEFAULT_PRIVS, base=base, extra=master_extra,
        smtpd_options=smtpd_options))
    (conf / "dynamicmaps.cf").write_text("")
    if installed:
        cmd = ["unshare", "--mount", "--propagation", "private", "--",
               "sh", "-c", _installed_script(base)]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    else:
        cmd = [str(POSTFIX_ROOT / "usr/lib/postfix/sbin/master"), "-d", "-c", str(conf)]
        env = {**_env(), "MAIL_CONFIG": str(conf)}
    with open(base / "master.out", "wb") as master_out:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=master_out,
                                stderr=subprocess.STDOUT)
    pf = Postfix(base, port, proc, conf, installed)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"postfix master exited {proc.returncode}:\n"
                               f"{(base / 'master.out').read_text()}\n{pf.log()}")
        if "daemon started" in pf.log():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    if s.recv(100).startswith(b"220"):
                        return pf
            except OSError:
                pass
        elif time.monotonic() > deadline - timeout + 10:
            pf.stop()
            raise LoggerStuck(f"no maillog from postfix in {base}")
        time.sleep(0.1)
    pf.stop()
    raise RuntimeError(f"postfix did not answer on port {port}:\n{pf.log()}")
