"""Worker memory per message, in-process: peak / message for a size ladder (issue 23).

    python -m bench.walkmem [--sizes 1,4,16] [--families hdr_folded,...] [--scale 16]

Each case is built here and scanned in a fresh child process (one Scanner on the built-in engine,
or ``--engine clamav``, with an EICAR-only signature set and the verdict cache off, as a worker runs
it): the message is read from a file in one allocation, then
``Scanner.scan_stream`` scans it. Two figures
per case, both divided by the message size:

* ``walk``: the tracemalloc peak during the scan above what was allocated
  before it (the message itself is not counted);
* ``hwm``: the process's ``VmHWM`` growth during the scan, plus the message
  (reset through ``/proc/self/clear_refs`` before the scan), that is what a
  worker holds with its job: the target is ``<= 2 x message + 20 MiB``.

Cases: a mail with one base64 attachment of 1, 4 and 16 MiB (``--sizes``),
and the header families of ``bench/hostile_cases.py`` at ``--scale``. Not a
timed test: it prints, and exits 1 when a case is over the target.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

MiB = 1 << 20
HEADER_FAMILIES = ("hdr_folded", "hdr_many_headers", "hdr_filename_continuations")


def attachment_mail(size: int) -> bytes:
    payload = base64.encodebytes(os.urandom(size))
    return (b"From: a@example.com\nTo: b@example.com\nSubject: ladder\nMIME-Version: 1.0\n"
            b'Content-Type: multipart/mixed; boundary="BOUND"\n\n'
            b"--BOUND\nContent-Type: text/plain\n\nhello\n"
            b'--BOUND\nContent-Type: application/octet-stream; name="data.bin"\n'
            b"Content-Transfer-Encoding: base64\n\n" + payload + b"--BOUND--\n")


def build(case: str, scale: int) -> bytes:
    if case.startswith("attach_"):
        return attachment_mail(int(case.removeprefix("attach_").removesuffix("M")) * MiB)
    from bench.hostile_cases import FAMILIES
    return FAMILIES[case][1](scale)


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def measure(path: Path, engine: str = "builtin") -> dict[str, object]:
    """In this process: scan the message in ``path`` once, return the figures (the
    message is read in one allocation, as a worker reads its job)."""
    from scand import config as configmod
    from scand.config import Config
    from scand.engines.base import load_engine
    from scand.protocol import format_verdict
    from scand.worker.scanner import Scanner

    sigdir = Path(tempfile.mkdtemp(prefix="scand-walkmem-"))
    eicar = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
    (sigdir / "eicar.ndb").write_text(f"Eicar-Test-Signature:0:*:{eicar.hex()}\n")
    name, _, parser = engine.partition("-")  # clamav-libclamav: clamav.mail_parser
    cfg = configmod.override(Config(), "engine", name=name, signatures=str(sigdir))
    if parser:
        cfg = configmod.override(cfg, "clamav", mail_parser=parser)
    cfg = configmod.override(cfg, "cache", backend="none")
    scanner = Scanner(load_engine(cfg), cfg)
    shutil.rmtree(sigdir)
    scanner.scan_stream(b"warm-up")
    data = path.read_bytes()
    n = len(data)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _status("VmHWM")
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    verdict = scanner.scan_stream(data).verdict
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    hwm = _status("VmHWM") - before + n
    return {"size": n, "walk": peak / n, "hwm": hwm / n,
            "over": hwm > 2 * n + 20 * MiB, "verdict": format_verdict(verdict).decode().strip()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,4,16", help="attachment sizes in MiB")
    ap.add_argument("--families", default=",".join(HEADER_FAMILIES))
    ap.add_argument("--scale", type=int, default=16)
    ap.add_argument("--engine", default="builtin",
                    help="builtin, clamav, clamav-scand or clamav-libclamav (clamav.mail_parser)")
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)  # child: one file
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure(Path(args.one), args.engine)))
        return 0
    cases = [f"attach_{s}M" for s in args.sizes.split(",") if s]
    cases += [f for f in args.families.split(",") if f]
    print(f"{'case':<28} {'message':>12} {'walk/msg':>9} {'hwm/msg':>8}  verdict")
    bad = 0
    tmp = Path(tempfile.mkdtemp(prefix="scand-walkmem-"))
    for case in cases:
        msg = tmp / "message"
        msg.write_bytes(build(case, args.scale))  # built here: the child holds only it
        out = subprocess.run([sys.executable, __file__, "--one", str(msg),
                              "--engine", args.engine],
                             capture_output=True, text=True, check=False)
        if out.returncode:
            print(f"{case:<28} failed: {out.stderr.strip()[-300:]}")
            bad += 1
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        flag = "  MEM" if r["over"] else ""
        bad += bool(r["over"])
        print(f"{case:<28} {r['size']:>12,} {r['walk']:>8.2f}x {r['hwm']:>7.2f}x  "
              f"{r['verdict']}{flag}")
    shutil.rmtree(tmp)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
