"""Postfix under smtp-source load: no scanning, scand's milter, clamav-milter + clamd,
and the pipe(8) + scand-pipe recipe.

    .venv/bin/python -m bench.milter_bench [--messages 2000] [--sessions 8] [--size 20000]
                                           [--repeat 3] [--out bench/out/milter]

Each run starts a fresh private Postfix 3.7 (tests/mta/postfix.py: Debian's
package unpacked into .cache/postfix, run as root on a loopback port; mail is
delivered to the ``discard`` transport, so the cost measured is Postfix plus
the milter) and the filter under test, sends ``--messages`` messages with
Postfix's own ``smtp-source`` over ``--sessions`` parallel SMTP sessions, and
measures the accept rate (messages / smtp-source's run time) and the time
until the queue is empty. Configurations run alternately, ``--repeat`` rounds;
the medians and their ratios to "no scanning" are printed and written to
``summary.json``. Every message must be accounted for: Postfix's log must show
exactly ``--messages`` deliveries and no rejection, or the run fails.

Same messages and the same signature set for every filter: smtp-source's
generated message of ``--size`` bytes; scand's built-in engine and clamd both
load the bench signature set (bench/corpus.py). Needs root, clamav-daemon and
clamav-milter from Debian.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.corpus import write_signatures
from bench.procs import Managed, start_clamd
from tests.conftest import Daemon, launch
from tests.mta.postfix import POSTFIX_ROOT, Postfix, start_postfix
from tests.mta.test_postfix_pipe import documented_recipe

ROOT = Path(__file__).resolve().parent.parent

CONFIGS = ("none", "scand", "clamav-milter", "pipe")
CLAMAV_MILTER_CONF = """\
MilterSocket unix:{sock}
MilterSocketMode 666
FixStaleSocket true
Foreground true
PidFile {dir}/clamav-milter.pid
ClamdSocket unix:{clamd}
OnClean Accept
OnInfected Reject
OnFail Defer
AddHeader No
LogFile {dir}/clamav-milter.log
LogInfected Basic
LogClean Basic
MaxFileSize 25M
TemporaryDirectory {dir}
ReadTimeout 120
"""


def milter_settings(sock: str) -> str:
    return (f"smtpd_milters = unix:{sock}\nnon_smtpd_milters = $smtpd_milters\n"
            "milter_default_action = tempfail\nmilter_protocol = 6\n")


class Stack:
    """Postfix plus the filter for one configuration; stop() ends everything by pid."""

    def __init__(self, config: str, base: Path, sigs: Path) -> None:
        self.config = config
        self.scand: Daemon | None = None
        self.clamd: Managed | None = None
        self.milter: subprocess.Popen[bytes] | None = None
        extra = "default_transport = discard\nrelay_transport = discard\n"
        base.mkdir(parents=True)
        base.chmod(0o755)
        if config == "scand":
            self.scand = launch(base, 0, "--milter-socket", str(base / "m"), "--signatures",
                                str(sigs), config='[milter]\nsocket_group = "nogroup"\n')
            extra += milter_settings(str(base / "m"))
        elif config == "clamav-milter":
            self.clamd = start_clamd(base / "clamd", sigs)
            conf = base / "clamav-milter.conf"
            conf.write_text(CLAMAV_MILTER_CONF.format(sock=base / "cm", dir=base,
                                                      clamd=self.clamd.socket))
            self.milter = subprocess.Popen(["/usr/sbin/clamav-milter", "-c", str(conf)],
                                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while not (base / "cm").exists():
                if self.milter.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"clamav-milter did not start: {base}")
                time.sleep(0.05)
            extra += milter_settings(str(base / "cm"))
        pipe: dict[str, Any] = {}
        if config == "pipe":  # the documented recipe; Postfix "installed" for its sendmail
            self.scand = launch(base, 0, "--signatures", str(sigs),
                                config='[server]\nsocket_group = "daemon"\n')
            option, service = documented_recipe()
            service = service.replace("user=scand-filter", "user=daemon").replace(
                "/var/run/sophie", self.scand.socket)
            (base / "postfix/usr/local/bin").mkdir(parents=True)
            tool = base / "postfix/usr/local/bin/scand-pipe"
            shutil.copy(ROOT / "clients/scand_pipe.py", tool)
            tool.chmod(0o755)
            pipe = {"installed": True, "smtpd_options": option, "master_extra": service}
        self.postfix: Postfix = start_postfix(base / "postfix", main_extra=extra, **pipe)

    def stop(self) -> None:
        self.postfix.stop()
        if self.milter is not None and self.milter.poll() is None:
            self.milter.terminate()
            try:
                self.milter.wait(15)
            except subprocess.TimeoutExpired:
                self.milter.kill()
                self.milter.wait(5)
        if self.clamd is not None:
            self.clamd.stop()
        if self.scand is not None:
            self.scand.stop()


def one_run(config: str, workdir: Path, sigs: Path, args: argparse.Namespace) -> dict[str, Any]:
    stack = Stack(config, workdir, sigs)
    try:
        pf = stack.postfix
        env = {"LD_LIBRARY_PATH": str(POSTFIX_ROOT / "usr/lib/postfix"), "PATH": "/usr/bin:/bin"}
        cmd = [str(POSTFIX_ROOT / "usr/sbin/smtp-source"), "-s", str(args.sessions),
               "-m", str(args.messages), "-l", str(args.size), "-f", "alice@example.org",
               "-t", "bob@example.net", "-M", "client.scand.test", f"127.0.0.1:{pf.port}"]
        t0 = time.monotonic()
        done = subprocess.run(cmd, env=env, capture_output=True, timeout=300, check=False)
        sent = time.monotonic() - t0
        deadline = time.monotonic() + 600
        while pf.queued():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{config}: queue not empty after 600 s")
            time.sleep(0.02)
        empty = time.monotonic() - t0
        time.sleep(0.5)  # let qmgr's last log lines land
        log = pf.log()
        delivered = sum(1 for line in log.splitlines()
                        if "status=sent" in line and "relay=scand" not in line)
        rejected = log.count("milter-reject")
        scanned = args.messages
        if stack.scand is not None:  # proof that the filter saw every message
            event = "scan_finished" if config == "pipe" else "milter_message"
            scanned = stack.scand.log().count(f'"event": "{event}"')
        elif config == "clamav-milter":
            scanned = (workdir / "clamav-milter.log").read_text().count("Clean message")
        if done.returncode != 0 or delivered != args.messages or rejected or (
                scanned != args.messages):
            raise RuntimeError(f"{config}: smtp-source rc={done.returncode} "
                               f"{done.stderr.decode()[-500:]} delivered={delivered} "
                               f"rejected={rejected} scanned={scanned} of {args.messages}")
        return {"config": config, "accept_s": round(sent, 3), "queue_empty_s": round(empty, 3),
                "accept_rate": round(args.messages / sent, 1), "delivered": delivered,
                "scanned": scanned}
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--size", type=int, default=20000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--out", default="bench/out/milter")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (Postfix's master)", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="scand-mb-", dir="/tmp"))
    work.chmod(0o755)
    sigs = write_signatures(work / "sigs")
    configs = args.configs.split(",")
    runs: list[dict[str, Any]] = []
    try:
        for rnd in range(args.repeat):
            for config in configs:
                result = one_run(config, work / f"{config}-{rnd}", sigs, args)
                result["round"] = rnd
                runs.append(result)
                print(json.dumps(result), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary: dict[str, Any] = {"messages": args.messages, "sessions": args.sessions,
                               "size": args.size, "repeat": args.repeat, "runs": runs}
    medians = {}
    for config in configs:
        mine = [r for r in runs if r["config"] == config]
        medians[config] = {k: statistics.median(r[k] for r in mine)
                           for k in ("accept_rate", "queue_empty_s")}
    summary["medians"] = medians
    base = medians.get("none")
    print(f"{'config':15} {'accept msg/s':>13} {'ratio':>6} {'queue empty s':>14} {'ratio':>6}")
    for config, m in medians.items():
        r1 = m["accept_rate"] / base["accept_rate"] if base else 0.0
        r2 = m["queue_empty_s"] / base["queue_empty_s"] if base else 0.0
        m["accept_ratio"], m["queue_ratio"] = round(r1, 2), round(r2, 2)
        print(f"{config:15} {m['accept_rate']:>13.1f} {r1:>6.2f} {m['queue_empty_s']:>14.2f} "
              f"{r2:>6.2f}")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
