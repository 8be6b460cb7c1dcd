"""Issue 27: libclamav takes the walker's decoded parts (``clamav.mail_parser``).

With ``mail_parser = "scand"`` the Scanner walks once and hands libclamav every
part the walk decoded: bytes the walker read as a message without libclamav's
mail parser (CL_SCAN_PARSE_MAIL off), every other part with every parser. These
tests run the real libclamav (Debian's libclamav12) in this process, with
signatures they write themselves, and check what that hand-off must not lose:
signatures that target mail, TNEF (which libclamav reads only with its mail
parser on), the phishing checks (which run only inside its mail parser, so
``auto`` keeps libclamav's parser for a database that can carry them), and the
verdict cache rules.
"""

from __future__ import annotations

import base64
import io
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from scand.config import Config, ConfigError, from_mapping
from scand.engines.base import load_engine
from scand.engines.clamav import engine as clamav_engine
from scand.engines.clamav.engine import ClamavEngine
from scand.events import CLEAN, Infected
from scand.worker.scanner import Scanner
from tests.content.evasion_cases import EICAR

MARKER = b"X-Campaign-Marker: zebra-42"
# EicarAt0 matches only at offset 0 of a file: inside a container it is found only
# when libclamav extracts the member (the raw bytes of the container do not match).
NDB = (f"EicarAt0:0:0:{EICAR.hex()}\n"
       f"MailOnly:4:*:{MARKER.hex()}\n")  # target type 4: files libclamav types as mail
HTML = (b'<html><body><a href="http://login.evil.test/">http://www.example.com/login</a>'
        b"</body></html>")


@pytest.fixture(scope="module")
def sigdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sigs")
    (d / "test.ndb").write_text(NDB)
    return d


@pytest.fixture(scope="module")
def phishdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("phish")
    (d / "test.ndb").write_text(NDB)
    (d / "test.pdb").write_text("H:example.com\n")  # links showing example.com are checked
    return d


def _config(sigs: Path, mode: str, **sections: dict[str, object]) -> Config:
    return from_mapping({"engine": {"name": "clamav", "signatures": str(sigs)},
                         "clamav": {"mail_parser": mode}, "policy": {"enabled": False},
                         "cache": {"backend": "none"}, **sections})


@pytest.fixture(scope="module", params=["scand", "libclamav"])
def scanner(request: pytest.FixtureRequest, sigdir: Path) -> Iterator[Scanner]:
    config = _config(sigdir, request.param)
    engine = load_engine(config)
    assert isinstance(engine, ClamavEngine) and engine.mail_parser == request.param
    yield Scanner(engine, config)
    engine.close()


