"""Where a message begins: at the start of bytes, or inside a text after a preamble.

:func:`looks_like_message` tells whether bytes start like an RFC 5322 message
(the walker reads those as one). The rest of this module is about a message
that begins later in a text.

libclamav (its mail parser on, clamd's default ``ScanMail yes``) reads a text as
mail when mail headers appear anywhere in it, not only at offset 0:

* its file types ``Mail file`` (a ``From:``, ``Received:``, ``MIME-Version:`` or
  ``Message-Id:`` line, then a ``Content-Type:`` line, in the first 1-2 KiB)
  make the whole text a message, and its parser skips the lines before the
  first header; ``MHTML file`` (a ``MIME-Version:`` line, then
  ``Content-Type:`` within 1 KiB) is looked for at every offset of a text and
  read as mail from there;
* in the body of a message without MIME (mbox.c, "a bounce message with no
  header"), a ``Content-Transfer-Encoding:`` line starts a message that runs to
  the end of the body, whatever comes before it.

So a text with a preamble ("see below", ``-----Original Message-----``) and
then a message with a base64 attachment has that attachment decoded and
scanned. A quoted message (lines starting ``> ``) is not read (clamscan 1.4.6
does not).

:func:`starts` gives each line start after offset 0 where such a message
begins (:func:`segment_end`: where one ends if it runs to the next): a header
block with a ``Content-Transfer-Encoding`` that decodes, or with a mail header
(``From``, ``To``, ``Subject``, ``Date``, ``Received``, ``Return-Path``,
``Message-ID``, ``MIME-Version``, ``Delivered-To``) and a multipart or message
``Content-Type``. A body in 7bit or 8bit is a piece of the
text, already scanned as it is: a forwarded message's ``From:`` and
``Subject:`` lines in a reply, or an HTTP response's ``Date:`` and
``Content-Type: text/html``, are no start. Linear: header blocks are matched
once each (a block that does not qualify holds no start that does, so the
search resumes after it), every pattern is a regex without backtracking over
the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from scand.content import headers

# Leading bytes of an RFC 5322 message (after an optional mbox "From " line).
_HEADER_LINE = re.compile(rb"^[\x21-\x39\x3b-\x7e]{1,76}[ \t]*:")
_KNOWN_NAMES = (rb"(?:from|to|subject|date|received|return-path|message-id|mime-version|"
                rb"content-type|content-transfer-encoding|content-disposition|delivered-to|"
                rb"x-[\w-]+)[ \t]*:")
# A known header at the start, or at a line start: searched as "\n" + name (a
# literal first byte: the regex skips to each line end at C speed; "^" in
# MULTILINE mode would try every byte of a long text without line ends).
_KNOWN_FIRST = re.compile(rb"(?i)" + _KNOWN_NAMES)
_KNOWN_LATER = re.compile(rb"(?i)\n" + _KNOWN_NAMES)

_EOL = rb"(?:\r\n|\r|\n)"
# One header block: header lines (a name, a colon) with their folded continuations.
# Possessive: a block is matched once, never re-tried at a shorter length.
_BLOCK = re.compile(rb"(?:[\x21-\x39\x3b-\x7e]{1,76}[ \t]*:[^\r\n]*+" + _EOL
                    + rb"(?:[ \t][^\r\n]*+" + _EOL + rb")*+)++")
_MAIL = rb"from|to|subject|date|received|return-path|message-id|mime-version|delivered-to"
_CONTENT = rb"content-type|content-transfer-encoding"
# A line a message may start at, found after its line end: a literal LF first lets
# the regex skip to each LF at C speed (3-4 times faster than a class); texts with a
# bare CR line end are searched with the class.
_NAMES_COLON = rb"(?=(?:" + _MAIL + rb"|" + _CONTENT + rb")[ \t]*:)"
_START_LF = re.compile(rb"(?i)\n" + _NAMES_COLON)
_START_ANY = re.compile(rb"(?i)[\r\n]" + _NAMES_COLON)
_BARE_CR = re.compile(rb"\r(?!\n)")
_MAIL_LINE = re.compile(rb"(?i)[\r\n](?:" + _MAIL + rb")[ \t]*:")
# White space in a header value, folded lines included ("Content-Type:\n\tmultipart/").
_WS = rb"(?:[ \t]|\r?\n[ \t]|\r[ \t])*"
# A multipart or message type: a mail header must come with it.
_CONTAINER = re.compile(rb"(?i)[\r\n]content-type[ \t]*:" + _WS + rb"\"?(?:multipart|message)/")
# A transfer encoding that decodes (not 7bit, 8bit or binary): a start by itself.
_DECODES = re.compile(rb"(?i)[\r\n]content-transfer-encoding[ \t]*:"
                      rb"(?!" + _WS + rb"(?:[78]bit|binary)?[ \t]*"
                      rb"(?:\r\n|\r(?!\n)|\n)(?![ \t]))")  # the value's end, not a fold


def looks_like_message(data: bytes) -> bool:
    """An RFC 5322 message (or one mbox entry): header lines first, known names."""
    head = data[:8192].replace(b"\r", b"\n")  # bare CR line ends count as line ends
    if head.startswith(b"From "):
        eol = head.find(b"\n")  # the mbox line's end; CRLF (two line ends here) is one
        head = b"" if eol < 0 else head[eol + 1 + (data[eol:eol + 2] == b"\r\n"):]
    if not _HEADER_LINE.match(head):
        return False
    if _known_header(head, len(head)):
        return True
    # A long first header line (mail servers accept lines of a megabyte): the
    # known names may come later in the header block, read to its end.
    blank = head.find(b"\n\n")
    if blank >= 0:
        return False
    end = headers.blank_line(data, 0, len(data))
    return _known_header(data, len(data) if end is None else end[0])


def _known_header(data: bytes, end: int) -> bool:
    """A known header name at a line start of ``data[:end]``."""
    return (_KNOWN_FIRST.match(data, 0, end) is not None
            or _KNOWN_LATER.search(data, 0, end) is not None)


def starts(data: bytes) -> Iterator[tuple[int, bool]]:
    """Each line start after offset 0 where a message begins in ``data``, in order,
    and whether a mail header and a multipart or message type begin it (a
    message whose parts may run past the next start); see the module docstring.
    Each byte is looked at a bounded number of times however many header-looking
    lines the text has."""
    start_at = _START_ANY if _BARE_CR.search(data) else _START_LF
    pos = 0
    while True:
        found = start_at.search(data, pos)
        if found is None:
            return
        start = found.end()
        block = _BLOCK.match(data, start)
        if block is None:  # a last line without a line end: no body follows
            return
        end = block.end()
        container = (_MAIL_LINE.search(data, start - 1, end) is not None
                     and _CONTAINER.search(data, start - 1, end) is not None)
        if container or _DECODES.search(data, start - 1, end) is not None:
            yield start, container
        pos = end - 1  # the block's last line end: the next start is after it


def any_start(data: bytes) -> bool:
    """A message begins somewhere in ``data`` after offset 0."""
    return next(starts(data), None) is not None


def segment_end(data: bytes, start: int, end: int) -> int:
    """Where a message that begins at ``start`` ends if the next begins at ``end``:
    before a MIME delimiter line (``--token``) just before the next one, so a
    part's encoded body ends where its multipart would end it."""
    eol = end - 1 - (data[end - 2:end] == b"\r\n")  # the line end before the next
    line = max(data.rfind(b"\n", start, eol), data.rfind(b"\r", start, eol)) + 1
    return line if line > start and data.startswith(b"--", line, end) else end
