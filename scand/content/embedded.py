"""A message inside a text: where one begins after a preamble, for the walker.

libclamav (its mail parser on, clamd's default ``ScanMail yes``) reads a text as
mail when mail headers appear anywhere in it, not only at offset 0: its file
types ``Mail file`` (a ``From:``, ``Received:``, ``MIME-Version:`` or
``Message-Id:`` line, then a ``Content-Type:`` line, in the first 1-2 KiB) make
the whole text a message, and the parser skips the lines before the first
header; ``MHTML file`` (a ``MIME-Version:`` line, then ``Content-Type:`` within
1 KiB) is looked for at every offset of a text and read as mail from there. So
a text with a preamble ("see below", ``-----Original Message-----``) and then a
message with a base64 attachment has that attachment decoded and scanned. A
quoted message (lines starting ``> ``) is not read (clamscan 1.4.6 does not).

:func:`find` gives the first line start after offset 0 where such a message
begins: a header block holding a mail header (``From``, ``To``, ``Subject``,
``Date``, ``Received``, ``Return-Path``, ``Message-ID``, ``MIME-Version``,
``Delivered-To``) and a multipart or message ``Content-Type`` or a
``Content-Transfer-Encoding`` that decodes (a body in 7bit or 8bit is a piece of
the text, already scanned as it is: a forwarded message's ``From:`` and
``Subject:`` lines in a reply, or an HTTP response's ``Date:`` and
``Content-Type: text/html``, are no start). Linear: header blocks are matched
once each (a block that does not qualify holds no start that does, so the
search resumes after it), every pattern is a regex without backtracking over
the text.
"""

from __future__ import annotations

import re

_EOL = rb"(?:\r\n|\r|\n)"
# One header block: header lines (a name, a colon) with their folded continuations.
# Possessive: a block is matched once, never re-tried at a shorter length.
_BLOCK = re.compile(rb"(?:[\x21-\x39\x3b-\x7e]{1,76}[ \t]*:[^\r\n]*+" + _EOL
                    + rb"(?:[ \t][^\r\n]*+" + _EOL + rb")*+)++")
_MAIL = rb"from|to|subject|date|received|return-path|message-id|mime-version|delivered-to"
_CONTENT = rb"content-type|content-transfer-encoding"
# A line a message may start at (found after its line end: a literal first class).
_START = re.compile(rb"(?i)[\r\n](?=(?:" + _MAIL + rb"|" + _CONTENT + rb")[ \t]*:)")
_MAIL_LINE = re.compile(rb"(?i)[\r\n](?:" + _MAIL + rb")[ \t]*:")
# A multipart or message type, or a transfer encoding that decodes: a reading that
# yields bytes the text itself is not (a text/plain or text/html body in 7bit is
# a piece of the text, already scanned as it is).
_DECODES = re.compile(
    rb"(?i)[\r\n](?:content-type[ \t]*:[ \t]*\"?(?:multipart|message)/"
    rb"|content-transfer-encoding[ \t]*:(?![ \t]*(?:[78]bit|binary)?[ \t]*" + _EOL + rb"))")


def find(data: bytes) -> int | None:
    """The first line start after offset 0 where a message begins in ``data``, or
    None; see the module docstring. Each byte is looked at a bounded number of
    times however many header-looking lines the text has."""
    pos = 0
    while True:
        found = _START.search(data, pos)
        if found is None:
            return None
        start = found.end()
        block = _BLOCK.match(data, start)
        if block is None:  # a last line without a line end: no body follows
            return None
        end = block.end()
        if (_MAIL_LINE.search(data, start - 1, end) is not None
                and _DECODES.search(data, start - 1, end) is not None):
            return start
        pos = end - 1  # the block's last line end: the next start is after it
