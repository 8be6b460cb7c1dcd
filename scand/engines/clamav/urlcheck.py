"""libclamav's phishing check on the walker's text parts (sans-IO).

libclamav checks links against its phishing lists (``.pdb``/``.wdb``/``.gdb``,
also carried in ``daily.cvd``) only inside its mail parser: mbox.c
``checkURLs`` on the decoded body of a text part. Read from mbox.c
(ClamAV 1.4), it runs:

* on the body of a message that is not multipart, whatever its text subtype,
  and on a body without a Content-Type (text/plain too: "some phishing mails
  claim they are text/plain, when they are in fact html");
* on a text part of a multipart whose disposition is empty or ``inline``,
  unless it is ``text/plain`` without a transfer encoding (7bit), which joins
  the message text unchecked;
* only on a decoded body of at most 100 KiB (``getHrefs``); the ``is_html``
  argument is unused: ``html_normalise_mem`` reads any text for links, and
  ``extract_text_urls`` reads the text for URLs when it found no tag. The
  charset is never looked at.

The check needs a link. htmlnorm.c takes links only from a tag argument with a
value (``a``/``area`` href, ``img`` src/dynsrc, ``iframe`` src, ``form``
action), so after a literal ``=``; ``extract_text_urls`` only from ``http``
followed by ``:`` or ``ftp:`` (case-insensitive). A part with no ``=``, no
``http`` and no ``ftp`` has none, and is scanned as itself (:func:`checked`).

The walker's :class:`~scand.content.parts.Part` carries the media type but not
the disposition or the transfer encoding, so the engine checks every text
part of a message it is handed: a superset of the above (also a text part
sent as an attachment, and a 7bit text/plain alternative). A part that is
checked is handed to libclamav as a minimal message with its mail parser on
(:func:`wrap`); its body is in base64, which libclamav decodes back to the
exact bytes (an 8bit body would come back with its line ends and long lines
changed, and a hash signature on the part would no longer match), and the
part's own scan (every signature, with every parser) happens on those
decoded bytes inside the same call.
"""

from __future__ import annotations

import binascii
import re

# mbox.c getHrefs: "Viruses pointed to by URLs not scanned in large message".
MAX_CHECKED = 100 * 1024
# A media type fit to be written back into a header line.
_TOKEN = re.compile(rb"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_SNIFF = 1024
# libclamav types a file as mail by its first header: Content-Type alone is not
# enough (measured: the check never ran), MIME-Version is.
_HEAD = b"MIME-Version: 1.0\r\nContent-Type: %s\r\nContent-Transfer-Encoding: base64\r\n\r\n"
# 912 base64 characters a line: 12 times fewer calls than RFC 2045's 76, and well
# under the 1,000 a line libclamav's mail parser reads before it cuts one.
_LINE = 57 * 12


def checked(data: bytes, mime: str, alt: bool) -> bool:
    """True when libclamav's URL check may read this decoded part of a message:
    a text type, or no type at all outside a non-standard reading (a body without
    a Content-Type; not a uuencoded or BinHex block), text-like, at most
    :data:`MAX_CHECKED` bytes, and with something that may be a link."""
    if not data or len(data) > MAX_CHECKED:
        return False
    if mime:
        if not mime.lower().startswith("text/"):
            return False
    elif alt or b"\x00" in data[:_SNIFF]:
        return False
    return may_link(data)


def may_link(data: bytes) -> bool:
    """False when libclamav's link extraction can find no link in ``data``: no
    tag argument with a value (no ``=``) and no ``http``/``ftp`` URL in the text."""
    if b"=" in data:
        return True
    low = data.lower()
    return b"http" in low or b"ftp" in low


def wrap(data: bytes, mime: str) -> bytes:
    """``data`` as the base64 body of a one-part message of type ``mime``."""
    ctype = mime.lower().encode("ascii", "replace")
    if not _TOKEN.fullmatch(ctype):
        ctype = b"text/plain"
    out = [_HEAD % ctype]
    b2a = binascii.b2a_base64
    view = memoryview(data)
    out.extend(b2a(view[i:i + _LINE]) for i in range(0, len(data), _LINE))
    return b"".join(out)
