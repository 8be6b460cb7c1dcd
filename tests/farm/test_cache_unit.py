"""The verdict cache without a daemon: stores, keys, what is cached, and that a
cached ``0`` for the bytes still gets this part's name check."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bench.klez import klez, worm_name, worm_payload, write_signatures
from scand import config as configmod
from scand.cache import lookup
from scand.cache.lookup import PartCache, decode, encode
from scand.cache.memory import MemoryStore
from scand.cache.redis_store import StoreUnavailable
from scand.cache.signing import Signer
from scand.config import Config
from scand.engines.base import load_engine
from scand.events import CLEAN, Infected, Reason, Unchecked, Verdict
from scand.protocol import format_verdict
from scand.worker.scanner import Scanner
from tests.content.corpus import with_attachment


def make_scanner(sigdir: Path, **cache: object) -> Scanner:
    cfg = configmod.override(Config(), "engine", name="builtin", signatures=str(sigdir))
    cfg = configmod.override(cfg, "cache", **cache)
    return Scanner(load_engine(cfg), cfg)


def reply(s: Scanner, data: bytes) -> str:
    return format_verdict(s.scan_stream(data).verdict).decode().strip()


def test_memory_store_ttl_and_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("scand.cache.memory.time.monotonic", lambda: now[0])
    store = MemoryStore(max_entries=3, ttl=10)
    for k in "abcd":
        store.put(k, b"0")
    assert len(store) == 3 and store.get("a") is None  # least recently used went first
    assert store.get("b") == b"0"
    now[0] += 10.5
    assert store.get("b") is None and store.get("d") is None


def test_values() -> None:
    assert decode(encode(CLEAN)) == CLEAN
    assert decode(encode(Infected("Worm.X"))) == Infected("Worm.X")
    for bad in (b"", b"1", b"1:", b"1:a b", b"1:a\nb", b"-1:busy", b"00", b"clean"):
        assert decode(bad) is None  # a malformed entry is a miss, never a verdict


class Broken:
    shared = True

    def get(self, key: str) -> bytes | None:
        raise StoreUnavailable("down")

    def put(self, key: str, value: bytes) -> None:
        raise StoreUnavailable("down")


def test_only_definitive_verdicts_are_stored() -> None:
    store = MemoryStore(100, 60)
    cache = PartCache(store, "p:", "gen", "pol")
    answers: list[Verdict] = [Unchecked(Reason.TIMEOUT), CLEAN]
    calls = []

    def scan(data: bytes, where: str) -> Verdict:
        calls.append(data)
        return answers.pop(0)

    assert cache.scan(scan, b"x", "w") == Unchecked(Reason.TIMEOUT)
    assert len(store) == 0
    assert cache.scan(scan, b"x", "w") == CLEAN
    assert cache.scan(scan, b"x", "w") == CLEAN  # from the cache: scan not called
    assert len(calls) == 2 and cache.take_counts() == (1, 2, 0)
    assert cache.take_counts() == (0, 0, 0)


def test_a_failing_store_costs_a_scan_not_an_answer() -> None:
    errors: list[str] = []
    cache = PartCache(Broken(), "p:", "gen", "pol", errors.append, signer=Signer(b"s" * 16))
    assert cache.scan(lambda d, w: Infected("W"), b"x", "w") == Infected("W")
    assert cache.scan(lambda d, w: CLEAN, b"y", "w") == CLEAN
    assert cache.take_counts() == (0, 2, 0) and cache.errors == 4 and errors


def test_no_generation_no_cache() -> None:
    cache = PartCache(MemoryStore(10, 60), "p:", "", "pol")
    assert not cache.enabled


def test_chaos_engine_is_never_cached(tmp_path: Path) -> None:
    cfg = configmod.override(Config(), "engine", name="chaos")
    s = Scanner(load_engine(cfg), cfg)
    assert not s.cache.enabled


def test_cached_clean_bytes_still_get_the_name_check(tmp_path: Path) -> None:
    s = make_scanner(write_signatures(tmp_path / "sigs"))
    blob = b"%PDF-1.4 shared logo bytes " * 100
    assert reply(s, with_attachment("logo.pdf", blob)) == "0"
    hits_before = s.cache.hits
    assert reply(s, with_attachment("logo.pdf.exe", blob)).startswith("1:Banned.")
    assert s.cache.hits > hits_before  # the bytes were a hit; the name was still checked


def test_new_signature_makes_a_cached_zero_come_back_infected(tmp_path: Path) -> None:
    sigdir = tmp_path / "sigs"
    sigdir.mkdir()
    blob = b"MZ" + b"innocent until signed " * 500
    first = make_scanner(sigdir)
    shared = first.cache.store
    assert reply(first, with_attachment("a.doc", blob)) == "0"
    assert reply(first, with_attachment("b.doc", blob)) == "0" and first.cache.hits
    (sigdir / "new.hdb").write_text(f"{hashlib.md5(blob).hexdigest()}:{len(blob)}:New.Worm\n")
    second = make_scanner(sigdir)  # what a reload loads
    second.cache.store = shared
    assert second.cache.prefix != first.cache.prefix
    assert reply(second, with_attachment("c.doc", blob)) == "1:New.Worm"


def test_policy_change_makes_entries_unusable(tmp_path: Path) -> None:
    sigdir = write_signatures(tmp_path / "sigs")
    a = make_scanner(sigdir)
    cfg = configmod.override(
        configmod.override(Config(), "engine", name="builtin", signatures=str(sigdir)),
        "policy", extensions=["exe"])
    b = Scanner(load_engine(cfg), cfg)
    assert a.cache.prefix != b.cache.prefix


def test_signature_dir_changing_during_load_disables_the_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sigdir = write_signatures(tmp_path / "sigs")
    fingerprints = iter(["before", "after"])
    monkeypatch.setattr("scand.engines.base.directory_fingerprint",
                        lambda path: next(fingerprints))
    cfg = configmod.override(Config(), "engine", name="builtin", signatures=str(sigdir))
    assert load_engine(cfg).generation_id == ""


def test_klez_corpus_every_verdict_right(tmp_path: Path) -> None:
    s = make_scanner(write_signatures(tmp_path / "sigs"))
    plain = make_scanner(write_signatures(tmp_path / "sigs"), backend="none")
    mails = klez(300)
    got = [reply(s, m.data) for m in mails]
    assert got == [m.expect for m in mails]
    assert got == [reply(plain, m.data) for m in mails]
    assert sum(m.expect != "0" for m in mails) > 250
    hits, _misses, _bad = s.cache.take_counts()
    assert hits >= sum(m.expect != "0" for m in mails) - 5  # each worm scanned once
    assert f"1:{worm_name(0)}" in got and worm_payload(0)[:2] == b"MZ"


def test_lookup_module_has_no_trio() -> None:
    assert "trio" not in vars(lookup)


def _b64_mail(payload: bytes, width: int, name: str, crlf: bool = True) -> bytes:
    import base64
    import binascii

    raw = binascii.b2a_base64(payload, newline=False)
    lines = [raw[i:i + width] for i in range(0, len(raw), width)]
    nl = b"\r\n" if crlf else b"\n"
    assert base64.b64decode(raw) == payload
    return nl.join([
        b"From: a@example.com", b"Subject: hi " + name.encode(), b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="XYZ"', b"",
        b"--XYZ", b"Content-Type: text/plain", b"", b"see attached", b"--XYZ",
        b"Content-Type: application/octet-stream", b"Content-Transfer-Encoding: base64",
        b'Content-Disposition: attachment; filename="' + name.encode() + b'"', b"",
        *lines, b"--XYZ--", b""])


def test_known_base64_body_answers_infected_before_the_walk(tmp_path: Path) -> None:
    s = make_scanner(write_signatures(tmp_path / "sigs"))
    worm = worm_payload(2)
    first = _b64_mail(worm, 76, "a.pif")
    assert reply(s, first) == f"1:{worm_name(2)}"
    assert s.cache.known_infected(first) == Infected(worm_name(2))
    # Other headers, the same base64 text: known before the walk.
    copy = _b64_mail(worm, 76, "b.doc")
    assert s.cache.known_infected(copy) == Infected(worm_name(2))
    assert reply(s, copy) == f"1:{worm_name(2)}"
    # Wrapped differently (another mailer): a walk, a per-part hit, then known too.
    other = _b64_mail(worm, 64, "c.doc", crlf=False)
    assert s.cache.known_infected(other) is None
    hits = s.cache.hits
    assert reply(s, other) == f"1:{worm_name(2)}" and s.cache.hits > hits
    assert s.cache.known_infected(other) == Infected(worm_name(2))


def test_clean_base64_body_is_never_a_fast_answer(tmp_path: Path) -> None:
    s = make_scanner(write_signatures(tmp_path / "sigs"))
    blob = b"%PDF-1.4 " + bytes(range(256)) * 40
    mail = _b64_mail(blob, 76, "a.pdf")
    assert reply(s, mail) == "0"
    assert s.cache.known_infected(mail) is None  # a 0 always takes the whole walk
    assert reply(s, _b64_mail(blob, 76, "a.pdf.exe")).startswith("1:Banned.")


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    from scand.config import ConfigError, from_mapping

    secret = tmp_path / "secret"
    secret.write_text("0123456789abcdef0123456789abcdef\n")
    secret.chmod(0o600)
    bad = [
        ({"cache": {"backend": "redis", "secret_file": str(secret)}}, "cache.redis_url"),
        ({"cache": {"backend": "disk"}}, "cache.backend"),
        ({"cache": {"redis_url": "http://x"}}, "cache.redis_url"),
        ({"server": {"tls": ["127.0.0.1:4010"]}}, "server.tls"),
        ({"server": {"tcp": ["nohost"]}}, "server.tcp"),
        ({"server": {"tcp_allow": ["10.0.0.0/33"]}}, "server.tcp_allow"),
        ({"metrics": {"listen": "localhost"}}, "metrics.listen"),
        ({"metrics": {"allow": ["nonsense"]}}, "metrics.allow"),
    ]
    for data, key in bad:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            from_mapping(data)
    ok = from_mapping({"cache": {"backend": "redis", "redis_url": "redis://127.0.0.1:6379",
                                 "secret_file": str(secret)},
                       "metrics": {"listen": "[::1]:9117"}})
    assert ok.cache.backend == "redis" and ok.metrics.listen == "[::1]:9117"


def test_engines_that_decode_by_themselves_learn_worm_bodies(tmp_path: Path) -> None:
    """libclamav names no part: after it finds a message infected, each base64 body is
    scanned alone, and a body infected by itself answers the next copies before the
    engine runs; a clean body in the same message is never learned."""
    sigdir = write_signatures(tmp_path / "sigs")
    cfg = configmod.override(Config(), "engine", name="clamav", signatures=str(sigdir))
    cfg = configmod.override(cfg, "clamav", tmp_dir=str(tmp_path / "ctmp"))
    s = Scanner(load_engine(cfg), cfg)
    name = f"1:{worm_name(1)}.UNOFFICIAL"  # libclamav marks private signatures
    first = _b64_mail(worm_payload(1), 76, "a.pif")
    assert reply(s, first) == name
    s.cache.take_counts()
    calls: list[str] = []
    scan_bytes = s.engine.scan_bytes

    def counting(data: bytes, where: str) -> Verdict:
        calls.append(where)
        return scan_bytes(data, where)

    s.engine.scan_bytes = counting  # type: ignore[method-assign]
    copy = _b64_mail(worm_payload(1), 76, "other.scr")  # new headers, the same body
    assert reply(s, copy) == name
    assert s.cache.take_counts() == (1, 0, 0) and calls == []  # known: no engine call
    # A clean attachment beside an infected one: the clean body is never learned.
    blob = b"%PDF-1.4 " + bytes(range(256)) * 40
    clean = _b64_mail(blob, 76, "r.pdf")
    assert reply(s, clean) == "0"
    worm_part = first.split(b"--XYZ\r\n")[2].split(b"--XYZ--")[0]
    two = clean.replace(b"--XYZ--", b"--XYZ\r\n" + worm_part + b"--XYZ--")
    assert two.count(b"Content-Transfer-Encoding: base64") == 2
    fresh = Scanner(load_engine(cfg), cfg)  # an empty cache
    assert reply(fresh, two) == name  # the engine, then each body alone
    assert fresh.cache.known_infected(two) == Infected(f"{worm_name(1)}.UNOFFICIAL")
    assert fresh.cache.known_infected(clean) is None  # the clean body was not learned
    assert reply(fresh, clean) == "0"


def test_stream_to_a_self_decoding_engine_learns_too(tmp_path: Path) -> None:
    sigdir = write_signatures(tmp_path / "sigs")
    cfg = configmod.override(Config(), "engine", name="clamav", signatures=str(sigdir))
    cfg = configmod.override(cfg, "clamav", tmp_dir=str(tmp_path / "ctmp"))
    s = Scanner(load_engine(cfg), cfg)
    name = f"1:{worm_name(3)}.UNOFFICIAL"
    assert reply(s, _b64_mail(worm_payload(3), 76, "x.pif")) == name
    s.cache.take_counts()
    assert reply(s, _b64_mail(worm_payload(3), 76, "y.pif")) == name
    assert s.cache.take_counts() == (1, 0, 0)


def test_every_worm_is_learned_on_a_stream_even_after_hits(tmp_path: Path) -> None:
    """Learning follows each engine 1:, not a hit count that only a job's end resets."""
    sigdir = write_signatures(tmp_path / "sigs")
    cfg = configmod.override(Config(), "engine", name="clamav", signatures=str(sigdir))
    cfg = configmod.override(cfg, "clamav", tmp_dir=str(tmp_path / "ctmp"))
    s = Scanner(load_engine(cfg), cfg)
    for i in (0, 0, 1, 2):  # the second copy of worm 0 is a hit; 1 and 2 are learned too
        assert reply(s, _b64_mail(worm_payload(i), 76, f"{i}.pif")) == (
            f"1:{worm_name(i)}.UNOFFICIAL")
    for i in (0, 1, 2):
        assert s.cache.known_infected(_b64_mail(worm_payload(i), 76, "new.scr")) == Infected(
            f"{worm_name(i)}.UNOFFICIAL")
