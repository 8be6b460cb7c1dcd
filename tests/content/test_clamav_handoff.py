"""Issue 27: libclamav takes the walker's decoded parts (``clamav.mail_parser``).

With ``mail_parser = "scand"`` the Scanner walks once and hands libclamav every
part the walk decoded: bytes the walker read as a message without libclamav's
mail parser (CL_SCAN_PARSE_MAIL off), every other part with every parser. These
tests run the real libclamav (Debian's libclamav12) in this process, with
signatures they write themselves, and check what that hand-off must not lose:
signatures that target mail, TNEF (which libclamav reads only with its mail
parser on), the phishing checks (which run only inside its mail parser: with
phishing lists loaded each text part goes to libclamav inside a minimal
message, scand.engines.clamav.urlcheck), and the verdict cache rules.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import quopri
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from scand.config import Config, ConfigError, ContentConfig, from_mapping
from scand.content.parts import Part
from scand.content.walker import looks_like_message, walk
from scand.engines.base import load_engine
from scand.engines.clamav import engine as clamav_engine
from scand.engines.clamav import urlcheck
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


@pytest.fixture(scope="module", params=["scand", "libclamav", "scand-phish"])
def scanner(request: pytest.FixtureRequest, sigdir: Path, phishdir: Path) -> Iterator[Scanner]:
    """Each parser; ``scand-phish``: the walker's parts with a phishing list loaded
    (text parts handed in a message, with libclamav's mail parser on)."""
    mode, _, phish = request.param.partition("-")
    config = _config(phishdir if phish else sigdir, mode)
    engine = load_engine(config)
    assert isinstance(engine, ClamavEngine) and engine.mail_parser == mode
    assert engine.url_check == bool(phish)
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


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_every_message_of_an_mbox(scanner: Scanner, eol: bytes) -> None:
    """An mbox file (a "From " line first) holds several messages; libclamav's mail
    parser reads each (mbox.c: a "From " line after an empty one starts the next).
    The walker reads the first only, so an mbox is handed with the mail parser on:
    the second message's attachment is found as libclamav's own parser finds it."""
    first = _message(("text/plain", b"hello\r\n")).replace(b"BB", b"AA")
    second = _message(("application/octet-stream; name=a.com", EICAR))
    mbox = (b"From a@example.org Mon Dec  7 10:00:00 2026\n" + first
            + b"\nFrom a@example.org Mon Dec  7 10:01:00 2026\n" + second
            ).replace(b"\r\n", b"\n").replace(b"\n", eol)
    assert scanner.scan_stream(mbox).verdict == Infected("EicarAt0.UNOFFICIAL")


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_a_message_after_an_mbox_from_line_is_walked(eol: bytes) -> None:
    """The "From " line may end in CRLF: the message after it is still read as one
    (its attachment's name reaches the policy, and its parts the engine)."""
    msg = _message(("application/octet-stream; name=a.com", EICAR)).replace(b"\r\n", eol)
    mbox = b"From a@example.org Mon Dec  7 10:01:00 2026" + eol + msg
    assert looks_like_message(mbox)
    names = [n for item in walk(mbox, "", ContentConfig(), keep_data=False)
             if isinstance(item, Part) for n in item.names]
    assert "a.com" in names


def test_mail_signature_in_an_encoded_attached_message(scanner: Scanner) -> None:
    """An attached message in base64: its raw bytes are not in the outer message's,
    so the walker hands the decoded message itself (without the mail parser)."""
    inner = _message(("text/plain", b"hi\r\n"), headers=MARKER + b"\r\n")
    msg = _message(("text/plain", b"fwd\r\n"), ("message/rfc822", inner))
    assert MARKER not in msg
    assert scanner.scan_stream(msg).verdict == Infected("MailOnly.UNOFFICIAL")


def test_phishing_runs_only_inside_libclamavs_mail_parser(phishdir: Path) -> None:
    """The .pdb check happens in mbox.c (checkURLs) only: the same HTML is clean
    alone and clean to a message scan without the mail parser; handed in a
    message whose first header libclamav takes for mail, it is found."""
    engine = load_engine(_config(phishdir, "auto"))
    try:
        assert isinstance(engine, ClamavEngine)
        assert engine.mail_parser == "scand" and engine.takes_walked and engine.url_check
        assert engine.info().detail.endswith("mail parser: scand, phishing check: text parts")
        assert engine.scan_walked(HTML, "h", False) == CLEAN
        assert engine.scan_walked(PHISH, "m", True) == CLEAN
        assert engine.scan_walked(PHISH, "m", False) == SPOOFED
        form = engine.walked_form(HTML, "text/html", False)
        assert form is not None and form.startswith(b"MIME-Version: 1.0\r\n")
        assert engine.scan_walked(form, "h", False) == SPOOFED
        # Content-Type alone is not read as mail: the check would never run.
        assert engine.scan_walked(form.split(b"\r\n", 1)[1], "h", False) == CLEAN
    finally:
        engine.close()


def _part(ctype: bytes, cte: bytes, body: bytes, extra: bytes = b"") -> bytes:
    encoded = {b"base64": base64.encodebytes, b"quoted-printable": quopri.encodestring}.get(
        cte, lambda b: b)(body)
    return (b"Content-Type: " + ctype + b"\r\n"
            + (b"Content-Transfer-Encoding: " + cte + b"\r\n" if cte else b"")
            + extra + b"\r\n" + encoded + b"\r\n")


def _multi(subtype: bytes, *parts: bytes) -> bytes:
    return (b"Content-Type: multipart/" + subtype + b"; boundary=BB\r\n\r\n"
            + b"".join(b"--BB\r\n" + p for p in parts) + b"--BB--\r\n")


HEAD = (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: your account\r\n"
        b"MIME-Version: 1.0\r\n")
PHISH = HEAD + _part(b"text/html", b"", HTML)
SPOOFED = Infected("Heuristics.Phishing.Email.SpoofedDomain")
SAFE_HTML = b'<html><body><a href="http://www.example.com/">www.example.com</a></body></html>'
_NESTED = b"Subject: fwd\r\nMIME-Version: 1.0\r\n" + _multi(
    b"alternative", _part(b"text/plain", b"", b"hi"), _part(b"text/html", b"base64", HTML))
PHISHING_LAYOUTS = {
    "text/html": PHISH,
    "text/plain holding html": HEAD + _part(b"text/plain", b"", HTML),
    "no content-type": HEAD + b"\r\n" + HTML + b"\r\n",
    "alternative, base64": HEAD + _multi(b"alternative", _part(b"text/plain", b"", b"hi"),
                                         _part(b"text/html", b"base64", HTML)),
    "alternative, quoted-printable": HEAD + _multi(
        b"alternative", _part(b"text/plain", b"", b"hi"),
        _part(b"text/html; charset=utf-8", b"quoted-printable", HTML)),
    "inline with a name": HEAD + _multi(b"mixed", _part(
        b"text/html; name=a.html", b"base64", HTML,
        b"Content-Disposition: inline; filename=a.html\r\n")),
    "text/plain, 8bit, in a multipart": HEAD + _multi(b"mixed",
                                                      _part(b"text/plain", b"8bit", HTML)),
    "nested message": HEAD + _multi(b"mixed", _part(b"text/plain", b"", b"fwd"),
                                    _part(b"message/rfc822", b"", _NESTED)),
    "nested message in base64": HEAD + _multi(b"mixed", _part(b"text/plain", b"", b"fwd"),
                                              _part(b"message/rfc822", b"base64", _NESTED)),
    "nested message, quoted-printable html": HEAD + _multi(
        b"mixed", _part(b"text/plain", b"", b"fwd"), _part(
            b"message/rfc822", b"", b"Subject: fwd\r\nMIME-Version: 1.0\r\n" + _multi(
                b"alternative", _part(b"text/plain", b"", b"hi"),
                _part(b"text/html", b"quoted-printable", HTML + b"=" * 3 + b"\xe9" * 90)))),
    # The same bytes met first as a uuencoded block (no check: libclamav checks no
    # such block), then as a text/html part: the walker's second sight of them is
    # still handed, so the text part gets its check.
    "html also uuencoded before": HEAD + _multi(
        b"mixed", _part(b"text/plain", b"", b"see below\r\nbegin 644 page.htm\r\n" + b"".join(
            binascii.b2a_uu(HTML[i:i + 45]) for i in range(0, len(HTML), 45))
            + b"`\r\nend\r\n"), _part(b"text/html", b"base64", HTML)),
}
CLEAN_LAYOUTS = {
    # No tag argument, no http/ftp URL: scand hands the part as itself.
    "no link": HEAD + _multi(b"alternative", _part(b"text/plain", b"", b"www.example.com"),
                             _part(b"text/html", b"base64", b"<p>www.example.com</p>")),
    "honest link": HEAD + _multi(b"alternative", _part(b"text/html", b"base64", SAFE_HTML)),
    # mbox.c getHrefs: a body over 100 KiB is not read for links.
    "over 100 KiB": HEAD + _part(b"text/html", b"base64",
                                 HTML + b"<p>" + b"x" * 110_000 + b"</p>"),
}


@pytest.fixture(scope="module", params=["scand", "libclamav"])
def phishing(request: pytest.FixtureRequest, phishdir: Path) -> Iterator[Scanner]:
    config = _config(phishdir, request.param)
    engine = load_engine(config)
    yield Scanner(engine, config)
    engine.close()


@pytest.mark.parametrize("layout", PHISHING_LAYOUTS)
def test_phishing_found_by_either_parser(phishing: Scanner, layout: str) -> None:
    assert phishing.scan_stream(PHISHING_LAYOUTS[layout]).verdict == SPOOFED


@pytest.mark.parametrize("layout", CLEAN_LAYOUTS)
def test_no_phishing_by_either_parser(phishing: Scanner, layout: str) -> None:
    assert phishing.scan_stream(CLEAN_LAYOUTS[layout]).verdict == CLEAN


@pytest.mark.parametrize("layout", [
    "attachment", "text/plain, 7bit, in a multipart", "no content-type, in a multipart"])
def test_phishing_checked_on_more_text_parts_than_libclamav(phishdir: Path,
                                                            layout: str) -> None:
    """The walker's parts carry no disposition or transfer encoding, so scand hands
    every text part of a message for the check: libclamav skips an attached one,
    a 7bit text/plain one and one without a type inside a multipart."""
    msg = HEAD + _multi(b"mixed", _part(b"text/plain", b"", b"hi"), {
        "attachment": _part(b"text/html; name=a.html", b"base64", HTML,
                            b"Content-Disposition: attachment; filename=a.html\r\n"),
        "text/plain, 7bit, in a multipart": _part(b"text/plain", b"7bit", HTML),
        "no content-type, in a multipart": b"\r\n" + HTML + b"\r\n",
    }[layout])
    verdicts = {}
    for mode in ("scand", "libclamav"):
        config = _config(phishdir, mode)
        engine = load_engine(config)
        try:
            verdicts[mode] = Scanner(engine, config).scan_stream(msg).verdict
        finally:
            engine.close()
    assert verdicts == {"scand": SPOOFED, "libclamav": CLEAN}


def test_a_text_part_handed_for_the_check_meets_every_signature(
        tmp_path: Path, phishdir: Path) -> None:
    """The part goes in base64, which libclamav decodes to the exact bytes: a hash
    signature (.hdb) on the text part still matches, as a raw one does; in 8bit
    its line ends would come back changed."""
    text = (b"quarterly figures\r\nsee http://www.example.org/table\r\n" + b"x" * 3000
            + b"\r\nend\r\n")
    (tmp_path / "test.pdb").write_text((phishdir / "test.pdb").read_text())
    (tmp_path / "part.hdb").write_text(f"{hashlib.md5(text).hexdigest()}:{len(text)}:PartHash\n")
    config = _config(tmp_path, "scand")
    engine = load_engine(config)
    try:
        assert isinstance(engine, ClamavEngine) and engine.url_check
        assert engine.scan_walked(text, "t", False) == Infected("PartHash.UNOFFICIAL")
        form = engine.walked_form(text, "text/plain", False)
        assert form is not None and text not in form
        assert engine.scan_walked(form, "t", False) == Infected("PartHash.UNOFFICIAL")
        eightbit = form.split(b"Content-Transfer-Encoding")[0] + b"\r\n" + text
        assert engine.scan_walked(eightbit, "t", False) == CLEAN
        msg = HEAD + _multi(b"alternative", _part(b"text/plain", b"base64", text),
                            _part(b"text/html", b"base64", SAFE_HTML))
        assert Scanner(engine, config).scan_stream(msg).verdict == Infected(
            "PartHash.UNOFFICIAL")
    finally:
        engine.close()


@pytest.mark.parametrize(("data", "mime", "alt", "wrapped"), [
    (HTML, "text/html", False, True),
    (HTML, "TEXT/PLAIN", True, True),
    (HTML, "", False, True),  # a body without a Content-Type
    (HTML, "", True, False),  # a uuencoded or BinHex block
    (b"\x00\x01" + HTML, "", False, False),
    (HTML, "application/octet-stream", False, False),
    (b"x" * (100 * 1024 + 1), "text/html", False, False),
    (b"", "text/html", False, False),
    # No link can be found: no tag argument with a value, no http/ftp URL.
    (b"<html><body><p>quarterly figures</p></body></html>", "text/html", False, False),
    (b"see you at noon\r\n", "text/plain", False, False),
    (b"see HTTPS://www.example.com/\r\n", "text/plain", False, True),
    (b"mirror at Ftp.example.com\r\n", "text/plain", False, True),
    (b"<p class=x>hi</p>", "text/html", False, True),
])
def test_which_parts_are_handed_for_the_check(phishdir: Path, sigdir: Path, data: bytes,
                                              mime: str, alt: bool, wrapped: bool) -> None:
    engine = ClamavEngine(_config(phishdir, "scand"))  # not loaded: no scan here
    assert (engine.walked_form(data, mime, alt) is not None) == wrapped
    assert ClamavEngine(_config(sigdir, "scand")).walked_form(data, mime, alt) is None
    assert ClamavEngine(_config(phishdir, "libclamav")).walked_form(data, mime, alt) is None


def test_the_form_names_a_fit_media_type_only() -> None:
    assert urlcheck.wrap(b"abc", "text/html").startswith(
        b"MIME-Version: 1.0\r\nContent-Type: text/html\r\n")
    odd = urlcheck.wrap(b"abc", "text/html\r\nX-Evil: 1")
    assert b"X-Evil" not in odd and b"Content-Type: text/plain\r\n" in odd
    body = urlcheck.wrap(bytes(range(256)) * 10, "text/plain").split(b"\r\n\r\n", 1)[1]
    assert base64.b64decode(body) == bytes(range(256)) * 10
    assert max(len(line) for line in body.split(b"\n")) < 1000


# -- which parser, from the config and the signature directory ----------------------------


@pytest.mark.parametrize(("files", "phishing"), [
    ((), False),
    (("a.ndb", "b.hdb", "c.ldb"), False),
    (("a.ndb", "x.pdb"), True),
    (("x.wdb",), True),
    (("X.GDB",), True),
    (("daily.cvd",), True),
    (("daily.cld",), True),
    (("local.cud",), True),
])
def test_auto_is_scand_whatever_the_signature_directory(tmp_path: Path, files: tuple[str, ...],
                                                        phishing: bool) -> None:
    """A directory that can hold phishing lists (a stock freshclam one: daily.cvd)
    no longer switches the path: it turns the check of the text parts on."""
    for name in files:
        (tmp_path / name).write_text("")
    assert clamav_engine.mail_parser(_config(tmp_path, "auto")) == "scand"
    assert clamav_engine.may_hold_phishing(str(tmp_path)) == phishing
    assert ClamavEngine(_config(tmp_path, "auto")).url_check == phishing
    for forced in ("scand", "libclamav"):
        assert clamav_engine.mail_parser(_config(tmp_path, forced)) == forced
    assert not ClamavEngine(_config(tmp_path, "libclamav")).url_check


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
        self.forms = 0  # text parts handed in their message form (urlcheck.wrap)
        self.inner = engine.scan_walked

    def __call__(self, data: bytes, name: str, parsed_message: bool):  # type: ignore[no-untyped-def]
        self.calls.append((name, parsed_message))
        self.forms += data.startswith(b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n")
        return self.inner(data, name, parsed_message)


@pytest.mark.parametrize("phish", [False, True])
def test_parts_handed_and_message_parts_bypass_the_cache(sigdir: Path, phishdir: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         phish: bool) -> None:
    """With a phishing list the text parts are handed in their message form, and
    cached under it: a second copy of the mail takes them from the cache too."""
    config = _config(phishdir if phish else sigdir, "scand",
                     cache={"backend": "memory", "min_part_bytes": 0})
    engine = load_engine(config)
    try:
        assert isinstance(engine, ClamavEngine) and engine.takes_walked
        assert engine.url_check == phish
        rec = _Recorder(engine)
        monkeypatch.setattr(engine, "scan_walked", rec)
        scanner = Scanner(engine, config)
        assert scanner.cache.enabled
        inner = _message(("text/plain", b"inner text, http://www.example.org/\r\n"))
        msg = _message(("text/plain", b"hello from http://www.example.org/\r\n"),
                       ("application/zip; name=a.zip", _zip("doc.txt", b"clean text")),
                       ("message/rfc822", inner))
        assert scanner.scan_stream(msg).verdict == CLEAN
        first = rec.calls[:]
        # The message and the attached one without the mail parser; the text parts and
        # the zip with every parser; the zip's member is not handed (libclamav opens it).
        assert sorted(p for _w, p in first) == [False, False, False, True, True]
        assert [w for w, p in first if p][-1] == "input"  # the raw message goes last
        assert not any("doc.txt" in w for w, _p in first)
        assert rec.forms == (2 if phish else 0)  # "hello" and "inner text"
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
