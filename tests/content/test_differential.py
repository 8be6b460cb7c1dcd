"""Issue 12 acceptance 2-3: a differential fuzzer of MIME structure, scand vs the stdlib.

Hypothesis builds messages that carry EICAR (base64, quoted-printable or
uuencode) or a banned attachment name, and mutates their MIME structure the
ways mail in the wild does: header syntax (space before the colon, junk lines,
odd folding, duplicate and reordered headers), parameters (order, duplicates,
RFC 2231 values and continuations, RFC 2047 words, quoting), boundary shape,
Content-Transfer-Encoding spelling, nesting in multiparts and message/rfc822,
line ends.

The oracle is the stdlib ``email`` parser (``policy=email.policy.default``):
whenever it reaches the payload (a leaf whose decoded payload holds EICAR, or
whose ``get_filename()`` the policy bans), scand must answer ``1:`` or ``-1:``,
never ``0``. Whatever the input, the scanner must not raise and must never
answer ``-1:internal``. 1,000 examples run in-process on the worker-side
Scanner with the built-in engine; a small sample goes through the real daemon.
A second oracle is ClamAV itself (a clamd started here with an EICAR-only
database, asked with INSTREAM): whenever clamd finds EICAR in a generated
message, scand must not answer ``0`` either.
"""

from __future__ import annotations

import base64
import email
import email.policy
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from email.header import Header
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scand.config import Config
from scand.engines.builtin import BuiltinEngine
from scand.engines.signatures import HashDB
from scand.policy import Policy
from scand.protocol import format_verdict
from scand.worker.scanner import Scanner
from tests.conftest import Daemon, SophieClient, launch
from tests.content.evasion_cases import EICAR, MZ, qp, uu

CONFIG = Config()
SCANNER = Scanner(BuiltinEngine(HashDB()), CONFIG)
POLICY = Policy(CONFIG.policy)

HARMLESS = ["data.bin", "report.pdf", "notes.txt", "photo.jpg", "archive.dat"]
BANNED_NAMES = ["evil.exe", "invoice.pdf.scr", "run.bat", "Love-Letter.TXT.VBS", "setup.msi",
                "tool.exe .", "x.pif", "very long name with spaces.cmd"]
BCHARS = "abcXYZ0189'()+_,-./:=?"
DECOY_NAMES = ["readme.txt", "a.pdf", "image001.png"]


@dataclass
class Built:
    raw: bytes
    payload: str  # "eicar" or "name"


# -- pieces -----------------------------------------------------------------------

@st.composite
def _param_value(draw: st.DrawFn, key: str, value: str) -> str:
    """``key=value`` in one of the ways mail software writes a parameter."""
    form = draw(st.sampled_from(["quoted", "token", "2231", "2231-cont", "2047", "cont"]))
    if form == "token" and all(c.isalnum() or c in "-._" for c in value):
        return f"{key}={value}"
    if form == "2231":
        return f"{key}*=utf-8''{urllib.parse.quote(value, safe='')}"
    if form == "2231-cont" and len(value) > 2:
        cut = draw(st.integers(1, len(value) - 1))
        return (f"{key}*0*=utf-8''{urllib.parse.quote(value[:cut], safe='')}; "
                f"{key}*1*={urllib.parse.quote(value[cut:], safe='')}")
    if form == "cont" and len(value) > 2:
        cut = draw(st.integers(1, len(value) - 1))
        return f'{key}*0="{value[:cut]}"; {key}*1="{value[cut:]}"'
    if form == "2047":
        word = Header(value, "utf-8").encode()
        return f'{key}="{word}"'
    return f'{key}="{value}"'


@st.composite
def _params_header(draw: st.DrawFn, field: str, first: str, params: list[str]) -> str:
    """A header with parameters, in a drawn order, folded a drawn way."""
    order = draw(st.permutations(params))
    out = f"{field}: {first}"
    for p in order:
        fold = draw(st.sampled_from(["; ", ";", ";\n ", ";\n\t", " ;\n  "]))
        out += fold + p
    return out


