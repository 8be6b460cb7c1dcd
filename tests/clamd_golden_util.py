"""Golden clamd transcripts: the cases, the file tree they run on, and the replay.

Recorded from the real clamd 1.4.6 (Debian clamav-daemon) with
``python -m tests.clamd_golden_util record`` into ``tests/golden/clamd/``; the
test replays them against scand's clamd front. Bytes are stored as latin-1
strings; ``{root}`` stands for the tree, ``fd[N]`` for a descriptor number.

Each case is its own connection (clamd answers one command per connection
outside IDSESSION). A send item is bytes, or ``{"fd": "<file>"}``: one dummy
byte carrying that file's descriptor (SCM_RIGHTS), as clamdscan --fdpass sends.
"""

from __future__ import annotations

import array
import hashlib
import json
import os
import random
import re
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import EICAR

GOLDEN_DIR = Path(__file__).parent / "golden" / "clamd"
TRANSCRIPTS = GOLDEN_DIR / "clamd-1.4.6.json"
TESTFILES = Path("/usr/share/clamav-testfiles")
# The limits both daemons get: clamd.conf and scand's config say the same.
MAX_FILE = 4096
MAX_STREAM = 8192
CLAMD_CONF = f"MaxFileSize {MAX_FILE}\nStreamMaxLength {MAX_STREAM}\nMaxThreads 4\n"
SCAND_CONF = f"[server]\nmax_stream_bytes = {MAX_STREAM}\n[limits]\nmax_file_size = {MAX_FILE}\n"


def write_sigs(d: Path) -> None:
    """The same signature set for both: EICAR (.ndb) and clam.exe's MD5 (.hdb)."""
    clam = (TESTFILES / "clam.exe").read_bytes()
    (d / "test.hdb").write_text(f"{hashlib.md5(clam).hexdigest()}:{len(clam)}:ClamAV-Test-File\n")
    (d / "test.ndb").write_text(f"Eicar-Test-Signature:0:*:{EICAR.hex()}\n")


def make_tree(root: Path) -> None:
    """Files the cases name. Each directory holds at most one infected file, so the
    answer does not depend on directory order."""
    (root / "nested" / "one" / "two" / "three").mkdir(parents=True)
    (root / "nested" / "top.txt").write_text("top\n")
    (root / "nested" / "one" / "mid.txt").write_text("mid\n")
    (root / "nested" / "one" / "two" / "three" / "eicar.com").write_bytes(EICAR)
    (root / "cleandir" / "sub").mkdir(parents=True)
    (root / "cleandir" / "a.txt").write_text("a\n")
    (root / "cleandir" / "sub" / "b.txt").write_text("b\n")
    (root / "emptydir").mkdir()
    (root / "eicar.com").write_bytes(EICAR)
    (root / "clean.txt").write_text("nothing to see\n")
    (root / "empty.txt").write_bytes(b"")
    (root / "clam.exe").write_bytes((TESTFILES / "clam.exe").read_bytes())
    (root / "over.txt").write_bytes(b"o" * (MAX_FILE + 1000))
    (root / "over-eicar.com").write_bytes(EICAR + b"\n" + b"p" * (MAX_FILE + 1000))


