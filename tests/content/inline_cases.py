"""Texts that carry a message after a preamble, and texts that only look like one.

libclamav (its mail parser on, clamd's ``ScanMail yes``) reads a message that
begins anywhere in a text (scand.content.embedded); each layout here records
what ``clamscan --scan-mail=yes`` (1.4.6, an EICAR-only database) answers for
it: ``True`` found, ``False`` OK. test_inline_message.py re-runs clamscan on
every layout and asks scand's engines. EICAR is only ever base64-encoded here.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.content.evasion_cases import EICAR, b64, mixed, top, zipped

PREAMBLE = b"Hello there, see below.\nSome more text here\n\n"
PROSE = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\n"


@dataclass(frozen=True)
class Layout:
    id: str
    description: str
    data: bytes
    clamscan: bool  # clamscan --scan-mail=yes finds EICAR
    # The text carries a message scand reads (where clamscan does not, scand reads
    # more: it finds EICAR too). False: no part may come of it.
    message: bool = True


def inner(payload: bytes = EICAR, received: bool = True, name: str = "a.bin") -> bytes:
    """A multipart message whose application/octet-stream part is ``payload`` in base64."""
    head = b"Received: from a by b; Tue, 8 Dec 2026 00:00:00 +0000\n" if received else b""
    return (head + b"From: a@example.com\nTo: b@example.com\nSubject: hi\nMIME-Version: 1.0\n"
            b'Content-Type: multipart/mixed; boundary="XX"\n\n--XX\nContent-Type: text/plain\n\n'
            b"hello\n--XX\nContent-Type: application/octet-stream; name=\"" + name.encode()
            + b'"\nContent-Transfer-Encoding: base64\n\n' + b64(payload) + b"--XX--\n")


def single_part() -> bytes:
    """A message that is one base64 attachment (no multipart)."""
    return (b"From: a@example.com\nSubject: file\nMIME-Version: 1.0\n"
            b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
            + b64(EICAR))


def in_text_part(text: bytes, cte: str = "") -> bytes:
    """A message whose text/plain part is ``text`` (7bit, or ``cte``: base64)."""
    head = "Content-Type: text/plain; charset=us-ascii"
    if cte:
        return mixed(head + f"\nContent-Transfer-Encoding: {cte}", b64(text))
    return mixed(head, text)


def _mime_head(between: bytes) -> bytes:
    """A message whose header block has ``between`` before its Content-Type."""
    return (b"From: a@example.com\nMIME-Version: 1.0\n" + between
            + b'Content-Type: multipart/mixed; boundary="XX"\n\n'
            + inner().split(b"\n\n", 1)[1])


def non_mime(body: bytes) -> bytes:
    """A mail without MIME headers whose body is ``body``."""
    return top("notes") + b"\n" + body


QMAIL = (b"Hi. This is the qmail-send program at example.com.\n"
         b"I'm afraid I wasn't able to deliver your message to the following addresses.\n\n"
         b"<b@example.net>:\nSorry, no mailbox here by that name.\n\n"
         b"--- Below this line is a copy of the message.\n\n")


def layouts() -> list[Layout]:
    forwarded = b"-----Original Message-----\n" + inner(received=False)
    quoted = b"".join(b"> " + line + b"\n" for line in inner().split(b"\n"))
    reply = (b"Thanks, see my answer below.\n\n-----Original Message-----\nFrom: Bob\n"
             b"Sent: Monday, December 7, 2026 10:00\nTo: Alice\nSubject: RE: lunch\n\n"
             b"Content-Type: the kind of lunch we like\n")
    http = (b"The server answered:\n\nHTTP/1.1 200 OK\nDate: Tue, 8 Dec 2026 00:00:00 GMT\n"
            b"Content-Type: text/html\nContent-Length: 20\n\n<html>hello</html>\n")
    many = PROSE + b"\n" + b"".join(b"From: x%d\nTo: y\nSubject: z\n\nline\n" % i
                                     for i in range(300))
    return [
        Layout("preamble", "two lines of text, then a message", PREAMBLE + inner(), True),
        Layout("forwarded", "'-----Original Message-----', then a message", forwarded, True),
        Layout("long-text", "12 KB of text, then a message", PROSE * 160 + b"\n" + inner(),
               True),
        Layout("crlf", "CRLF line ends", (PREAMBLE + inner()).replace(b"\n", b"\r\n"), True),
        Layout("single-part", "text, then a message that is one base64 attachment",
               PREAMBLE + single_part(), True),
        Layout("in-text-part", "a mail's text/plain part carries the text and the message",
               in_text_part(PREAMBLE + inner()), True),
        Layout("in-b64-text-part", "the same text/plain part in base64",
               in_text_part(PREAMBLE + inner(), "base64"), True),
        Layout("in-zip-txt", "a .txt inside a zip attachment",
               zipped({"notes.txt": PREAMBLE + inner()}), True),
        Layout("zip-txt-in-mail", "a mail with a zip holding that .txt",
               mixed('Content-Type: application/zip; name="n.zip"\n'
                     "Content-Transfer-Encoding: base64",
                     b64(zipped({"notes.txt": PREAMBLE + inner()}))), True),
        Layout("second-message", "a clean message, text, then the infected one",
               PREAMBLE + inner(b"clean " * 10) + b"\nAnd another:\n" + PROSE * 40
               + b"\n" + inner(), True),
        Layout("junk-in-header", "a line that is no header inside the message's header",
               PREAMBLE + _mime_head(b"this line is no header\n"), True),
        Layout("blank-in-header", "an empty line between MIME-Version and Content-Type",
               PROSE * 40 + b"\n" + _mime_head(b"\n"), True),
        Layout("bounce-cte", "a mail without MIME: prose, then a base64 body's header",
               non_mime(PREAMBLE + b"Content-Transfer-Encoding: base64\n\n" + b64(EICAR)),
               True),
        Layout("bounce-part", "a mail without MIME: prose, then a whole attachment part",
               non_mime(PREAMBLE + b"Content-Type: application/octet-stream\n"
                        b"Content-Transfer-Encoding: base64\n\n" + b64(EICAR)), True),
        Layout("decoy-first", "a base64 header over no base64, then the message",
               PREAMBLE + b"Content-Transfer-Encoding: base64\n\nthis is no base64.\n\n"
               + PROSE * 20 + b"\n" + inner(), True),
        Layout("cte-in-text", "a text (no mail) with a base64 body's header and body",
               PREAMBLE + b"Content-Transfer-Encoding: base64\n\n" + b64(EICAR), False),
        Layout("qmail-bounce", "a qmail bounce: the message copied below its text",
               QMAIL + b"Return-Path: <a@example.com>\n" + inner(), True),
        Layout("quoted", "the message quoted with '> ' (read by no one)",
               PREAMBLE + quoted, False, message=False),
        Layout("reply-headers", "a reply quoting forwarded From/Sent/To/Subject lines",
               reply, False, message=False),
        Layout("http-transcript", "an HTTP response: Date and Content-Type text/html",
               http, False, message=False),
        Layout("many-header-blocks", "300 From/To/Subject blocks without a content header",
               many, False, message=False),
        Layout("no-mime-mail", "a mail without MIME whose body quotes header lines",
               top("notes", "Content-Type: text/plain\n") + b"\n" + reply, False,
               message=False),
    ]