@st.composite
def _cte(draw: st.DrawFn, kind: str) -> str:
    spellings = {
        "base64": ["base64", "BASE64", "Base64", " base64 ", "base64 (encoded)"],
        "quoted-printable": ["quoted-printable", "Quoted-Printable", "QUOTED-PRINTABLE"],
        "x-uuencode": ["x-uuencode", "X-UUENCODE", "x-uue", "uuencode"],
    }
    return draw(st.sampled_from(spellings[kind]))


def _encode(kind: str, data: bytes, name: str, line: int) -> bytes:
    if kind == "base64":
        flat = base64.b64encode(data)
        return b"\n".join(flat[i : i + line] for i in range(0, len(flat), line)) + b"\n"
    if kind == "quoted-printable":
        return qp(data, max(8, line))
    return uu(data, name)


@st.composite
def leaf(draw: st.DrawFn) -> Built:
    """The attachment part: headers (mutated) and encoded body."""
    payload = draw(st.sampled_from(["eicar", "name"]))
    name = draw(st.sampled_from(BANNED_NAMES if payload == "name" else HARMLESS))
    data = EICAR if payload == "eicar" else MZ
    kind = draw(st.sampled_from(["base64", "quoted-printable", "x-uuencode"]))
    body = _encode(kind, data, name, 4 * draw(st.integers(2, 19)))

    where = draw(st.sampled_from(["filename", "name", "both"]))
    ct_params: list[str] = []
    cd_params: list[str] = []
    if where in ("name", "both"):
        ct_params.append(draw(_param_value("name", name)))
    if where in ("filename", "both"):
        cd_params.append(draw(_param_value("filename", name)))
    if draw(st.booleans()):  # a harmless duplicate of the same parameter
        decoy = f'{"filename" if cd_params else "name"}="{draw(st.sampled_from(DECOY_NAMES))}"'
        (cd_params if cd_params else ct_params).append(decoy)
    if draw(st.booleans()):
        ct_params.append('charset="us-ascii"')
    ctype = draw(st.sampled_from(["application/octet-stream", "application/pdf",
                                  "image/jpeg", "text/plain", "APPLICATION/OCTET-STREAM"]))
    headers = [draw(_params_header("Content-Type", ctype, ct_params))]
    disposition = draw(st.sampled_from(["attachment", "inline", "ATTACHMENT"]))
    bare_disposition: bool = draw(st.booleans())
    if cd_params or bare_disposition:
        headers.append(draw(_params_header("Content-Disposition", disposition, cd_params)))
    headers.append(f"Content-Transfer-Encoding: {draw(_cte(kind))}")
    headers = _mutate_headers(draw, headers)
    return Built("\n".join(headers).encode() + b"\n\n" + body, payload)


def _mutate_headers(draw: st.DrawFn, headers: list[str]) -> list[str]:
    headers = list(draw(st.permutations(headers)))
    for _ in range(draw(st.integers(0, 3))):
        what = draw(st.sampled_from(["space-colon", "junk", "decoy", "dup", "x-space",
                                     "fold-name", "continuation-first"]))
        i = draw(st.integers(0, len(headers)))
        if what == "space-colon" and headers:
            j = min(i, len(headers) - 1)
            head, sep, rest = headers[j].partition(":")
            headers[j] = head + draw(st.sampled_from([" ", "\t", "  "])) + sep + rest
        elif what == "junk":
            headers.insert(i, draw(st.sampled_from(["junk line", "=====", "X-Bad header"])))
        elif what == "decoy":
            headers.insert(i, draw(st.sampled_from([
                'Content-Disposition: inline; filename="readme.txt"',
                "Content-Type: text/plain", "Content-Transfer-Encoding: 7bit"])))
        elif what == "dup" and headers:
            headers.insert(i, headers[draw(st.integers(0, len(headers) - 1))])
        elif what == "x-space":
            headers.insert(i, "X-Mailer : Microsoft Outlook 16.0")
        elif what == "fold-name" and headers:
            j = min(i, len(headers) - 1)
            headers[j] = headers[j].replace(": ", ":\n  ", 1)
        elif what == "continuation-first":
            headers.insert(0, " X-Folded: value")
    return headers


