"""Compare two bomber results: scand+clamd against clamd direct (issue 8's ratio targets).

    python -m bench.compare SCAND_DIR_OR_JSON CLAMD_DIR_OR_JSON

Each argument is a run directory (``summary.json``), a ``--repeat`` directory
(``median.json``), or one of those files. Prints throughput and p99 of both,
and the ratios against the targets: throughput >= 0.9x, p99 <= 2x.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

THROUGHPUT_TARGET = 0.9
P99_TARGET = 2.0


def load(arg: str) -> dict[str, Any]:
    path = Path(arg)
    if path.is_dir():
        path = path / "median.json" if (path / "median.json").exists() else path / "summary.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    scand, clamd = load(args[0]), load(args[1])
    ratio = scand["msgs_per_s"] / clamd["msgs_per_s"] if clamd["msgs_per_s"] else 0.0
    p99 = (scand["latency_ms"]["p99"] / clamd["latency_ms"]["p99"]
           if clamd["latency_ms"]["p99"] else 0.0)
    print(f"{'':12} {'msgs/s':>10} {'p99 ms':>10}")
    print(f"{'scand':12} {scand['msgs_per_s']:>10} {scand['latency_ms']['p99']:>10}")
    print(f"{'clamd':12} {clamd['msgs_per_s']:>10} {clamd['latency_ms']['p99']:>10}")
    ok_rate, ok_p99 = ratio >= THROUGHPUT_TARGET, p99 <= P99_TARGET
    print(f"throughput ratio {ratio:.2f}x (target >= {THROUGHPUT_TARGET}x: "
          f"{'met' if ok_rate else 'MISSED'})")
    print(f"p99 ratio        {p99:.2f}x (target <= {P99_TARGET}x: {'met' if ok_p99 else 'MISSED'})")
    return 0 if ok_rate and ok_p99 else 1


if __name__ == "__main__":
    sys.exit(main())
