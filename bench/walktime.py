"""Worker CPU per pass over a corpus, in-process: this tree against another (issue 23).

    python -m bench.walktime --old /tmp/old-main [--corpus bench/out/corpus-s1-n1000]
                             [--messages 300] [--passes 15] [--rounds 2]

Each tree runs in a child interpreter (``PYTHONPATH`` = the tree): one Scanner on the
built-in engine with the corpus' signatures and the verdict cache off, as a worker runs
it; the first ``--messages`` messages of the corpus are read into memory, then
``Scanner.scan_stream`` scans each of them (``--walk-only``: ``walk()`` alone;
``--names-only``: the names-only walk that runs beside clamav and clamd),
``--passes`` times. The child prints the
best pass (seconds of process CPU for all the messages). The trees take turns,
``--rounds`` times, and the best of each is compared: one run, the same machine load.
Not a timed test: it prints.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def measure(corpus: Path, messages: int, passes: int, walk_only: bool = False,
            names_only: bool = False) -> dict[str, object]:
    """In this process (the tree on ``sys.path``): the best of ``passes`` passes."""
    from scand import config as configmod
    from scand.config import Config
    from scand.content import walk
    from scand.engines.base import load_engine
    from scand.protocol import format_verdict
    from scand.worker.scanner import Scanner

    cfg = configmod.override(Config(), "engine", name="builtin",
                             signatures=str(corpus / "sigs"))
    cfg = configmod.override(cfg, "cache", backend="none")
    scanner = Scanner(load_engine(cfg), cfg)
    manifest = json.loads((corpus / "manifest.json").read_text())
    datas = [(corpus / m["path"]).read_bytes() for m in manifest["messages"][:messages]]
    scanner.scan_stream(b"warm-up")
    best = float("inf")
    verdicts: list[str] = []
    for _ in range(passes):
        verdicts = []
        start = time.process_time()
        for data in datas:
            if walk_only or names_only:
                items = walk(data, "", cfg.content, keep_data=not names_only)
                verdicts.append(str(sum(1 for _ in items)))
                continue
            verdicts.append(format_verdict(scanner.scan_stream(data).verdict).decode())
        best = min(best, time.process_time() - start)
    infected = sum(v.startswith("1:") for v in verdicts)
    return {"best": best, "messages": len(datas), "bytes": sum(map(len, datas)),
            "infected": infected, "verdicts": verdicts}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="the other tree (e.g. a git worktree)")
    ap.add_argument("--corpus", default=str(HERE / "bench/out/corpus-s1-n1000"))
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--passes", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--walk-only", action="store_true",
                    help="time walk() alone (items counted, not scanned)")
    ap.add_argument("--names-only", action="store_true",
                    help="time the names-only walk (beside clamav/clamd) alone")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child
    args = ap.parse_args(argv)
    corpus = Path(args.corpus).resolve()
    if args.one:
        print(json.dumps(measure(corpus, args.messages, args.passes, args.walk_only,
                                 args.names_only)))
        return 0
    trees = {"old": Path(args.old).resolve(), "new": HERE}
    best: dict[str, float] = {}
    verdicts: dict[str, list[str]] = {}
    for rnd in range(args.rounds):
        for label, tree in trees.items():
            out = subprocess.run(
                [sys.executable, __file__, "--one", "--old", "-", "--corpus", str(corpus),
                 "--messages", str(args.messages), "--passes", str(args.passes),
                 *(["--walk-only"] if args.walk_only else []),
                 *(["--names-only"] if args.names_only else [])],
                cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                capture_output=True, text=True, check=False)
            if out.returncode:
                print(f"{label}: failed: {out.stderr.strip()[-400:]}")
                return 1
            r = json.loads(out.stdout.strip().splitlines()[-1])
            best[label] = min(best.get(label, float("inf")), r["best"])
            verdicts[label] = r["verdicts"]
            print(f"round {rnd + 1} {label}: best of {args.passes} {r['best']:.4f} s "
                  f"({r['messages']} messages, {r['bytes']:,} bytes, {r['infected']} infected)")
    print(f"old {best['old']:.4f} s, new {best['new']:.4f} s, "
          f"new/old {best['new'] / best['old']:.3f}")
    differ = sum(a != b for a, b in zip(verdicts["old"], verdicts["new"], strict=True))
    print(f"verdicts that differ: {differ}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