def _boundary(draw: st.DrawFn, level: int) -> str:
    core = draw(st.text(alphabet=BCHARS, min_size=1, max_size=24))
    if draw(st.integers(0, 9)) == 0:
        return core  # may collide with a parent's boundary: a mutation of its own
    return f"{core}_{level}"


@st.composite
def wrapped(draw: st.DrawFn, depth: int = 0) -> Built:
    """The leaf, wrapped in up to three multipart or message/rfc822 layers."""
    inner = draw(leaf()) if depth >= 3 or draw(st.booleans()) else draw(wrapped(depth + 1))
    kind = draw(st.sampled_from(["mixed", "mixed", "alternative", "rfc822"]))
    if kind == "rfc822":
        top = (b"From: a@example.org\nSubject: fwd\nMIME-Version: 1.0\n")
        body = _as_message(inner.raw, top)
        return Built(b"Content-Type: message/rfc822\n\n" + body, inner.payload)
    b = _boundary(draw, depth)
    quoted = draw(st.booleans()) or not all(c.isalnum() or c in "-_." for c in b)
    param = f'boundary="{b}"' if quoted else f"boundary={b}"
    extra = draw(st.sampled_from(["", "; charset=x", ";\n type=text/plain"]))
    ctype = f"Content-Type: multipart/{kind}; {param}{extra}"
    if draw(st.booleans()):
        ctype = f"Content-Type: multipart/{kind};\n\t{param}{extra}"
    pad = draw(st.sampled_from(["", " ", "\t", "  "]))
    mark = f"--{b}".encode()
    parts = [b"Content-Type: text/plain\n\nhello\n", inner.raw]
    if draw(st.booleans()):
        parts.reverse()
    body = draw(st.sampled_from([b"", b"preamble\n", b"This is MIME.\n\n"]))
    for p in parts:
        body += mark + pad.encode() + b"\n" + p.rstrip(b"\n") + b"\n"
    body += mark + b"--" + b"\n" + draw(st.sampled_from([b"", b"epilogue\n"]))
    return Built(ctype.encode() + b"\n\n" + body, inner.payload)


def _as_message(entity: bytes, top: bytes) -> bytes:
    """An entity (headers + body) made a message by prefixing top-level headers."""
    return top + entity


@st.composite
def messages(draw: st.DrawFn) -> Built:
    built = draw(wrapped())
    top = [b"From: alice@example.org", b"To: bob@example.net", b"Subject: fuzz",
           b"MIME-Version: 1.0"]
    if draw(st.booleans()):
        top.insert(draw(st.integers(0, len(top))), b"X-Mailer : fuzz 1.0")
    raw = b"\n".join(top) + b"\n" + built.raw
    if draw(st.booleans()):
        raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return Built(raw, built.payload)


# -- the oracle -----------------------------------------------------------------------

def stdlib_reaches(raw: bytes) -> bool:
    """Does the stdlib parser (policy default) reach EICAR or a banned name?"""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        parts = list(msg.walk())
    except Exception:
        return False
    for part in parts:
        if part.is_multipart():
            continue
        try:
            name = part.get_filename()
        except Exception:
            name = None
        if name and POLICY.check_name(str(name)) is not None:
            return True
        try:
            data = part.get_payload(decode=True)
        except Exception:
            data = None
        if isinstance(data, bytes) and EICAR in data:
            return True
    return False


def scand_reply(raw: bytes) -> str:
    return format_verdict(SCANNER.scan_stream(raw).verdict).decode().rstrip("\n")


def check(raw: bytes, reply: str) -> None:
    assert not reply.startswith("-1:internal"), reply
    assert reply == "0" or reply.startswith(("1:", "-1:")), reply
    if stdlib_reaches(raw):
        assert reply.startswith(("1:", "-1:")), (reply, raw)


# -- the tests --------------------------------------------------------------------------

