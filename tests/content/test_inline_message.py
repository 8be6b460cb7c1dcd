"""A message inside a text, after a preamble: clamscan is the referee.

libclamav with its mail parser on (clamd's default) reads a message that begins
anywhere in a text (scand.content.embedded). For every layout of
tests/content/inline_cases.py this re-runs ``clamscan --scan-mail=yes`` (and
``=no``: its mail parser is what finds it) with an EICAR-only database, checks
the recorded answer, and asks scand: the built-in engine and libclamav in the
worker with each ``clamav.mail_parser`` must find EICAR wherever clamscan does,
and a text that only looks like mail gets no part from this reading.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from scand.config import Config, from_mapping
from scand.content import Part, embedded, walk
from scand.engines.base import load_engine
from scand.events import Clean, Infected, Reason, Unchecked
from scand.worker.scanner import Scanner
from tests.content.evasion_cases import EICAR, b64
from tests.content.inline_cases import PREAMBLE, PROSE, QMAIL, Layout, inner, layouts

LAYOUTS = layouts()
IDS = [layout.id for layout in LAYOUTS]


def _clamscan(tmp: Path, scan_mail: str) -> dict[str, bool]:
    if shutil.which("clamscan") is None:
        pytest.fail("clamscan not installed: run ./scripts/test (installs clamav)")
    db = tmp / "eicar.ndb"
    db.write_text(f"Eicar:0:*:{EICAR.hex()}\n")
    files = []
    for layout in LAYOUTS:
        path = tmp / f"{layout.id}.txt"
        path.write_bytes(layout.data)
        files.append(str(path))
    proc = subprocess.run(["clamscan", "--no-summary", "--stdout", "-d", str(db),
                           f"--scan-mail={scan_mail}", *files],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    said = {Path(line.split(": ", 1)[0]).stem: line.endswith(" FOUND")
            for line in proc.stdout.splitlines() if ": " in line}
    assert sorted(said) == sorted(IDS), proc.stdout
    return said


@pytest.fixture(scope="module")
def clamscan(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bool]:
    return _clamscan(tmp_path_factory.mktemp("inline"), "yes")


def test_clamscan_agrees_with_the_record(clamscan: dict[str, bool],
                                         tmp_path: Path) -> None:
    assert clamscan == {layout.id: layout.clamscan for layout in LAYOUTS}
    # Its mail parser is what finds them: off, none is found.
    assert not any(_clamscan(tmp_path, "no").values())


@pytest.fixture(scope="module")
def sigdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sigs")
    (d / "eicar.ndb").write_text(f"Eicar:0:*:{EICAR.hex()}\n")
    return d


def _scanner(config: Config) -> Scanner:
    return Scanner(load_engine(config), config)


@pytest.fixture(scope="module", params=["builtin", "clamav-scand", "clamav-libclamav"])
def scanner(request: pytest.FixtureRequest, sigdir: Path) -> Iterator[Scanner]:
    name, _, mode = request.param.partition("-")
    sections: dict[str, dict[str, object]] = {"cache": {"backend": "none"}}
    if mode:
        sections |= {"engine": {"name": name, "signatures": str(sigdir)},
                     "clamav": {"mail_parser": mode}}
    else:
        sections["engine"] = {"name": name}
    found = _scanner(from_mapping(sections))
    yield found
    found.engine.close()


@pytest.mark.parametrize("layout", LAYOUTS, ids=IDS)
def test_scand_finds_it_wherever_clamscan_does(scanner: Scanner, clamscan: dict[str, bool],
                                               layout: Layout) -> None:
    verdict = scanner.scan_stream(layout.data).verdict
    if clamscan[layout.id] or layout.message:
        assert isinstance(verdict, Infected) and "Eicar" in verdict.name, verdict
    else:
        assert isinstance(verdict, Clean), verdict


def test_a_bounce_with_the_headers_only_is_clean(scanner: Scanner) -> None:
    """A bounce that copies only the header block of a multipart message: the inline
    reading finds no part, which is no -1:unreadable (the text was read as it is)."""
    headers_only = QMAIL + inner().split(b"\n\n", 1)[0] + b"\n\n"
    assert _first(headers_only) is not None
    assert isinstance(scanner.scan_stream(headers_only).verdict, Clean)
    cut = headers_only + b"This is a multi-part message in MIME format.\n"  # bounce_size
    assert isinstance(scanner.scan_stream(cut).verdict, Clean)


@pytest.mark.parametrize("layout", [x for x in LAYOUTS if not x.message],
                         ids=[x.id for x in LAYOUTS if not x.message])
def test_a_text_that_only_looks_like_mail_gets_no_part(layout: Layout) -> None:
    where = [item.where for item in walk(layout.data, "t.txt", Config().content)
             if isinstance(item, Part)]
    assert not [w for w in where if "message@" in w], where


def test_the_reading_is_alternative_and_reaches_a_names_only_walk() -> None:
    """clamd and libclamav's own parser get the decoded part handed (alt, with bytes),
    also from a text/plain part a names-only walk would otherwise not decode."""
    text = next(x for x in LAYOUTS if x.id == "in-text-part").data
    for keep in (True, False):
        hits = [item for item in walk(text, "", Config().content, keep_data=keep)
                if isinstance(item, Part) and EICAR in item.data]
        assert hits and all(p.alt and "message@" in p.where for p in hits), hits


def _first(data: bytes) -> int | None:
    found = next(embedded.starts(data), None)
    return None if found is None else found[0]


def test_where_a_message_starts() -> None:
    message = inner()
    assert _first(PREAMBLE + message) == len(PREAMBLE)
    assert _first(message) == message.index(b"\nFrom:") + 1  # never offset 0
    crlf = (PREAMBLE + message).replace(b"\n", b"\r\n")
    assert _first(crlf) == len(PREAMBLE) + PREAMBLE.count(b"\n")
    cr = (PREAMBLE + message).replace(b"\n", b"\r")
    assert cr[_first(cr) or 0:].startswith(b"Received:")
    # A header block without a content header that decodes is no start; the next is.
    plain = b"From: a\nSubject: b\nContent-Type: text/plain\n\nhi\n"
    assert _first(b"x\n" + plain) is None
    assert _first(b"x\n" + plain + b"\n" + message) == 2 + len(plain) + 1
    # Content-Type first, the mail header after it: one block, read from its start.
    moved = b"x\nContent-Type: multipart/mixed; boundary=Q\nFrom: a\n\n--Q\n"
    assert _first(moved) == 2
    assert _first(b"x\nFrom: a\nContent-Transfer-Encoding: base64") is None  # no EOL
    assert _first(b"x\nFrom: a\nContent-Transfer-Encoding: 7bit\n\nhi\n") is None
    assert _first(b"x\n> From: a\n> Content-Type: multipart/mixed\n\n") is None


def test_a_chain_of_inline_messages_is_read_flat() -> None:
    """Each message in the text part of the one before, as it is: every start of the
    text is read where it is (a decoy cannot hide the ones after it), no deeper."""
    link = b"see below\n\nFrom: a\nContent-Transfer-Encoding: quoted-printable\n\n"
    chain = b"-\n" + link * 30 + inner()
    items = list(walk(chain, "", Config().content))
    hits = [i for i in items if isinstance(i, Part) and EICAR in i.data]
    assert hits and max(i.depth for i in items if isinstance(i, Part)) <= 3, hits
    assert not [i for i in items if isinstance(i, Unchecked)]


def test_messages_nested_in_encoded_texts_meet_the_depth_limit() -> None:
    """Each in a base64 text part of the one before: a reading per level, and past
    the depth limit -1, never 0."""
    chain = inner()
    for _ in range(20):
        chain = b"see below\n\nFrom: a\nContent-Transfer-Encoding: base64\n\n" + b64(chain)
    last = list(walk(b"-\n" + chain, "", Config().content))[-1]
    assert isinstance(last, Unchecked) and last.reason is Reason.TOO_DEEP, last


def test_pieces_of_the_text_as_they_are_are_not_handed_again_but_binary_ones_are() -> None:
    """A 7bit text part of an inline message is a piece of the text the engine read:
    a names-only walk (beside clamd) hands it no more; a binary part as it is (an
    engine reads it only if it reads the message) is handed."""
    stub = b"MZ\x90\x00\x03\x00\x00\x00" + bytes(64) + b"stub"
    msg = (b"From: a@example.com\nMIME-Version: 1.0\n"
           b'Content-Type: multipart/mixed; boundary="Q"\n\n--Q\nContent-Type: text/plain\n\n'
           b"see the tool\n--Q\nContent-Type: application/octet-stream; name=\"t.exe\"\n"
           b"Content-Transfer-Encoding: binary\n\n" + stub + b"\n--Q--\n")
    text = PREAMBLE + PROSE * 20 + b"\n" + msg  # no NUL in the first KiB: a text
    handed = [item for item in walk(text, "", Config().content, keep_data=False)
              if isinstance(item, Part) and item.alt and item.data and item.depth]
    assert [p.data for p in handed] == [stub], handed
    assert any(p.names == ("t.exe",) for p in handed)


_QUOTED_PARTIAL = (b"From: x@example.org\r\nTo: y@example.org\r\nSubject: fwd\r\n"
                   b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n"
                   b"Hello, this is what I got:\r\n\r\n"
                   b"From: a@example.org\r\nSubject: part 1 of 2\r\n"
                   b"Content-Type: message/partial; id=\"abc@example.org\"; number=1; total=2\r\n"
                   b"\r\nBODY\r\n")


def test_a_quoted_message_partial_is_text_not_a_fragment(scanner: Scanner) -> None:
    """message/partial is banned because clients put fragments together silently; one
    quoted in a text is no fragment a client would use: no ban, no -1:unreadable
    for an incomplete set. Its body is still read: a base64 body decodes."""
    clean = _QUOTED_PARTIAL.replace(b"BODY", b"the first half of a report")
    assert isinstance(scanner.scan_stream(clean).verdict, Clean)
    encoded = _QUOTED_PARTIAL.replace(b"Content-Type: message/partial",
                                      b"Content-Transfer-Encoding: base64\r\n"
                                      b"Content-Type: message/partial")
    verdict = scanner.scan_stream(encoded.replace(b"BODY", b64(EICAR))).verdict
    assert isinstance(verdict, Infected) and "Eicar" in verdict.name, verdict


def test_a_real_message_partial_is_still_banned(scanner: Scanner) -> None:
    fragment = _QUOTED_PARTIAL.split(b"Hello, this is what I got:\r\n\r\n")[1]
    verdict = scanner.scan_stream(fragment.replace(b"BODY", b"half")).verdict
    assert verdict == Infected("Banned.MimeType.message/partial"), verdict


def _fw(*parts: bytes) -> bytes:
    return (b"See the message below.\n\nFrom: a@example.org\nSubject: fw\n"
            b"Content-Type: multipart/mixed; boundary=b\n\n" + b"".join(parts) + b"--b--\n")


_QP_FIRST = (b"--b\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n"
             b"hello=20there\n")


@pytest.mark.parametrize("cte", [b"Content-Transfer-Encoding: base64\n",
                                 b"Content-Transfer-Encoding:\n base64\n",
                                 b"Content-Transfer-Encoding:\r\n\tbase64\r\n"])
def test_the_first_multipart_start_is_read_to_the_end(scanner: Scanner, cte: bytes) -> None:
    """A quoted-printable first part is a start of its own: the multipart before it is
    still read to the end of the text (as libclamav reads it), so a later part whose
    transfer encoding is folded onto the next line is decoded too."""
    data = _fw(_QP_FIRST, b"--b\nContent-Type: application/octet-stream; name=e.bin\n" + cte
               + b"\n" + b64(EICAR) + b"\n")
    verdict = scanner.scan_stream(data).verdict
    assert isinstance(verdict, Infected) and "Eicar" in verdict.name, verdict


def test_a_folded_transfer_encoding_is_a_start() -> None:
    assert embedded.any_start(b"pre\nFrom: a\nContent-Transfer-Encoding:\n\tbase64\n\nQUJD\n")
    assert embedded.any_start(b"pre\r\nContent-Transfer-Encoding:\r\n base64\r\n\r\nQUJD\r\n")
    assert not embedded.any_start(b"pre\nFrom: a\nContent-Transfer-Encoding:\n 7bit\n\nabc\n")
    assert not embedded.any_start(b"pre\r\nContent-Transfer-Encoding: 8bit\r\n\r\nabc\r\n")


def test_names_quoted_in_a_text_are_no_attachment(scanner: Scanner) -> None:
    """A list post quoting a message's MIME source (body snipped): the name is text a
    client shows, no attachment it offers. Its bytes are still scanned."""
    snipped = _fw(b"--b\nContent-Type: application/x-msdownload; name=setup.exe\n"
                  b"Content-Transfer-Encoding: base64\n\n[snipped]\n") + b"\nThanks\n"
    assert isinstance(scanner.scan_stream(snipped).verdict, Clean)
    carried = _fw(b"--b\nContent-Type: application/octet-stream; name=setup.exe\n"
                  b"Content-Transfer-Encoding: base64\n\n" + b64(EICAR) + b"\n")
    verdict = scanner.scan_stream(carried).verdict
    assert isinstance(verdict, Infected) and "Eicar" in verdict.name, verdict


def test_bytes_quoted_first_still_get_their_own_reading(scanner: Scanner) -> None:
    """The same base64 body (a message/partial fragment) quoted in a text part first,
    then attached for real: the attachment is still read as a fragment (banned),
    not skipped as bytes already walked."""
    fragment = (b"From: a@example.org\nSubject: s\n"
                b"Content-Type: message/partial; id=\"x1\"; number=1; total=2\n\nhalf\n")
    body = b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
    text_part = (b"--o\nContent-Type: text/plain\n\nsee below\n\nFrom: a@example.org\n"
                 b"Content-Type: multipart/mixed; boundary=q\n\n--q\n" + body + b64(fragment)
                 + b"\n--q--\n")
    attached = (b"--o\nContent-Disposition: attachment; filename=f.bin\n" + body
                + b64(fragment) + b"\n")
    mail = (b"From: s@example.org\nTo: r@example.org\nSubject: t\nMIME-Version: 1.0\n"
            b"Content-Type: multipart/mixed; boundary=o\n\n" + text_part + attached + b"--o--\n")
    alone = scanner.scan_stream(mail.replace(text_part, b"")).verdict
    assert scanner.scan_stream(mail).verdict == alone  # the quote changes nothing
    if scanner.engine.wants_parts or scanner.engine.takes_walked:  # (a names-only walk
        # beside libclamav's own parser does not open an octet-stream: a known limit)
        assert alone == Infected("Banned.MimeType.message/partial")
