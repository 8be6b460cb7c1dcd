"""Built-in engine throughput with 10,000 body signatures, and the policy walk's cost
next to a clamd scan (issue 4/7, item 6 and "measure it").

Usage: python bench/bench_builtin.py [--sigs 10000] [--rounds 5] [--clamd]

* ndb matching alone: MB/s over 1 MiB and 10 MiB of mail-like text;
* the whole worker path (walk MIME/archives + EICAR + hash + 10,000 ndb + policy),
  in-process, over a mixed corpus: msgs/s and MB/s;
* with --clamd: per message, clamd INSTREAM time vs the names-only policy walk
  that scand adds for the clamd engine (a clamd is started on a temp socket).
Each figure is the median of --rounds runs.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scand import config as configmod
from scand.clamd.engine import ClamdEngine
from scand.config import Config
from scand.content import walk
from scand.engines.builtin import EICAR, BuiltinEngine
from scand.worker.scanner import Scanner
from tests.content.corpus import banned_corpus, clean_corpus, with_attachment, zipped

TESTFILES = Path("/usr/share/clamav-testfiles")


def random_ndb(n: int, seed: int = 42) -> str:
    """n plausible body signatures: literal runs joined by ??, {n-m}, * and (a|b)."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        pieces = [rng.randbytes(rng.randint(4, 12)).hex()]
        for _ in range(rng.randint(0, 3)):
            alternative = f"({rng.randbytes(2).hex()}|{rng.randbytes(2).hex()})"
            glue = rng.choice(["??", "{2-8}", "*", alternative])
            pieces.append(glue)
            pieces.append(rng.randbytes(rng.randint(3, 8)).hex())
        lines.append(f"Bench.Sig-{i}:0:*:{''.join(pieces)}")
    return "\n".join(lines) + "\n"


def mail_text(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    words = [b"invoice", b"meeting", b"the", b"and", b"report", b"please", b"attached",
             b"regards", b"tomorrow", b"project", b"budget", b"quarter", b"review"]
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choice(words) for _ in range(12)) + b".\n"
    return bytes(out[:size])


def corpus(seed: int = 7) -> list[bytes]:
    """The test corpora plus bigger mail: 20 KB - 2 MB attachments, some zipped."""
    rng = random.Random(seed)
    msgs = [m for _, m, _ in banned_corpus()] + [m for _, m in clean_corpus()]
    for i in range(60):
        size = rng.choice([20_000, 50_000, 200_000, 2_000_000])
        body = mail_text(size, i)
        if i % 3 == 0:
            msgs.append(with_attachment(f"data{i}.zip", zipped({f"d{i}.txt": body})))
        else:
            msgs.append(with_attachment(f"notes{i}.txt", body, ctype="text", sub="plain"))
    msgs.append(with_attachment("eicar.txt", EICAR, ctype="text", sub="plain"))
    return msgs


def median_time(fn: object, rounds: int) -> float:
    assert callable(fn)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sigs", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clamd", action="store_true", help="also compare with a real clamd")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="scand-bench-"))
    try:
        sigdir = tmp / "sigs"
        sigdir.mkdir()
        (sigdir / "bench.ndb").write_text(random_ndb(args.sigs))
        (sigdir / "eicar.ndb").write_text(f"Eicar-Test-Signature:0:*:{EICAR.hex()}\n")
        if (TESTFILES / "clam.exe").exists():
            clam = (TESTFILES / "clam.exe").read_bytes()
            (sigdir / "t.hdb").write_text(f"{hashlib.md5(clam).hexdigest()}:{len(clam)}:"
                                          "ClamAV-Test-File\n")
        cfg = configmod.override(Config(), "engine", name="builtin", signatures=str(sigdir))
        t0 = time.perf_counter()
        engine = BuiltinEngine.from_config(cfg)
        print(f"loaded {engine.info().signatures} ({engine.bodies.skipped} skipped) "
              f"in {time.perf_counter() - t0:.2f} s")
        for size in (1 << 20, 10 << 20):
            data = mail_text(size, 1)
            t = median_time(lambda d=data: engine.bodies.match(d), args.rounds)
            print(f"ndb match, {size >> 20:>2} MiB text: {size / t / 1e6:8.1f} MB/s")
        b64 = base64.encodebytes(os.urandom(1 << 20))
        t = median_time(lambda: engine.bodies.match(b64), args.rounds)
        print(f"ndb match,  1 MiB base64: {len(b64) / t / 1e6:8.1f} MB/s")
        scanner = Scanner(engine, cfg)
        msgs = corpus()
        total = sum(len(m) for m in msgs)
        t = median_time(lambda: [scanner.scan_stream(m) for m in msgs], args.rounds)
        print(f"worker path on {len(msgs)} messages ({total / 1e6:.1f} MB): "
              f"{len(msgs) / t:8.1f} msgs/s, {total / t / 1e6:6.1f} MB/s (one core)")
        small = [m for m in msgs if len(m) < 60_000]
        t = median_time(lambda: [scanner.scan_stream(m) for m in small], args.rounds)
        print(f"worker path, {len(small)} messages under 60 KB: {len(small) / t:8.1f} msgs/s")
        if args.clamd:
            compare_clamd(tmp, sigdir, msgs, args.rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def compare_clamd(tmp: Path, sigdir: Path, msgs: list[bytes], rounds: int) -> None:
    sock = tmp / "clamd.sock"
    conf = tmp / "clamd.conf"
    conf.write_text(f"Foreground yes\nLocalSocket {sock}\nDatabaseDirectory {sigdir}\n"
                    f"LogFile {tmp}/clamd.log\nTemporaryDirectory {tmp}\nAlertExceedsMax yes\n")
    clamd = shutil.which("clamd") or "/usr/sbin/clamd"
    proc = subprocess.Popen([clamd, "--foreground", f"--config-file={conf}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if sock.exists():
                break
            time.sleep(0.1)
        time.sleep(0.5)
        cfg = configmod.override(Config(), "clamd", sockets=[str(sock)], transfer="stream")
        engine = ClamdEngine.from_config(cfg)
        content = cfg.content
        t_clamd = median_time(lambda: [engine.scan_bytes(m, "m") for m in msgs], rounds)
        t_walk = median_time(
            lambda: [list(walk(m, "", content, keep_data=False)) for m in msgs], rounds)
        print(f"clamd INSTREAM: {len(msgs) / t_clamd:8.1f} msgs/s; names-only policy walk: "
              f"{len(msgs) / t_walk:8.1f} msgs/s; walk adds {100 * t_walk / t_clamd:.1f}% "
              "of clamd's time")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
