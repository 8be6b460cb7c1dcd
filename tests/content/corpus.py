"""Messages the content tests build themselves, each with the exact verdict expected.

``banned_corpus()``: names hidden in every place the walker reads, and
look-alikes that must stay clean. ``clean_corpus()``: real-world-shaped mail
that must answer 0. Built with the stdlib only, deterministically.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import gzip
import io
import tarfile
import zipfile
from email import encoders
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.image import MIMEImage
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
MZ = b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00 harmless test body"


def _headers(msg: MIMEBase, subject: str = "test") -> MIMEBase:
    msg["From"] = "alice@example.org"
    msg["To"] = "bob@example.net"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 24 Nov 2026 10:00:00 +0000"
    msg["Message-ID"] = f"<{abs(hash(subject)) % 10**9}@example.org>"
    return msg


def with_attachment(filename: str | None, data: bytes = MZ, *, ctype: str = "application",
                    sub: str = "octet-stream", name: str | None = None,
                    rfc2231: bool = False) -> bytes:
    """A text part plus one attachment named by filename= (and/or name=)."""
    msg = MIMEMultipart()
    msg.attach(MIMEText("Please see the attached file.\n"))
    part = MIMEBase(ctype, sub)
    part.set_payload(data)
    encoders.encode_base64(part)
    if filename is not None:
        if rfc2231:
            part.add_header("Content-Disposition", "attachment",
                            filename=("utf-8", "", filename))
        else:
            part.add_header("Content-Disposition", "attachment", filename=filename)
    if name is not None:
        part.set_param("name", name)
    msg.attach(part)
    return _headers(msg, f"att {filename} {name}").as_bytes()


def raw_mime(disposition: str, ctype: str = "application/octet-stream", body: bytes = MZ) -> bytes:
    """A message with hand-written attachment headers (continuations, encoded words)."""
    b64 = base64.encodebytes(body).decode()
    return (
        "From: a@example.org\nTo: b@example.net\nSubject: raw\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="XYZ"\n\n--XYZ\nContent-Type: text/plain\n\n'
        f"hi\n--XYZ\nContent-Type: {ctype}\n{disposition}\n"
        f"Content-Transfer-Encoding: base64\n\n{b64}--XYZ--\n"
    ).encode()


def zipped(members: dict[str, bytes], *, encrypt: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    raw = bytearray(buf.getvalue())
    if encrypt is not None:  # set the "encrypted" flag bit by hand, local and central
        for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            pos = raw.find(sig)
            while pos >= 0:
                raw[pos + off] |= 0x01
                pos = raw.find(sig, pos + 4)
    return bytes(raw)


def tarred(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def uuencoded_mail(name: str, data: bytes = MZ) -> bytes:
    lines = [binascii.b2a_uu(data[i : i + 45]) for i in range(0, len(data), 45)]
    body = b"begin 644 " + name.encode() + b"\n" + b"".join(lines) + b"`\nend\n"
    return (b"From: a@example.org\nTo: b@example.net\nSubject: uu\n\nHere it is:\n\n"
            + body + b"\nbye\n")


def nested(inner: bytes) -> bytes:
    from email import message_from_bytes

    outer = MIMEMultipart()
    outer.attach(MIMEText("Forwarded message attached.\n"))
    outer.attach(MIMEMessage(message_from_bytes(inner)))
    return _headers(outer, "fwd").as_bytes()


def _nested_multipart(filename: str) -> bytes:
    """mixed( alternative(text, html), mixed( text, attachment ) ): two levels deep."""
    outer = MIMEMultipart("mixed")
    alt = MIMEMultipart("alternative")
    alt.attach(MIMEText("text"))
    alt.attach(MIMEText("<p>html</p>", "html"))
    outer.attach(alt)
    inner = MIMEMultipart("mixed")
    inner.attach(MIMEText("see attachment"))
    att = MIMEApplication(MZ, "octet-stream")
    att.add_header("Content-Disposition", "attachment", filename=filename)
    inner.attach(att)
    outer.attach(inner)
    return _headers(outer, "nested multipart").as_bytes()


def banned_corpus() -> list[tuple[str, bytes, str]]:
    """(label, message, exact expected reply without the trailing LF)."""
    b2047 = Header("rechnung.pdf.exe", "utf-8").encode()
    cases: list[tuple[str, bytes, str]] = [
        ("exe", with_attachment("setup.exe"), "1:Banned.Extension.exe"),
        ("pif", with_attachment("photo.pif"), "1:Banned.Extension.pif"),
        ("vbs", with_attachment("love-letter-for-you.txt.vbs"),
         "1:Banned.DoubleExtension.txt.vbs"),
        ("scr", with_attachment("screensaver.scr"), "1:Banned.Extension.scr"),
        ("bat", with_attachment("run.bat"), "1:Banned.Extension.bat"),
        ("cmd", with_attachment("RUN.CMD"), "1:Banned.Extension.cmd"),
        ("com", with_attachment("command.com"), "1:Banned.Extension.com"),
        ("cpl", with_attachment("panel.cpl"), "1:Banned.Extension.cpl"),
        ("dll", with_attachment("lib.dll"), "1:Banned.Extension.dll"),
        ("hta", with_attachment("app.hta"), "1:Banned.Extension.hta"),
        ("js", with_attachment("invoice.js"), "1:Banned.Extension.js"),
        ("lnk", with_attachment("shortcut.lnk"), "1:Banned.Extension.lnk"),
        ("double pdf.pif", with_attachment("invoice.pdf.pif"),
         "1:Banned.DoubleExtension.pdf.pif"),
        ("double trailing dot", with_attachment("invoice.pdf.exe."),
         "1:Banned.DoubleExtension.pdf.exe"),
        ("double trailing spaces", with_attachment("invoice.doc.exe   "),
         "1:Banned.DoubleExtension.doc.exe"),
        ("double dots and spaces", with_attachment("scan.jpg.scr . ."),
         "1:Banned.DoubleExtension.jpg.scr"),
        ("name= only", with_attachment(None, name="readme.txt.pif"),
         "1:Banned.DoubleExtension.txt.pif"),
        ("name= differs from filename=", with_attachment("readme.txt", name="readme.exe"),
         "1:Banned.Extension.exe"),
        ("rfc2231 filename", with_attachment("faktura.pdf.exe", rfc2231=True),
         "1:Banned.DoubleExtension.pdf.exe"),
        ("rfc2231 continuation", raw_mime(
            "Content-Disposition: attachment;\n filename*0*=utf-8''very%20long%20na;\n"
            " filename*1*=me%2Edoc;\n filename*2=.exe"), "1:Banned.DoubleExtension.doc.exe"),
        ("rfc2231 charset", raw_mime(
            "Content-Disposition: attachment; filename*=iso-8859-1''%E4rger.pif"),
         "1:Banned.Extension.pif"),
        ("rfc2047 filename", raw_mime(f'Content-Disposition: attachment; filename="{b2047}"'),
         "1:Banned.DoubleExtension.pdf.exe"),
        ("rfc2047 name", raw_mime("Content-Disposition: attachment",
                                  ctype='application/octet-stream; name="=?utf-8?q?a.vbs?="'),
         "1:Banned.Extension.vbs"),
        ("uuencode", uuencoded_mail("prize.exe"), "1:Banned.Extension.exe"),
        ("uuencode double", uuencoded_mail("notes.txt.pif"), "1:Banned.DoubleExtension.txt.pif"),
        ("inside zip", with_attachment("docs.zip", zipped({"docs/manual.exe": MZ}),
                                       sub="zip"), "1:Banned.Extension.exe"),
        ("inside zip in zip", with_attachment(
            "outer.zip", zipped({"inner.zip": zipped({"x.pdf.scr": MZ})})),
         "1:Banned.DoubleExtension.pdf.scr"),
        ("inside tar.gz", with_attachment("t.tar.gz", gzip.compress(tarred({"a/b.vbs": b"x"}))),
         "1:Banned.Extension.vbs"),
        ("inside bz2", with_attachment("tool.exe.bz2", bz2.compress(MZ)),
         "1:Banned.Extension.exe"),
        ("nested rfc822", nested(with_attachment("invoice.pdf.exe")),
         "1:Banned.DoubleExtension.pdf.exe"),
        ("nested twice", nested(nested(with_attachment("virus.pif"))),
         "1:Banned.Extension.pif"),
        ("mime type msdownload", with_attachment("data.bin", sub="x-msdownload"),
         "1:Banned.MimeType.application/x-msdownload"),
        ("mime type hta", with_attachment(None, sub="hta"), "1:Banned.MimeType.application/hta"),
        ("mime type msdos", with_attachment("a.dat", sub="x-msdos-program"),
         "1:Banned.MimeType.application/x-msdos-program"),
        ("clsid", with_attachment("readme.txt.{3050F4D8-98B5-11CF-BB82-00AA00BDCE0B}"),
         "1:Banned.CLSID.{3050F4D8-98B5-11CF-BB82-00AA00BDCE0B}"),
        ("windows path", with_attachment("C:\\Users\\x\\evil.exe"), "1:Banned.Extension.exe"),
        ("upper case", with_attachment("INVOICE.PDF.EXE"), "1:Banned.DoubleExtension.pdf.exe"),
        ("nested multipart", _nested_multipart("brochure.pdf.scr"),
         "1:Banned.DoubleExtension.pdf.scr"),
        ("encrypted zip", with_attachment("secret.zip", zipped({"a.txt": b"x"}, encrypt="pw")),
         "-1:encrypted"),
        # look-alikes that must stay clean
        ("exe.txt", with_attachment("report.exe.txt", b"plain text"), "0"),
        ("docx", with_attachment("report.docx", zipped({"word/document.xml": b"<w/>"})), "0"),
        ("cid name", with_attachment("cid:image001.exe@01D8A1B2", PNG), "0"),
        ("digits double", with_attachment("backup.2024.zip", zipped({"a.txt": b"x"})), "0"),
        ("exe in text", with_attachment("notes.txt", b"run setup.exe then reboot"), "0"),
        ("exec-like type", with_attachment("x.pdf", PDF, sub="pdf"), "0"),
        ("no extension", with_attachment("README", b"hello"), "0"),
        ("dotfile", with_attachment(".bashrc", b"alias x=y"), "0"),
    ]
    return cases


def clean_corpus() -> list[tuple[str, bytes]]:
    """Real-world-shaped mail that must answer 0."""
    out: list[tuple[str, bytes]] = []
    charsets = ["utf-8", "iso-8859-1", "iso-8859-15", "windows-1252", "koi8-r", "shift_jis",
                "gb2312", "big5", "iso-2022-jp", "utf-16"]
    texts = ["Grüße aus Köln, anbei die Unterlagen.", "Привет, документы во вложении.",
             "お疲れ様です。資料を添付します。", "您好，附件是报告。",  # noqa: RUF001
             "Bonjour, voici le devis."]
    for i, cs in enumerate(charsets):
        text = texts[i % len(texts)]
        try:
            text.encode(cs)
        except UnicodeEncodeError:
            text = "Plain ASCII fallback for this charset."
        out.append((f"charset {cs}", _headers(MIMEText(text, "plain", cs), f"cs{i}").as_bytes()))
    for i in range(8):
        alt = MIMEMultipart("alternative")
        alt.attach(MIMEText(f"Newsletter {i}\n\nRead more at https://example.org/{i}\n"))
        alt.attach(MIMEText(f"<html><body><h1>News {i}</h1><p>text</p></body></html>", "html"))
        out.append((f"alternative {i}", _headers(alt, f"alt{i}").as_bytes()))
    for i in range(6):
        rel = MIMEMultipart("related")
        rel.attach(MIMEText('<html><body><img src="cid:logo@x"></body></html>', "html"))
        img = MIMEImage(PNG, "png")
        img.add_header("Content-ID", "<logo@x>")
        img.add_header("Content-Disposition", "inline", filename=f"logo{i}.png")
        rel.attach(img)
        out.append((f"inline image {i}", _headers(rel, f"rel{i}").as_bytes()))
    for i in range(5):
        invite = MIMEMultipart("mixed")
        invite.attach(MIMEText("You are invited.\n"))
        cal = MIMEText("BEGIN:VCALENDAR\nVERSION:2.0\nMETHOD:REQUEST\nBEGIN:VEVENT\n"
                       f"SUMMARY:Meeting {i}\nEND:VEVENT\nEND:VCALENDAR\n", "calendar")
        cal.set_param("method", "REQUEST")
        cal.add_header("Content-Disposition", "attachment", filename="invite.ics")
        invite.attach(cal)
        out.append((f"calendar {i}", _headers(invite, f"cal{i}").as_bytes()))
    for i in range(5):
        signed = MIMEMultipart("signed", protocol="application/pkcs7-signature",
                               micalg="sha-256")
        signed.attach(MIMEText(f"Signed statement {i}.\n"))
        sig = MIMEApplication(bytes(range(200)), "pkcs7-signature", name="smime.p7s")
        sig.add_header("Content-Disposition", "attachment", filename="smime.p7s")
        signed.attach(sig)
        out.append((f"smime signed {i}", _headers(signed, f"sig{i}").as_bytes()))
    for i in range(4):
        pgp = MIMEMultipart("signed", protocol="application/pgp-signature", micalg="pgp-sha256")
        pgp.attach(MIMEText(f"PGP signed {i}\n"))
        pgp.attach(MIMEApplication(b"-----BEGIN PGP SIGNATURE-----\nabc\n"
                                   b"-----END PGP SIGNATURE-----\n", "pgp-signature"))
        out.append((f"pgp signed {i}", _headers(pgp, f"pgp{i}").as_bytes()))
    attachments = [("report.pdf", PDF, "pdf"), ("photo.png", PNG, "png"),
                   ("table.xlsx", zipped({"xl/workbook.xml": b"<x/>"}), "zip"),
                   ("letter.docx", zipped({"word/document.xml": b"<w/>"}), "zip"),
                   ("archive.zip", zipped({"a.txt": b"a", "b/c.csv": b"1,2"}), "zip"),
                   ("logs.tar.gz", gzip.compress(tarred({"log/app.log": b"ok\n" * 50})), "gzip")]
    for name, data, sub in attachments:
        out.append((f"attachment {name}", with_attachment(name, data, sub=sub)))
    out.append(("forwarded", nested(with_attachment("minutes.pdf", PDF, sub="pdf"))))
    out.append(("uuencoded text", uuencoded_mail("notes.txt", b"just notes\n" * 20)))
    out.append(("plain no mime", b"From: a@example.org\nTo: b@example.net\nSubject: hi\n\n"
                b"Lunch at noon?\n"))
    return out
