"""Client start-up cost: one ``scand-scan`` vs one ``clamdscan`` on a small clean file.

Issue 5/7, acceptance 5. Both clients run once per message in real use, so
process start to exit is what counts. Starts a scand daemon (built-in engine,
one worker) and a clamd with a one-line signature database, each on a socket
in a temporary directory, then times, interleaved, N runs of:

  * clamdscan --no-summary FILE                (C, the reference)
  * scand-scan FILE  via its shebang           (env -S python3 -IS: no site-packages)
  * python -IS scand_scan.py FILE              (the interpreter named directly)
  * python scand_scan.py FILE                  (plain interpreter, with site-packages)
  * /usr/bin/python3 -IS scand_scan.py FILE    (the system Python, when there is one)
  * python -IS -c "import scand_scan; ..."     (bytecode cached, as an installed module)
  * python -IS -c "print('OK')"                (the interpreter's own floor)

and reports the medians and the ratio to clamdscan (goal: under 2x).
Both daemons are stopped by pid at the end.

Usage: python bench/client_startup.py [--runs N] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCAND_SCAN = ROOT / "clients" / "scand_scan.py"
# Built from halves: this file must not itself be an EICAR test file.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def wait_for(path: str, request: bytes, expect: bytes, proc: subprocess.Popen[bytes],
             limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited {proc.returncode}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(path)
                s.sendall(request)
                if s.recv(64).startswith(expect):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{path} did not answer within {limit}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def time_runs(cmds: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    """Wall time of each command, interleaved so drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(runs):
        for name, cmd in cmds.items():
            t0 = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, check=False)
            times[name].append(time.perf_counter() - t0)
            if done.returncode != 0 or b"OK" not in done.stdout:
                raise RuntimeError(f"{name}: exit {done.returncode}: {done.stdout!r} "
                                   f"{done.stderr!r}")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50, help="runs per client (default 50)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    clamd, clamdscan = shutil.which("clamd", path="/usr/sbin:/usr/bin"), shutil.which("clamdscan")
    work = Path(tempfile.mkdtemp(prefix="scand-bench-", dir="/tmp"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sample = work / "clean.txt"
        sample.write_bytes(b"Dear customer, your invoice is attached.\n")
        scand_sock = str(work / "scand.sock")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(work / "scand.log", "wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "scand.cli", "serve", "--socket", scand_sock,
                 "--workers", "1"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env))
        wait_for(scand_sock, b"PING\n", b"PONG", procs[-1])
        scan_args = [str(SCAND_SCAN), "--socket", scand_sock, str(sample)]
        cmds = {
            # The shebang finds python3 on PATH (a pyenv shim is a shell script: slower).
            "scand-scan (its shebang)": scan_args,
            "python -IS scand_scan.py": [sys.executable, "-I", "-S", *scan_args],
            "python scand_scan.py (site)": [sys.executable, *scan_args],
            # As an installed module: bytecode cached in __pycache__, no compile per run.
            "python -IS, cached bytecode": [
                sys.executable, "-I", "-S", "-c",
                f"import sys; sys.path.insert(0, {str(SCAND_SCAN.parent)!r}); "
                "import scand_scan; sys.exit(scand_scan.main())", *scan_args[1:]],
        }
        if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != (
            os.path.realpath("/usr/bin/python3")
        ):
            cmds["/usr/bin/python3 -IS scand_scan.py"] = ["/usr/bin/python3", "-I", "-S",
                                                          *scan_args]
        if clamd and clamdscan:
            db = work / "db"
            db.mkdir()
            (db / "bench.hdb").write_text(
                f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:Eicar-Test-Signature\n")
            conf = work / "clamd.conf"
            conf.write_text(f"LocalSocket {work}/clamd.sock\nDatabaseDirectory {db}\n"
                            f"Foreground yes\nLogFile {work}/clamd.log\n"
                            + ("User root\n" if os.geteuid() == 0 else ""))
            with open(work / "clamd.out", "wb") as log:
                procs.append(subprocess.Popen([clamd, "-c", str(conf)], stdout=log, stderr=log,
                                              stdin=subprocess.DEVNULL))
            wait_for(f"{work}/clamd.sock", b"PING\n", b"PONG", procs[-1])
            cmds = {"clamdscan": [clamdscan, f"--config-file={conf}", "--no-summary",
                                  str(sample)], **cmds}
        else:
            print("clamd/clamdscan not installed: scand-scan only", file=sys.stderr)
        time_runs(cmds, 3)  # warm caches (and write scand_scan's __pycache__)
        times = time_runs(cmds, args.runs)
        floor = [sys.executable, "-I", "-S", "-c", "print('OK')"]
        times["interpreter alone (-IS)"] = time_runs({"floor": floor}, args.runs)["floor"]
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    medians = {name: statistics.median(ts) * 1000 for name, ts in times.items()}
    base = medians.get("clamdscan")
    print(f"median wall time of one run, {args.runs} runs each:")
    for name, ms in medians.items():
        ratio = f"  ({ms / base:.2f}x clamdscan)" if base and name != "clamdscan" else ""
        print(f"  {name:36s} {ms:7.2f} ms{ratio}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"runs": args.runs, "median_ms": medians,
             "ratio_to_clamdscan": {n: m / base for n, m in medians.items()} if base else None},
            indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