def test_oracle_sees_a_plain_attachment() -> None:
    """The oracle is not blind: a well-formed attachment is reached, a clean mail is not."""
    plain = (b"From: a@b\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=X\n\n"
             b"--X\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
             b'Content-Disposition: attachment; filename="a.bin"\n\n'
             + base64.encodebytes(EICAR) + b"--X--\n")
    assert stdlib_reaches(plain)
    assert stdlib_reaches(plain.replace(b'"a.bin"', b'"a.exe"').replace(
        base64.encodebytes(EICAR), base64.encodebytes(MZ)))
    assert not stdlib_reaches(plain.replace(base64.encodebytes(EICAR),
                                            base64.encodebytes(MZ)))


@settings(max_examples=1000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(messages())
def test_scand_never_clean_where_the_stdlib_reaches_the_payload(built: Built) -> None:
    assert EICAR not in built.raw
    check(built.raw, scand_reply(built.raw))


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000), messages())
def test_byte_damage_never_raises(junk: bytes, built: Built) -> None:
    """Cut and spliced messages: never an exception, never -1:internal."""
    cut = len(junk) % (len(built.raw) + 1)
    raw = built.raw[:cut] + junk + built.raw[cut:]
    reply = scand_reply(raw)
    assert not reply.startswith("-1:internal"), reply


# -- a sample through the daemon ----------------------------------------------------------

@pytest.fixture(scope="module")
def daemon_client() -> Iterator[SophieClient]:
    d = Path(tempfile.mkdtemp(prefix="scand-df-", dir="/tmp"))
    d.chmod(0o755)
    daemon: Daemon = launch(d, 0, workers=2)
    client = daemon.client(timeout=60)
    try:
        yield client
    finally:
        client.close()
        daemon.stop()
        shutil.rmtree(d, ignore_errors=True)


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(built=messages())
def test_through_the_daemon(daemon_client: SophieClient, built: Built) -> None:
    reply = daemon_client.ask(b"STREAM %d\n" % len(built.raw) + built.raw)
    text = reply.decode("utf-8", "replace").rstrip("\n")
    check(built.raw, text)
    assert text == scand_reply(built.raw)  # the daemon and the worker code agree


# -- ClamAV as a second oracle -------------------------------------------------------------

CLAMD = shutil.which("clamd") or shutil.which("clamd", path="/usr/sbin")


class Clamd:
    """A clamd of our own (EICAR-only database) on a Unix socket; stopped by pid."""

    def __init__(self, base: Path) -> None:
        assert CLAMD, "clamd not installed: run ./scripts/test (installs clamav-daemon)"
        db = base / "db"
        db.mkdir()
        (db / "eicar.ndb").write_text(f"Eicar-Test-Signature:0:*:{EICAR.hex()}\n")
        self.path = str(base / "clamd.sock")
        conf = base / "clamd.conf"
        conf.write_text(f"Foreground yes\nLocalSocket {self.path}\nDatabaseDirectory {db}\n"
                        f"TemporaryDirectory {base}\nLogFile {base}/clamd.log\n")
        self.proc = subprocess.Popen([CLAMD, "--foreground", f"--config-file={conf}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (base / "clamd.log").read_text()
            try:
                if self._command(b"zPING\0") == b"PONG":
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("clamd did not start")

    def _command(self, data: bytes) -> bytes:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(self.path)
            s.sendall(data)
            out = b""
            while not out.endswith(b"\0"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                out += chunk
        return out.rstrip(b"\0")

    def found(self, data: bytes) -> bool:
        reply = self._command(b"zINSTREAM\0" + struct.pack(">I", len(data)) + data
                              + struct.pack(">I", 0))
        assert reply.endswith((b"OK", b"FOUND")), reply
        return reply.endswith(b"FOUND")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def clamd() -> Iterator[Clamd]:
    d = Path(tempfile.mkdtemp(prefix="scand-cl-", dir="/tmp"))
    c = Clamd(d)
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(d, ignore_errors=True)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(built=messages())
def test_scand_never_clean_where_clamav_reaches_the_payload(clamd: Clamd, built: Built) -> None:
    reply = scand_reply(built.raw)
    check(built.raw, reply)
    if clamd.found(built.raw):
        assert reply.startswith(("1:", "-1:")), (reply, built.raw)
