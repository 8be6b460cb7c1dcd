"""Record what Debian's clamscan says about every evasion case (EICAR-only database).

    .venv/bin/python -m tests.content.make_evasion_clamscan

writes tests/content/evasion_clamscan.json: {"clamscan": version, "options": [...],
"results": {case id: "OK" | "FOUND <signature>" | "ERROR <text>"}}. Each case is
written to a temporary directory as <id>.eml and scanned with clamscan's
defaults (mail, archive and HTML scanning on) plus --alert-exceeds-max, with a
database holding one .ndb line: the EICAR body. test_evasion.py checks the file
covers the corpus, and a slow test re-runs clamscan on a sample.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.content.evasion_cases import EICAR, Case, all_cases

OUT = Path(__file__).resolve().parent / "evasion_clamscan.json"
OPTIONS = ["--no-summary", "--stdout", "--alert-exceeds-max=yes"]
_LINE = re.compile(r"^(?P<path>.*\.eml): (?P<what>.*?)(?: (?P<kind>FOUND|ERROR))?$")


def run_clamscan(cases: Sequence[Case], workdir: Path) -> dict[str, str]:
    """clamscan's answer per case id, run once over all ``cases``."""
    db = workdir / "db"
    db.mkdir()
    (db / "eicar.ndb").write_text(f"Eicar-Test-Signature:0:*:{EICAR.hex()}\n")
    mail = workdir / "mail"
    mail.mkdir()
    for case in cases:
        (mail / f"{case.id}.eml").write_bytes(case.message)
    proc = subprocess.run(["clamscan", *OPTIONS, "-d", str(db), str(mail)],
                          capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode not in (0, 1):  # 0 clean, 1 found; 2 is an error
        raise subprocess.CalledProcessError(proc.returncode, "clamscan", proc.stdout,
                                            proc.stderr)
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        case_id = Path(m["path"]).name[: -len(".eml")]
        if m["kind"] == "FOUND":
            out[case_id] = f"FOUND {m['what']}"
        elif m["kind"] == "ERROR":
            out[case_id] = f"ERROR {m['what']}"
        else:
            out[case_id] = "OK" if m["what"] == "OK" else f"ERROR {m['what']}"
    missing = [c.id for c in cases if c.id not in out]
    if missing:
        raise RuntimeError(f"clamscan gave no answer for {missing}:\n{proc.stderr}")
    return out


def main() -> int:
    version = subprocess.run(["clamscan", "--version"], capture_output=True, text=True,
                             check=True).stdout.strip().split("/")[0]
    cases = all_cases()
    with tempfile.TemporaryDirectory() as tmp:
        results = run_clamscan(cases, Path(tmp))
    record = {"clamscan": version, "options": [*OPTIONS, "-d <dir with eicar.ndb>"],
              "results": {c.id: results[c.id] for c in cases}}
    OUT.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")
    found = sum(1 for v in results.values() if v.startswith("FOUND"))
    print(f"{OUT}: {len(results)} cases, {found} found by clamscan")
    return 0


if __name__ == "__main__":
    sys.exit(main())