def _message(*parts: tuple[str, bytes], headers: bytes = b"") -> bytes:
    """A multipart/mixed message, each part (content type + name, body) in base64."""
    out = [b"From: a@example.org\r\nTo: b@example.org\r\nSubject: test\r\n" + headers
           + b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=BB\r\n\r\n"]
    for ctype, body in parts:
        out.append(b"--BB\r\nContent-Type: " + ctype.encode()
                   + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                   + base64.encodebytes(body).replace(b"\n", b"\r\n"))
    out.append(b"--BB--\r\n")
    return b"".join(out)


def _tnef(name: bytes, data: bytes) -> bytes:
    """A winmail.dat: TNEF signature and key, then attributes (level, id, length,
    value, 16-bit checksum); one attachment with its title and data."""
    def attr(level: int, tag: int, value: bytes) -> bytes:
        return (bytes([level]) + struct.pack("<II", tag, len(value)) + value
                + struct.pack("<H", sum(value) & 0xFFFF))
    return (struct.pack("<IH", 0x223E9F78, 0x1234)
            + attr(1, 0x00089006, b"\x01\x00\x00\x00")  # attTnefVersion
            + attr(2, 0x00069002, bytes(14))  # attAttachRendData: an attachment starts
            + attr(2, 0x00018010, name + b"\x00")  # attAttachTitle
            + attr(2, 0x0006800F, data))  # attAttachData


def _zip(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


# -- what the hand-off must not lose ------------------------------------------------------


def test_mail_signature_matches_the_raw_message_without_the_mail_parser(
        scanner: Scanner) -> None:
    """Target-type-4 (mail) signatures match the message's raw bytes with
    CL_SCAN_PARSE_MAIL off: libclamav still types the file as mail."""
    msg = _message(("text/plain", b"hello\r\n"), headers=MARKER + b"\r\n")
    engine = scanner.engine
    assert engine.scan_walked(msg, "m", True) == Infected("MailOnly.UNOFFICIAL")
    assert engine.scan_walked(b"\x00\x01not mail " + MARKER, "m", False) == CLEAN
    assert scanner.scan_stream(msg).verdict == Infected("MailOnly.UNOFFICIAL")


def test_tnef_attachment_is_read_by_libclamav(scanner: Scanner) -> None:
    """libclamav reads TNEF only with its mail parser on (scanners.c: CL_TYPE_TNEF
    under SCAN_PARSE_MAIL): winmail.dat is no message to the walker, so it is
    handed with every parser and the attachment inside is found."""
    tnef = _tnef(b"eicar.com", EICAR)
    assert EICAR in tnef and not tnef.startswith(EICAR)  # EicarAt0: only if extracted
    assert scanner.engine.scan_walked(tnef, "winmail.dat", True) == CLEAN  # the gate
    assert scanner.engine.scan_walked(tnef, "winmail.dat", False) == Infected(
        "EicarAt0.UNOFFICIAL")
    msg = _message(("text/plain", b"see attached\r\n"),
                   ('application/ms-tnef; name="winmail.dat"', tnef))
    assert scanner.scan_stream(msg).verdict == Infected("EicarAt0.UNOFFICIAL")


def test_nested_message_and_archive_member(scanner: Scanner) -> None:
    """A message/rfc822 part (walked, so scanned without the mail parser) whose zip
    attachment holds the payload: libclamav opens the zip itself."""
    inner = _message(("application/zip; name=a.zip", _zip("a.com", EICAR)))
    msg = _message(("text/plain", b"fwd\r\n"), ("message/rfc822", inner))
    assert scanner.scan_stream(msg).verdict == Infected("EicarAt0.UNOFFICIAL")


def test_mail_signature_in_an_encoded_attached_message(scanner: Scanner) -> None:
    """An attached message in base64: its raw bytes are not in the outer message's,
    so the walker hands the decoded message itself (without the mail parser)."""
    inner = _message(("text/plain", b"hi\r\n"), headers=MARKER + b"\r\n")
    msg = _message(("text/plain", b"fwd\r\n"), ("message/rfc822", inner))
    assert MARKER not in msg
    assert scanner.scan_stream(msg).verdict == Infected("MailOnly.UNOFFICIAL")


def test_phishing_runs_only_inside_libclamavs_mail_parser(phishdir: Path) -> None:
    """The .pdb check happens in mbox.c (checkURLs) only: the same HTML is clean
    alone and clean to a message scan without the mail parser; so ``auto``
    chooses libclamav's parser for a directory with phishing lists."""
    msg = (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: your account\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n" + HTML + b"\r\n")
    auto = _config(phishdir, "auto")
    engine = load_engine(auto)
    try:
        assert isinstance(engine, ClamavEngine)
        assert engine.mail_parser == "libclamav" and not engine.takes_walked
        assert "mail parser: libclamav" in engine.info().detail
        assert engine.scan_walked(HTML, "h", False) == CLEAN
        assert engine.scan_walked(msg, "m", True) == CLEAN
        phish = Scanner(engine, auto).scan_stream(msg).verdict
        assert phish == Infected("Heuristics.Phishing.Email.SpoofedDomain")
    finally:
        engine.close()
    scand_engine = load_engine(_config(phishdir, "scand"))
    try:
        assert scand_engine.takes_walked
        verdict = Scanner(scand_engine, _config(phishdir, "scand")).scan_stream(msg).verdict
        assert verdict == CLEAN  # the documented cost of mail_parser = "scand"
    finally:
        scand_engine.close()


# -- which parser, from the config and the signature directory ----------------------------


@pytest.mark.parametrize(("files", "expected"), [
    ((), "scand"),
    (("a.ndb", "b.hdb", "c.ldb"), "scand"),
    (("a.ndb", "x.pdb"), "libclamav"),
    (("x.wdb",), "libclamav"),
    (("X.GDB",), "libclamav"),
    (("daily.cvd",), "libclamav"),
    (("daily.cld",), "libclamav"),
    (("local.cud",), "libclamav"),
])
def test_auto_chooses_by_the_signature_directory(tmp_path: Path, files: tuple[str, ...],
                                                 expected: str) -> None:
    for name in files:
        (tmp_path / name).write_text("")
    assert clamav_engine.mail_parser(_config(tmp_path, "auto")) == expected
    for forced in ("scand", "libclamav"):
        assert clamav_engine.mail_parser(_config(tmp_path, forced)) == forced


def test_auto_without_a_directory_is_scand() -> None:
    config = from_mapping({"engine": {"name": "clamav"}})
    assert config.clamav.mail_parser == "auto"
    assert clamav_engine.mail_parser(config) == "scand"
    assert clamav_engine.may_hold_phishing("/nonexistent/dir") is False


def test_bad_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"clamav\.mail_parser"):
        from_mapping({"clamav": {"mail_parser": "both"}})


# -- what the scanner hands over, and the cache ------------------------------------------


class _Recorder:
    """Wraps an engine's scan_walked: (where, parsed_message) of every call."""

    def __init__(self, engine: ClamavEngine) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.inner = engine.scan_walked

    def __call__(self, data: bytes, name: str, parsed_message: bool):  # type: ignore[no-untyped-def]
        self.calls.append((name, parsed_message))
        return self.inner(data, name, parsed_message)


def test_parts_handed_and_message_parts_bypass_the_cache(sigdir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(sigdir, "scand", cache={"backend": "memory", "min_part_bytes": 0})
    engine = load_engine(config)
    try:
        assert isinstance(engine, ClamavEngine) and engine.takes_walked
        rec = _Recorder(engine)
        monkeypatch.setattr(engine, "scan_walked", rec)
        scanner = Scanner(engine, config)
        assert scanner.cache.enabled
        inner = _message(("text/plain", b"inner text\r\n"))
        msg = _message(("text/plain", b"hello\r\n"),
                       ("application/zip; name=a.zip", _zip("doc.txt", b"clean text")),
                       ("message/rfc822", inner))
        assert scanner.scan_stream(msg).verdict == CLEAN
        first = rec.calls[:]
        # The message and the attached one without the mail parser; the text parts and
        # the zip with every parser; the zip's member is not handed (libclamav opens it).
        assert sorted(p for _w, p in first) == [False, False, False, True, True]
        assert [w for w, p in first if p][-1] == "input"  # the raw message goes last
        assert not any("doc.txt" in w for w, _p in first)
        rec.calls.clear()
        assert scanner.scan_stream(msg).verdict == CLEAN
        # Again: the decoded parts come from the cache, the messages never do.
        assert sorted(p for _w, p in rec.calls) == [True, True]
    finally:
        engine.close()


@pytest.mark.parametrize("mode", ["scand", "libclamav"])
def test_a_signature_wins_over_a_policy_hit(sigdir: Path, mode: str) -> None:
    """A banned name and a virus in one message: the virus is named, with either
    parser, though the walk checks the member's name before libclamav opens the zip."""
    config = from_mapping({"engine": {"name": "clamav", "signatures": str(sigdir)},
                           "clamav": {"mail_parser": mode}})
    engine = load_engine(config)
    try:
        scanner = Scanner(engine, config)
        both = _message(("application/zip; name=a.zip", _zip("setup.exe", EICAR)))
        assert scanner.scan_stream(both).verdict == Infected("EicarAt0.UNOFFICIAL")
        # A bare zip: scanned last (the verdict cache defers the raw object).
        assert scanner.cache.enabled
        bare = _zip("setup.exe", EICAR)
        assert scanner.scan_stream(bare).verdict == Infected("EicarAt0.UNOFFICIAL")
        banned = _message(("application/zip; name=a.zip", _zip("setup.exe", b"MZ clean")))
        verdict = scanner.scan_stream(banned).verdict
        assert isinstance(verdict, Infected) and verdict.name.startswith("Banned."), verdict
    finally:
        engine.close()
