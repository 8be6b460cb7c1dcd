"""scand's clamd front against clamd direct: the same files, the same signatures.

    python -m bench.clamd_front [--files 300] [--clients 8] [--repeat 3] [--out DIR]

Targets, each a daemon this script starts on its own socket and stops by pid:

* ``clamd``: Debian's clamd 1.4.6, MaxThreads = 2 x CPUs;
* ``scand-builtin``: ``scand serve --clamd-socket`` on its built-in engine;
* ``scand-clamd``: the same front with scand's clamd engine (a managed clamd behind it).

All load the same signature set (EICAR .ndb + clam.exe .hdb from clamav-testfiles)
and scan the same seeded corpus (mail-sized text files, 1 in 20 carrying EICAR).

Workloads, alternated target by target in each of ``--repeat`` rounds:

* ``clamdscan --fdpass`` on the corpus directory (the real client; wall time -> files/s);
* INSTREAM: ``--clients`` threads, one connection and one ``zINSTREAM`` per file
  (as Exim over TCP and rspamd send): files/s and p50/p99 latency;
* FILDES: the same with ``zFILDES`` + SCM_RIGHTS (as clamdscan --fdpass and
  clamav-milter send).

Every reply is checked (FOUND exactly for the EICAR files). Prints the medians
and the ratios scand/clamd and writes ``result.json``.
"""

from __future__ import annotations

import argparse
import array
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
TESTFILES = Path("/usr/share/clamav-testfiles")


