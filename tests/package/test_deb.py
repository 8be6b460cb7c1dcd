"""The Debian package, built by ./scripts/build-deb and installed with apt into a
clean Debian 12 root (debootstrap --variant=minbase, cached: tests/package/chroot.py).

The tests below walk one root through the package's life, in order, as an
admin would: apt installs the package (pulling its Depends from the archive)
next to a scand user made by hand as docs/CLIENTS.md says; the document's shell
blocks run as written, as root; the unit's own ExecStart runs as the unit runs
it (root, with the unit's CapabilityBoundingSet and NoNewPrivileges, via
setpriv: no systemd in a chroot) with the Postfix milter recipe added, binds
the milter socket for group postfix, drops to scand with its groups from
/etc/group, and a packaged client, as a user of group scand, gets EICAR found
through /var/run/sophie; the daemontools run file starts the same daemon; then
remove keeps the conffile and purge leaves nothing of the package.

The build is cached by source hash (.cache/deb/), the clean root as a tarball
(.cache/chroot/): the first run takes minutes, later ones about a minute.
"""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EICAR, wait_for_ping
from tests.package import chroot
from tests.package.docblocks import block

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, mounts)"),
    pytest.mark.skipif(shutil.which("debootstrap") is None or shutil.which("dh_virtualenv") is None,
                       reason="needs debootstrap and dh-virtualenv (scripts/test installs them)"),
]
EICAR_MD5 = "44d88612fea8a8f36de82e1278abb02f"  # ClamAV's EICAR signature, as freshclam has it
FOUND = "Eicar-Test-Signature.UNOFFICIAL FOUND"  # libclamav marks a database not signed by ClamAV
# What the MTA packages (and daemontools-run) would have made on a real host.
STAND_INS = ("groupadd --system postfix && groupadd --system nofiles && "
             "useradd --system -g nofiles -d /var/qmail -s /usr/sbin/nologin qmaild && "
             "groupadd --system Debian-exim && mkdir -p /etc/service")