def chunk(data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + data


def _s(b: bytes) -> str:
    return b.decode("latin-1")


E = _s(EICAR)
Z = "\0"
END = _s(chunk(b""))


def cases() -> list[dict[str, Any]]:
    """Name, what to send; ``compare`` is ``exact`` or ``lines`` (order-free: clamd
    itself answers pipelined requests in any order)."""
    c: list[dict[str, Any]] = []

    def add(name: str, *send: Any, compare: str = "exact") -> None:
        c.append({"name": name, "send": list(send), "compare": compare})

    add("ping-z", "zPING\0")
    add("ping-n", "nPING\n")
    add("ping-n-crlf", "nPING\r\n")
    add("ping-old", "PING")
    add("ping-old-crlf", "PING\r\n")
    add("one-command-per-connection", "nPING\nnVERSION\n")
    add("old-style-rest-ignored", "PING\nVERSION\n")
    for n, raw in enumerate(["nFOO\n", "nSCAN\n", "nPINGx\n", "nPING \n", "zPING\r\0", " PING\n",
                             "STATS\n", "INSTREAM\n", "nEND\n", "zVERSIONCOMMANDSX\0"]):
        add(f"unknown-{n}", raw)
    add("detstats", "nDETSTATS\n")
    add("reload", "zRELOAD\0")
    for cmd in ("SCAN", "CONTSCAN", "MULTISCAN", "ALLMATCHSCAN"):
        for target in ("eicar.com", "clean.txt", "empty.txt", "clam.exe", "missing",
                       "nested", "nested/", "cleandir", "emptydir"):
            add(f"{cmd.lower()}-{target}", f"z{cmd} {{root}}/{target}\0")
    add("scan-old-style", "SCAN {root}/eicar.com\n")
    add("contscan-old-style-crlf", "CONTSCAN {root}/nested\r\n")
    add("scan-n", "nSCAN {root}/clean.txt\n")
    add("scan-skips-byte", "nSCANX{root}/eicar.com\n")
    add("scan-empty-path", "nSCAN \n")
    add("instream-eicar-2-chunks", "zINSTREAM\0" + _s(chunk(EICAR[:20]) + chunk(EICAR[20:])) + END)
    add("instream-empty", "zINSTREAM\0" + END)
    add("instream-clean-n", "nINSTREAM\n" + _s(chunk(b"hello world\n")) + END)
    add("instream-clam", "zINSTREAM\0" + _s(chunk((TESTFILES / "clam.exe").read_bytes())) + END)
    add("instream-over-limit", "zINSTREAM\0" + _s(struct.pack("!I", MAX_STREAM + 1)))
    add("instream-over-limit-2nd-chunk",
        "zINSTREAM\0" + _s(chunk(b"a" * 8000)) + _s(struct.pack("!I", 500)))
    add("instream-then-ignored", "zINSTREAM\0" + END + "zPING\0")
    add("fildes-eicar", "zFILDES\0", {"fd": "eicar.com"})
    add("fildes-clean-n", "nFILDES\n", {"fd": "clean.txt"})
    add("fildes-old", "FILDES\n", {"fd": "eicar.com"})
    add("fildes-no-descriptor", "nFILDES\nx")
    add("session-one", "zIDSESSION\0zPING\0zEND\0")
    add("session-mixed-terminators", "nIDSESSION\nnPING\nzEND\0")
    add("session-pipeline",
        "zIDSESSION\0zPING\0zSCAN {root}/eicar.com\0nSCAN {root}/clean.txt\n"
        "zINSTREAM\0" + _s(chunk(EICAR)) + END + "zSCAN {root}/missing\0"
        "nINSTREAM\n" + _s(chunk(b"ok")) + END + "zFILDES\0", {"fd": "eicar.com"}, "zEND\0",
        compare="lines")
    add("session-contscan-invalid", "zIDSESSION\0zPING\0zCONTSCAN {root}\0")
    add("session-nested", "nIDSESSION\nnIDSESSION\n")
    add("session-unknown", "nIDSESSION\nnFOO\n")
    add("session-instream-over-limit",
        "zIDSESSION\0zINSTREAM\0" + _s(struct.pack("!I", MAX_STREAM + 1)))
    add("session-fildes-no-descriptor", "nIDSESSION\nnFILDES\nx")
    add("session-half-close", "zIDSESSION\0zPING\0nPING\n")
    return c


# Lines where scand answers ERROR on purpose (PROTOCOL.md §6): clamd says OK for a
# file it did not scan because it is over MaxFileSize (AlertExceedsMax no), and so
# misses the EICAR string at the start of over-eicar.com. The value is scand's reply.
DELIBERATE = {
    f"{cmd.lower()}-{target}": f"{{root}}/{target}: too-large ERROR\0"
    for cmd in ("SCAN", "CONTSCAN", "MULTISCAN", "ALLMATCHSCAN")
    for target in ("over.txt", "over-eicar.com")
}


def extra_cases() -> list[dict[str, Any]]:
    """The over-limit cases, recorded too, so the file shows what clamd said."""
    out = []
    for cmd in ("SCAN", "CONTSCAN", "MULTISCAN", "ALLMATCHSCAN"):
        for target in ("over.txt", "over-eicar.com"):
            out.append({"name": f"{cmd.lower()}-{target}",
                        "send": [f"z{cmd} {{root}}/{target}\0"], "compare": "exact"})
    out.append({"name": "fildes-over", "send": ["zFILDES\0", {"fd": "over-eicar.com"}],
                "compare": "exact"})
    return out


DELIBERATE["fildes-over"] = "fd[N]: too-large ERROR\0"


def packets(send: list[Any], root: str) -> list[bytes | tuple[str, str]]:
    out: list[bytes | tuple[str, str]] = []
    for item in send:
        if isinstance(item, dict):
            out.append(("fd", os.path.join(root, item["fd"])))
        else:
            out.append(item.replace("{root}", root).encode("latin-1"))
    return out


def split(parts: list[bytes | tuple[str, str]], how: str, rng: random.Random
          ) -> list[bytes | tuple[str, str]]:
    """``whole``: as given; ``bytes``: one byte per send; ``random``: random cuts."""
    if how == "whole":
        return parts
    out: list[bytes | tuple[str, str]] = []
    for p in parts:
        if isinstance(p, tuple):
            out.append(p)
            continue
        pos = 0
        while pos < len(p):
            n = 1 if how == "bytes" else rng.randint(1, 40)
            out.append(p[pos : pos + n])
            pos += n
    return out


def exchange(path: str, parts: list[bytes | tuple[str, str]], timeout: float = 10.0) -> bytes:
    """Send each part, half-close, read everything until the daemon closes."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(path)
    try:
        for p in parts:
            if isinstance(p, tuple):
                fd = os.open(p[1], os.O_RDONLY)
                try:
                    s.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                        array.array("i", [fd]))])
                finally:
                    os.close(fd)
            else:
                s.sendall(p)
            if len(parts) < 50:
                time.sleep(0.005)  # separate packets, as real clients send them
        s.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass
    out = b""
    while True:
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        out += data
    s.close()
    return out


def normalize(reply: bytes, root: str) -> str:
    text = reply.decode("latin-1").replace(root, "{root}")
    return re.sub(r"fd\[\d+\]", "fd[N]", text)


def reply_lines(text: str) -> list[str]:
    """Replies split after each NUL or LF, sorted (for order-free comparison)."""
    return sorted(m.group(0) for m in re.finditer(r"[^\0\n]*[\0\n]", text))


def record(clamd_socket: str, root: str) -> dict[str, str]:
    return {case["name"]: normalize(exchange(clamd_socket, packets(case["send"], root)), root)
            for case in cases() + extra_cases()}


def main() -> int:  # pragma: no cover - run by hand to re-record
    """``python -m tests.clamd_golden_util record``: start clamd, record, write the JSON."""
    import shutil
    import subprocess
    import tempfile

    if sys.argv[1:] != ["record"]:
        print("usage: python -m tests.clamd_golden_util record", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="clamd-rec-", dir="/tmp"))
    (work / "sigs").mkdir()
    write_sigs(work / "sigs")
    make_tree(work / "t")
    conf = work / "clamd.conf"
    sock = str(work / "c.sock")
    conf.write_text(f"Foreground yes\nLocalSocket {sock}\nDatabaseDirectory {work}/sigs\n"
                    f"LogFile {work}/clamd.log\nTemporaryDirectory {work}\n{CLAMD_CONF}")
    proc = subprocess.Popen(["clamd", "--foreground", f"--config-file={conf}"])
    try:
        for _ in range(600):
            try:
                if exchange(sock, [b"zPING\0"], 2) == b"PONG\0":
                    break
            except OSError:
                time.sleep(0.1)
        version = exchange(sock, [b"zVERSION\0"]).decode().strip("\0")
        got = record(sock, str(work / "t"))
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    TRANSCRIPTS.write_text(json.dumps({"recorded_from": version, "clamd_conf": CLAMD_CONF,
                                       "replies": got}, indent=1, sort_keys=True) + "\n")
    print(f"{len(got)} transcripts from {version} -> {TRANSCRIPTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
