"""The mail bomber (bench/): a deterministic corpus, and a short run against a real daemon."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from bench import bomber, corpus
from bench.probe import proven_layers
from bench.verdicts import PROFILES, judge, owed
from tests.conftest import EICAR, DaemonFactory

BENCH = Path(__file__).resolve().parents[2] / "bench"


def file_digests(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_corpus_is_deterministic_with_the_documented_labels(tmp_path: Path) -> None:
    a = corpus.generate(tmp_path / "a", 200, seed=7)
    b = corpus.generate(tmp_path / "b", 200, seed=7)
    assert a == b
    assert file_digests(tmp_path / "a") == file_digests(tmp_path / "b")
    assert corpus.generate(tmp_path / "c", 200, seed=8)["messages"] != a["messages"]
    messages = a["messages"]
    classes = Counter(m["class"] for m in messages)
    assert classes == {"clean": 184, "infected": 10, "banned": 6}  # 5% and 3% per 100
    variants = {m["kind"] for m in messages if m["class"] == "infected"}
    assert variants == {f"infected:{v[0]}" for v in corpus.INFECTED_VARIANTS}
    for m in messages:
        data = (tmp_path / "a" / m["path"]).read_bytes()
        assert len(data) == m["size"] and m["path"].startswith("spool/")
        assert bool(m["infections"]) == (m["class"] == "infected")
        assert (EICAR in data) == (m["kind"] == "infected:eicar-raw")  # the rest is encoded
        if m["class"] == "banned":
            assert m["banned"][0]["file"].encode() in data
    sizes = [m["size"] for m in messages]
    assert min(sizes) >= 2000 and max(sizes) <= 10_000_000
    assert sum(2000 <= s <= 50_000 for s in sizes) >= 0.8 * len(sizes)
    assert any(s > 50_000 for s in sizes)
    kinds = Counter(m["kind"] for m in messages)
    assert {"plain", "html", "alternative", "attachment"} <= set(kinds)
    # A prefix of a bigger corpus is the smaller corpus.
    assert corpus.generate(tmp_path / "d", 100, seed=7)["messages"] == messages[:100]


def test_no_bench_source_holds_the_eicar_string() -> None:
    for path in BENCH.rglob("*"):
        if path.is_file() and "out" not in path.relative_to(BENCH).parts:
            assert EICAR not in path.read_bytes(), path


def test_verdicts_are_judged_per_engine_profile() -> None:
    zipped = {"infections": [{"name": "Eicar-Test-Signature", "layers": ["base64", "zip"]}],
              "banned": []}
    banned = {"infections": [], "banned": [{"file": "invoice.pdf.exe", "layers": []}]}
    clean: dict[str, list[object]] = {"infections": [], "banned": []}
    raw, mail, policy = PROFILES["raw"], PROFILES["mail"], PROFILES["mail+policy"]
    assert judge(owed(zipped, mail), b"0").outcome == "miss"
    assert judge(owed(zipped, mail), b"1:Eicar-Test-Signature.UNOFFICIAL").outcome == "ok"
    assert judge(owed(zipped, raw), b"0").outcome == "blind"
    assert judge(owed(zipped, raw), b"-1:timeout").outcome == "unchecked"
    assert judge(owed(banned, mail), b"0").outcome == "ok"  # clamd: no policy
    assert judge(owed(banned, policy), b"0").outcome == "miss"
    assert judge(owed(banned, policy), b"1:Banned.DoubleExtension.pdf.exe").outcome == "ok"
    assert judge(owed(clean, raw), b"1:Eicar-Test-Signature").outcome == "miss"
    assert judge(owed(clean | {"chaos": "crash"}, raw), b"0").outcome == "miss"
    assert judge(owed(clean | {"chaos": "crash"}, raw), b"-1:worker-crashed").outcome == "unchecked"
    assert judge(owed(clean, raw), b"1:").outcome == "miss"  # Exim reads 1: as clean


def test_probe_blames_the_innermost_failing_layer() -> None:
    b64, zipped, uu = {"base64"}, {"base64", "zip"}, {"uuencode"}
    assert proven_layers({"a": (b64, True), "b": (zipped, True), "c": (uu, True)}) == {
        "base64", "zip", "uuencode"}
    assert proven_layers({"a": (b64, True), "b": (zipped, False), "c": (uu, True)}) == {
        "base64", "uuencode"}
    assert proven_layers({"a": (b64, False), "b": (zipped, True), "c": (uu, False)}) == set()
    assert proven_layers({"a": (uu, True), "b": (uu, False)}) == set()


def test_short_run_against_a_real_daemon(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    sigs = corpus.write_signatures(short_tmp / "sigs")
    d = scand_daemon("--engine", "chaos", "--signatures", str(sigs))
    out = short_tmp / "out"
    status = bomber.main([
        "--socket", d.socket, "--corpus", str(short_tmp / "corpus"), "--corpus-size", "200",
        "--duration", "3", "--concurrency", "4", "--chaos", "leak:1=0.05,hog:8=0.02,crash=0.01",
        "--out", str(out), "--no-plot",
    ])
    summary = json.loads((out / "summary.json").read_text())
    assert status == 0, summary["miss_examples"] or summary["errors"]
    assert summary["misses"] == 0 and summary["error_count"] == 0
    setup = summary["setup"]
    # Probed: "raw" before the MIME walker (issue 6), "mail, policy" with it.
    assert setup["engine"] == "chaos" and setup["profile"].startswith("auto(")
    assert setup["canaries"]["eicar-raw"] == "1:Eicar-Test-Signature"
    assert summary["verdicts"]["clean"] > 100
    assert summary["verdicts"]["infected"] > 0  # at least the raw EICAR attachments, judged
    blind = summary["blind"]["count"]
    assert (blind > 0) == (setup["profile_decodes"] != ["base64", "uuencode", "zip"])
    assert summary["msgs_per_s"] > 0 and summary["latency_ms"]["p99"] > 0
    with open(out / "rss.csv") as f:
        roles = {row["role"] for row in csv.DictReader(f)}
    assert {"daemon", "worker"} <= roles
    assert (out / "latency.csv").read_text().startswith("t_s,")