def make_corpus(d: Path, n: int, seed: int) -> dict[str, bool]:
    rng = random.Random(seed)
    d.mkdir(parents=True, exist_ok=True)
    words = [b"mail", b"order", b"invoice", b"hello", b"meeting", b"report", b"lunch", b"x"]
    infected = {}
    for i in range(n):
        size = int(rng.lognormvariate(9.5, 1.0))  # median ~13 KB, a tail to a few hundred KB
        size = max(200, min(size, 600_000))
        body = b" ".join(rng.choice(words) for _ in range(size // 5))[:size]
        bad = i % 20 == 7
        if bad:
            body = body[: size // 2] + b"\n" + EICAR + b"\n" + body[size // 2 :]
        p = d / f"msg{i:05d}.eml"
        p.write_bytes(b"From: a@example.com\nSubject: %d\n\n" % i + body)
        infected[str(p)] = bad
    return infected


def write_sigs(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    clam = (TESTFILES / "clam.exe").read_bytes()
    (d / "test.hdb").write_text(f"{hashlib.md5(clam).hexdigest()}:{len(clam)}:ClamAV-Test-File\n")
    (d / "test.ndb").write_text(f"Eicar-Test-Signature:0:*:{EICAR.hex()}\n")


def ping(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(path)
            s.sendall(b"zPING\0")
            return s.recv(10) == b"PONG\0"
    except OSError:
        return False


class Target:
    def __init__(self, name: str, work: Path, sigs: Path) -> None:
        self.name = name
        self.dir = work / name
        self.dir.mkdir()
        self.sock = str(self.dir / "c.sock")
        threads = 2 * (os.cpu_count() or 1)
        if name == "clamd":
            conf = self.dir / "clamd.conf"
            conf.write_text(f"Foreground yes\nLocalSocket {self.sock}\nDatabaseDirectory {sigs}\n"
                            f"LogFile {self.dir}/clamd.log\nTemporaryDirectory {self.dir}\n"
                            f"MaxThreads {threads}\nStreamMaxLength 64M\nAlertExceedsMax yes\n")
            cmd = [shutil.which("clamd") or "/usr/sbin/clamd", "--foreground",
                   f"--config-file={conf}"]
        else:
            engine = "clamd" if name == "scand-clamd" else "builtin"
            cfg = self.dir / "scand.toml"
            cfg.write_text("[server]\nmax_stream_bytes = 67108864\n[log]\nlevel = \"warning\"\n")
            cmd = [sys.executable, "-m", "scand.cli", "serve", "--config", str(cfg),
                   "--socket", str(self.dir / "s.sock"), "--clamd-socket", self.sock,
                   "--engine", engine, "--signatures", str(sigs)]
        self.log = open(self.dir / "daemon.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, cwd=self.dir,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
        deadline = time.monotonic() + 120
        while not ping(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {(self.dir / 'daemon.log').read_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def recv_all(s: socket.socket) -> bytes:
    out = b""
    while True:
        data = s.recv(65536)
        if not data:
            return out
        out += data


def one(sock: str, path: str, mode: str) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(60)
        s.connect(sock)
        if mode == "instream":
            data = Path(path).read_bytes()
            s.sendall(b"zINSTREAM\0" + struct.pack("!I", len(data)) + data + b"\0\0\0\0")
        else:
            fd = os.open(path, os.O_RDONLY)
            try:
                s.sendall(b"zFILDES\0")
                s.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
            finally:
                os.close(fd)
        return recv_all(s)


def drive(sock: str, files: dict[str, bool], mode: str, clients: int) -> dict[str, Any]:
    paths = list(files)
    lat: list[float] = []
    wrong: list[str] = []
    lock = threading.Lock()
    nxt = iter(paths)

    def worker() -> None:
        while True:
            with lock:
                p = next(nxt, None)
            if p is None:
                return
            t0 = time.perf_counter()
            reply = one(sock, p, mode)
            dt = time.perf_counter() - t0
            ok = reply.endswith(b" FOUND\0") if files[p] else reply.endswith(b": OK\0")
            with lock:
                lat.append(dt)
                if not ok:
                    wrong.append(reply.decode("latin-1"))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    return {"files_per_s": round(len(paths) / wall, 1),
            "p50_ms": round(lat[len(lat) // 2] * 1000, 2),
            "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 2),
            "wrong": len(wrong), "wrong_examples": wrong[:3]}


def clamdscan(sock: str, corpus: Path, files: dict[str, bool], work: Path) -> dict[str, Any]:
    conf = work / "clamdscan.conf"
    conf.write_text(f"LocalSocket {sock}\n")
    t0 = time.perf_counter()
    done = subprocess.run(["clamdscan", f"--config-file={conf}", "--fdpass", "--no-summary",
                           "--infected", str(corpus)], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    found = done.stdout.count(" FOUND")
    return {"files_per_s": round(len(files) / wall, 1), "exit": done.returncode,
            "found": found, "wrong": int(found != sum(files.values()) or done.returncode != 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--targets", default="clamd,scand-builtin,scand-clamd")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-cf-", dir="/tmp"))
    write_sigs(work / "sigs")
    names = args.targets.split(",")
    # A fresh corpus for every (round, workload), the same for every target: clamd
    # caches clean files by hash, so a file is scanned once per daemon, as in a mail flow.
    corpora = {(rnd, w): make_corpus(work / f"corpus-{rnd}-{w}", args.files, seed=100 * rnd + i)
               for rnd in range(args.repeat)
               for i, w in enumerate(("clamdscan_fdpass", "instream", "fildes"))}
    files = corpora[(0, "instream")]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        n: {"clamdscan_fdpass": [], "instream": [], "fildes": []} for n in names}
    targets = {n: Target(n, work, work / "sigs") for n in names}
    try:
        for rnd in range(args.repeat):
            for n in names:  # alternate: every round visits every target
                t = targets[n]
                runs[n]["clamdscan_fdpass"].append(clamdscan(
                    t.sock, work / f"corpus-{rnd}-clamdscan_fdpass",
                    corpora[(rnd, "clamdscan_fdpass")], t.dir))
                runs[n]["instream"].append(
                    drive(t.sock, corpora[(rnd, "instream")], "instream", args.clients))
                runs[n]["fildes"].append(
                    drive(t.sock, corpora[(rnd, "fildes")], "fildes", args.clients))
                print(f"round {rnd + 1} {n}: " + ", ".join(
                    f"{w} {r[-1]['files_per_s']}/s" for w, r in runs[n].items()), flush=True)
    finally:
        for t in targets.values():
            t.stop()
    med: dict[str, dict[str, dict[str, float]]] = {}
    for n, by in runs.items():
        med[n] = {}
        for w, rs in by.items():
            med[n][w] = {k: statistics.median(r[k] for r in rs)
                         for k in ("files_per_s", "p50_ms", "p99_ms", "wrong") if k in rs[0]}
    print(f"\n{'target':14} {'workload':18} {'files/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'x clamd':>8} {'p99 x':>6}")
    for n in names:
        for w, m in med[n].items():
            base = med.get("clamd", {}).get(w, {})
            ratio = m["files_per_s"] / base["files_per_s"] if base.get("files_per_s") else 0
            p99r = (m["p99_ms"] / base["p99_ms"]) if base.get("p99_ms") and "p99_ms" in m else 0
            print(f"{n:14} {w:18} {m['files_per_s']:>9} {m.get('p50_ms', '-'):>8} "
                  f"{m.get('p99_ms', '-'):>8} {ratio:>8.2f} {p99r:>6.2f}")
    result = {"files": args.files, "clients": args.clients, "repeat": args.repeat,
              "infected": sum(files.values()),
              "bytes": sum(os.path.getsize(p) for p in files), "median": med, "runs": runs,
              "loadavg_at_end": os.getloadavg()}
    out = Path(args.out) if args.out else ROOT / "bench" / "out" / "clamd-front"
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {out / 'result.json'}")
    shutil.rmtree(work, ignore_errors=True)
    bad = sum(m["wrong"] for by in med.values() for m in by.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
