"""A clean Debian 12 root for the package test, cached as a tarball.

``debootstrap --variant=minbase bookworm`` takes a minute or two and the
network, so it runs once: the tree (with apt's lists and the .debs of the
package's dependencies already downloaded, so installing needs no network
afterwards) is kept as ``.cache/chroot/bookworm-minbase.tar`` (or
``$SCAND_CHROOT_TAR``), the way ``scripts/_env.sh`` keeps Postfix unpacked
in ``.cache/postfix``. Each test unpacks a fresh copy (a few seconds).

Commands run inside with :func:`run`: a private mount namespace (``unshare
-m``) with ``/proc`` mounted, then ``chroot``; the mounts go away with the
namespace, so nothing is left to unmount if a test dies.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARBALL = Path(os.environ.get("SCAND_CHROOT_TAR",
                              REPO / ".cache" / "chroot" / "bookworm-minbase.tar"))
MIRROR = "http://deb.debian.org/debian"
# What the package depends on, downloaded into the cached root's apt archive.
PREFETCH = ("python3", "libclamav12", "systemd-standalone-sysusers")
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
       "LC_ALL": "C.UTF-8", "HOME": "/root"}


def shell(root: Path, command: str) -> list[str]:
    """argv that runs ``command`` (sh) inside ``root``, in a private mount namespace."""
    r = shlex.quote(str(root))
    inner = f"mount -t proc proc {r}/proc && exec chroot {r} /bin/sh -c {shlex.quote(command)}"
    return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", inner]


def run(root: Path, command: str, timeout: float = 600,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(shell(root, command), env=ENV, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"in chroot: {command!r} exited {proc.returncode}\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def ensure_tarball() -> Path:
    """The cached clean root; made once (debootstrap, then the dependencies fetched)."""
    if TARBALL.exists():
        return TARBALL
    TARBALL.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=TARBALL.parent) as tmp:
        root = Path(tmp) / "root"
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(root), MIRROR],
                       check=True, capture_output=True, timeout=1200)
        run(root, "apt-get -qq update && apt-get install -y -qq --download-only "
                  f"--no-install-recommends {' '.join(PREFETCH)}", timeout=1200)
        partial = TARBALL.with_suffix(".tar.part")
        subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True)
        partial.rename(TARBALL)
    return TARBALL


def unpack(dest: Path) -> Path:
    """A fresh copy of the clean root in ``dest``/root."""
    root = dest / "root"
    root.mkdir()
    subprocess.run(["tar", "-C", str(root), "-xf", str(ensure_tarball())], check=True)
    return root


def remove(root: Path) -> None:
    """Remove an unpacked root (nothing is mounted in it: see :func:`shell`)."""
    shutil.rmtree(root, ignore_errors=True)
