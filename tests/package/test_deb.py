"""The Debian package, built by ./scripts/build-deb and installed with apt into a
clean Debian 12 root (debootstrap --variant=minbase, cached: tests/package/chroot.py).

One test walks the package's life as an admin would: apt installs it (pulling
its Depends from the archive), the scand user exists, the conffile is there;
the unit's own ExecStart runs as the unit would run it (root, with the unit's
CapabilityBoundingSet and NoNewPrivileges, via setpriv; no systemd in a chroot),
drops to scand, and a packaged client, run as a user of group scand, gets EICAR
found through /var/run/sophie; then remove keeps the conffile, purge leaves
nothing of the package (dpkg -L, /etc/scand, /usr/lib/scand*).

The build is cached by source hash (.cache/deb/), the clean root as a tarball
(.cache/chroot/): the first run takes minutes, later ones well under one.
"""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import EICAR, SophieClient
from tests.package import chroot

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, mounts)"),
    pytest.mark.skipif(shutil.which("debootstrap") is None or shutil.which("dh_virtualenv") is None,
                       reason="needs debootstrap and dh-virtualenv (scripts/test installs them)"),
]
EICAR_MD5 = "44d88612fea8a8f36de82e1278abb02f"  # ClamAV's own test signature, as freshclam has it


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    proc = subprocess.run([str(chroot.REPO / "scripts" / "build-deb"), str(out)],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(proc.stdout.strip().splitlines()[-1])


def unit(root: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(root / "lib/systemd/system/scand.service")
    return parser["Service"]


def setpriv_for(service: configparser.SectionProxy) -> str:
    """The unit's privileges as setpriv options: its bounding set, no new privileges."""
    caps = [c.removeprefix("CAP_").lower() for c in service["CapabilityBoundingSet"].split()]
    assert service["NoNewPrivileges"] == "yes"
    return f"setpriv --bounding-set -all,{','.join('+' + c for c in caps)} --no-new-privs --"


def wait_ready(path: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until the daemon answers PING (the socket is bound before the workers start)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"scand exited {proc.returncode}: {proc.stderr.read()!r}"
                                 if proc.stderr else f"scand exited {proc.returncode}")
        assert time.monotonic() < deadline, f"scand not ready on {path}"
        try:
            client = SophieClient(str(path), timeout=5)
            try:
                if client.ask(b"PING\n") == b"PONG\n":
                    return
            finally:
                client.close()
        except OSError:
            pass
        time.sleep(0.2)


def status(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(field)


def test_install_run_scan_purge(deb: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    root = chroot.unpack(tmp_path)
    try:
        shutil.copy(deb, root / "tmp" / deb.name)
        chroot.run(root, f"apt-get install -y -qq --no-install-recommends /tmp/{deb.name}")
        installed = time.monotonic()
        user = chroot.run(root, "getent passwd scand").stdout.split(":")
        assert user[6].strip() == "/usr/sbin/nologin"
        assert (root / "etc/scand/scand.toml").read_text().count('signatures = "/var/lib/clamav"')
        files = chroot.run(root, "dpkg -L scand").stdout.split()
        for path in ("/usr/bin/scand", "/usr/bin/scand-scan", "/usr/share/man/man8/scand.8.gz",
                     "/usr/share/man/man5/scand.toml.5.gz", "/lib/systemd/system/scand.service"):
            assert path in files
        chroot.run(root, "scand --version && scand-scan --version && man -w scand >/dev/null "
                         "|| true")

        # What freshclam would have put there: a database with ClamAV's EICAR signature.
        (root / "var/lib/clamav").mkdir(parents=True, exist_ok=True)
        (root / "var/lib/clamav/test.hdb").write_text(f"{EICAR_MD5}:68:Eicar-Test-Signature\n")
        # What systemd does before ExecStart: RuntimeDirectory=scand, and the tmpfiles link.
        service = unit(root)
        assert service["RuntimeDirectory"] == "scand" and "User" not in service
        (root / "run/scand").mkdir(mode=0o755)
        tmpfiles = (root / "usr/lib/tmpfiles.d/scand.conf").read_text().split("\n")
        link = next(line.split() for line in tmpfiles if line.startswith("L "))
        if not os.path.lexists(root / link[1].lstrip("/")):  # postinst made it if it could
            os.symlink(link[6], root / link[1].lstrip("/"))
        assert os.readlink(root / "run/sophie") == "/run/scand/sophie"
        assert os.readlink(root / "var/run") in ("/run", "../run")
        (root / "var/tmp/eicar.com").write_bytes(EICAR)
        (root / "var/tmp/clean.txt").write_bytes(b"nothing to see\n")

        command = f"exec {setpriv_for(service)} {service['ExecStart']}"
        daemon = subprocess.Popen(chroot.shell(root, command), env=chroot.ENV,
                                  stderr=subprocess.PIPE)
        try:
            wait_ready(root / "run/scand/sophie", daemon)
            sock = (root / "run/scand/sophie").stat()
            scand_uid = int(user[2])
            assert (sock.st_uid, oct(sock.st_mode & 0o777)) == (scand_uid, "0o660")
            assert status(daemon.pid, "Uid").split()[0] == str(scand_uid)
            assert status(daemon.pid, "CapEff") == "0000000000000000"
            # A packaged client, as a user of group scand, through /var/run/sophie.
            as_client = "setpriv --reuid nobody --regid scand --clear-groups --"
            scan = chroot.run(root, f"{as_client} scand-scan /var/tmp/eicar.com /var/tmp/clean.txt",
                              check=False)
            assert scan.returncode == 1, scan
            assert "/var/tmp/eicar.com: Eicar-Test-Signature.UNOFFICIAL FOUND" in scan.stdout
            assert "/var/tmp/clean.txt: OK" in scan.stdout
            stream = chroot.run(root, f"{as_client} scand-scan --stream - < /var/tmp/eicar.com",
                                check=False)
            assert (stream.returncode, stream.stdout.strip()) == (
                1, "stream: Eicar-Test-Signature.UNOFFICIAL FOUND"), stream
            # Not in group scand: refused by the socket's mode.
            other = chroot.run(root, "setpriv --reuid nobody --regid nogroup --clear-groups -- "
                                     "scand-scan /var/tmp/clean.txt", check=False)
            assert other.returncode == 2 and "ERROR" in other.stdout, other
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                assert daemon.wait(timeout=60) == 0
            finally:
                if daemon.poll() is None:
                    daemon.kill()
                    daemon.wait()
        ran = time.monotonic()

        chroot.run(root, "apt-get remove -y -qq scand")
        assert (root / "etc/scand/scand.toml").exists(), "remove keeps the conffile"
        chroot.run(root, "apt-get purge -y -qq scand")
        gone = chroot.run(root, "dpkg -L scand", check=False)
        assert gone.returncode != 0
        for path in ("etc/scand", "usr/lib/scand", "usr/lib/scand-clients", "usr/bin/scand",
                     "usr/bin/scand-scan", "usr/lib/sysusers.d/scand.conf", "run/sophie"):
            assert not os.path.lexists(root / path), path
        print(f"\npackage test: install {installed - started:.1f} s, run and scan "
              f"{ran - installed:.1f} s, remove and purge {time.monotonic() - ran:.1f} s")
    finally:
        chroot.remove(root)