# The document's shell blocks this test runs as written, in the order an admin would.
DOC_SHELL = ("layout:systemd", "layout:daemontools", "postfix:milter-dir", "postfix:pipe-user",
             "spool:dir", "exim:group")
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def deb() -> Path:
    out = Path(tempfile.mkdtemp(prefix="scand-deb-"))
    started = time.monotonic()
    proc = subprocess.run([str(chroot.REPO / "scripts" / "build-deb"), str(out)],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    TIMES["build (or cache)"] = time.monotonic() - started
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def root(deb: Path) -> Iterator[Path]:
    """A fresh clean root: the stand-ins, the doc's scand user, then apt install."""
    started = time.monotonic()
    # tmpfs when there is room: unpacking and removing 400 MB is much faster there.
    scratch = "/dev/shm" if shutil.disk_usage("/dev/shm").free > 4 << 30 else None
    where = Path(tempfile.mkdtemp(prefix="scand-root-", dir=scratch))
    tree = chroot.unpack(where)
    try:
        chroot.run(tree, STAND_INS)
        chroot.run(tree, block("layout:user"))
        shutil.copy(deb, tree / "tmp" / deb.name)
        chroot.run(tree, f"apt-get install -y -qq --no-install-recommends /tmp/{deb.name}")
        TIMES["unpack and apt install"] = time.monotonic() - started
        yield tree
    finally:
        chroot.remove(tree)
        shutil.rmtree(where, ignore_errors=True)
        print("\npackage test times: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMES.items()))


def unit(tree: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(tree / "lib/systemd/system/scand.service")
    return parser["Service"]


def setpriv_for(service: configparser.SectionProxy) -> str:
    """The unit's privileges as setpriv options: its bounding set, no new privileges."""
    caps = [c.removeprefix("CAP_").lower() for c in service["CapabilityBoundingSet"].split()]
    assert service["NoNewPrivileges"] == "yes"
    return f"setpriv --bounding-set -all,{','.join('+' + c for c in caps)} --no-new-privs --"


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def status(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(field)


def ids(tree: Path, name: str) -> tuple[int, int]:
    """uid and gid of a user, or (-1, gid) of a group, in the root's own files."""
    for line in (tree / "etc/passwd").read_text().splitlines():
        if line.split(":")[0] == name:
            return int(line.split(":")[2]), int(line.split(":")[3])
    for line in (tree / "etc/group").read_text().splitlines():
        if line.split(":")[0] == name:
            return -1, int(line.split(":")[2])
    raise AssertionError(name)


@pytest.mark.skipif(shutil.which("lintian") is None, reason="no lintian (scripts/test installs it)")
def test_lintian_reports_no_error(deb: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(["lintian", "--allow-root", str(deb)], capture_output=True, text=True,
                          timeout=600, check=False)
    tags = [line for line in done.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert not [t for t in tags if t.startswith("E:")], done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    TIMES["lintian"] = time.monotonic() - started
    print(f"\nlintian: {len(tags)} warnings, no error")


def test_apt_installs_the_package(root: Path) -> None:
    user = chroot.run(root, "getent passwd scand").stdout.strip().split(":")
    assert user[6] == "/usr/sbin/nologin"
    conffile = (root / "etc/scand/scand.toml").read_text()
    assert 'name = "clamav"' in conffile and 'signatures = "/var/lib/clamav"' in conffile
    assert chroot.run(root, "dpkg-query -W -f '${Conffiles}' scand").stdout.split()[0] == \
        "/etc/scand/scand.toml"
    files = chroot.run(root, "dpkg -L scand").stdout.split()
    for path in ("/usr/bin/scand", "/usr/bin/scand-scan", "/usr/bin/scand-queue",
                 "/usr/bin/scand-qfilter", "/usr/bin/scand-pipe", "/usr/lib/sysusers.d/scand.conf",
                 "/usr/share/man/man8/scand.8.gz", "/usr/share/man/man5/scand.toml.5.gz",
                 "/usr/share/man/man1/scand-scan.1.gz", "/lib/systemd/system/scand.service"):
        assert path in files, path
    version = chroot.run(root, "scand --version && scand-scan --version").stdout
    assert version.count("0.1.0") == 2, version
    # The clients run with the system's python3, byte-compiled at install.
    assert (root / "usr/bin/scand-queue").read_text().startswith("#!/usr/bin/python3 -IS\n")
    assert any((root / "usr/lib/scand-clients/__pycache__").glob("scand_queue.*.pyc"))


def test_the_documents_shell_blocks_as_written(root: Path) -> None:
    src = root / "tmp/scand-src"  # "from a scand checkout": the examples the blocks install
    shutil.copytree(chroot.REPO / "examples", src / "examples")
    for marker in DOC_SHELL:
        chroot.run(root, f"cd /tmp/scand-src && set -e\n{block(marker)}")
    scand_gid = ids(root, "scand")[1]
    milter_dir = (root / "var/spool/postfix/scand").stat()
    assert (milter_dir.st_uid, milter_dir.st_gid, stat.S_IMODE(milter_dir.st_mode)) == (
        0, ids(root, "postfix")[1], 0o750)
    spool = (root / "var/spool/scand-qmail").stat()
    assert (spool.st_uid, spool.st_gid, stat.S_IMODE(spool.st_mode)) == (
        ids(root, "qmaild")[0], scand_gid, 0o2750)
    assert ids(root, "scand-filter")[1] == scand_gid
    assert "Debian-exim" in chroot.run(root, "id -nG scand").stdout.split()
    assert (root / "etc/systemd/system/scand.service").exists()
    assert (root / "etc/tmpfiles.d/scand.conf").exists()
    assert os.readlink(root / "etc/service/scand") == "/etc/scand/service"
    assert os.access(root / "etc/scand/service/run", os.X_OK)
    assert (root / "var/log/scand").stat().st_uid == ids(root, "scandlog")[0]


def test_the_units_execstart_runs_the_milter_recipe_and_scans(root: Path) -> None:
    started = time.monotonic()
    # What freshclam would have put there: a database with ClamAV's EICAR signature.
    (root / "var/lib/clamav").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/clamav/test.hdb").write_text(f"{EICAR_MD5}:68:Eicar-Test-Signature\n")
    # The Postfix milter recipe, added to the packaged file as the document says.
    with open(root / "etc/scand/scand.toml", "a") as conf:
        conf.write("\n" + block("postfix:milter-toml"))
    # What systemd does before ExecStart: RuntimeDirectory=scand (root's, 0755), tmpfiles.
    service = unit(root)
    assert service["RuntimeDirectory"] == "scand" and "User" not in service
    (root / "run/scand").mkdir(mode=0o755)
    if not os.path.lexists(root / "run/sophie"):  # postinst made it if it could
        link = (root / "usr/lib/tmpfiles.d/scand.conf").read_text().split("\nL ")[1].split()
        os.symlink(link[5], root / link[0].lstrip("/"))
    assert os.readlink(root / "run/sophie") == "/run/scand/sophie"
    (root / "var/tmp/eicar.com").write_bytes(EICAR)
    (root / "var/tmp/clean.txt").write_bytes(b"nothing to see\n")

    command = f"exec {setpriv_for(service)} {service['ExecStart']}"
    log = root / "tmp/unit.log"  # the journal's part
    with open(log, "wb") as out:
        daemon = subprocess.Popen(chroot.shell(root, command), env=chroot.ENV, stderr=out)
    try:
        wait_for_ping(str(root / "run/scand/sophie"), daemon, log, 60)
        scand_uid, scand_gid = ids(root, "scand")
        sock = (root / "run/scand/sophie").stat()
        assert (sock.st_uid, sock.st_gid, stat.S_IMODE(sock.st_mode)) == (
            scand_uid, scand_gid, 0o660)
        milter = (root / "var/spool/postfix/scand/milter").stat()
        assert (milter.st_uid, milter.st_gid, stat.S_IMODE(milter.st_mode)) == (
            scand_uid, ids(root, "postfix")[1], 0o660)
        assert status(daemon.pid, "Uid").split() == [str(scand_uid)] * 4
        assert status(daemon.pid, "CapEff") == "0000000000000000"
        groups = {int(g) for g in status(daemon.pid, "Groups").split()}
        assert groups == {scand_gid, ids(root, "Debian-exim")[1]}  # usermod -a -G, no root's
        # A packaged client, as a user of group scand, through /var/run/sophie.
        as_client = "setpriv --reuid nobody --regid scand --clear-groups --"
        scan = chroot.run(root, f"{as_client} scand-scan /var/tmp/eicar.com /var/tmp/clean.txt",
                          check=False)
        assert scan.returncode == 1, scan
        assert scan.stdout.splitlines() == [f"/var/tmp/eicar.com: {FOUND}",
                                            "/var/tmp/clean.txt: OK"]
        stream = chroot.run(root, f"{as_client} scand-scan --stream - < /var/tmp/eicar.com",
                            check=False)
        assert (stream.returncode, stream.stdout.strip()) == (1, f"stream: {FOUND}"), stream
        # Not in group scand: the socket's mode refuses it, and the client says so.
        other = chroot.run(root, "setpriv --reuid nobody --regid nogroup --clear-groups -- "
                                 "scand-scan /var/tmp/clean.txt", check=False)
        assert other.returncode == 2 and "ERROR" in other.stdout, other
    finally:
        stop(daemon)
    TIMES["unit's ExecStart, scans, stop"] = time.monotonic() - started


def test_the_daemontools_run_file_starts_the_same_daemon(root: Path) -> None:
    """/etc/service/scand/run as installed by the document, as root (svscan's part)."""
    shutil.rmtree(root / "run/scand")  # as after a reboot: the run file makes it
    log = root / "tmp/run.log"  # multilog's part: the run file's stdout and stderr
    with open(log, "wb") as out:
        daemon = subprocess.Popen(chroot.shell(root, "cd /etc/service/scand && exec ./run"),
                                  env=chroot.ENV, stdout=out)
    try:
        wait_for_ping(str(root / "run/scand/sophie"), daemon, log, 60)  # /run/sophie: the root's
        assert os.readlink(root / "run/sophie") == "/run/scand/sophie"
        assert status(daemon.pid, "Uid").split()[0] == str(ids(root, "scand")[0])
        assert (root / "run/scand").stat().st_uid == 0
        scan = chroot.run(root, "setpriv --reuid scand-filter --regid scand --init-groups -- "
                                "scand-scan /var/tmp/eicar.com", check=False)
        assert (scan.returncode, scan.stdout.strip()) == (1, f"/var/tmp/eicar.com: {FOUND}")
    finally:
        stop(daemon)


def test_remove_keeps_the_conffile_and_purge_leaves_nothing(root: Path) -> None:
    started = time.monotonic()
    chroot.run(root, "apt-get remove -y -qq scand")
    assert (root / "etc/scand/scand.toml").exists(), "remove keeps the conffile"
    assert not (root / "usr/bin/scand").exists()
    chroot.run(root, "apt-get purge -y -qq scand")
    assert chroot.run(root, "dpkg -L scand", check=False).returncode != 0
    # What the document's blocks made by hand (/etc/service/scand...) is the admin's;
    # everything the package made is gone.
    for path in ("etc/scand", "usr/lib/scand", "usr/lib/scand-clients", "usr/bin/scand",
                 "usr/bin/scand-scan", "usr/lib/sysusers.d/scand.conf",
                 "lib/systemd/system/scand.service", "usr/share/doc/scand"):
        assert not os.path.lexists(root / path), path
    TIMES["remove and purge"] = time.monotonic() - started
