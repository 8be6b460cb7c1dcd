"""The content walker: one input object -> the parts an MTA would deliver, recursively.

``walk(data, name, limits)`` is a generator. It yields

* :class:`Part` for the input itself (depth 0) and for every decoded part:
  MIME leaves, nested messages, uuencoded blocks, archive members and
  decompressed streams, each with every name it is known by and its declared
  MIME type;
* :class:`Encrypted` for an encrypted archive member (the caller decides:
  ``-1:encrypted`` or a policy hit);
* :class:`~scand.events.Unchecked` for what could not be decoded. A limit hit
  (``too-deep``, ``too-many-files``, ``too-large``) is yielded last: the walk
  stops there, because the rest would not be scanned either.

It never raises for bad input: a broken part becomes an Unchecked item. Pure
Python (stdlib), trio-free: it runs in the worker, under the memory cap.
With ``keep_data=False`` leaves are yielded without their bytes and archive
members are only read when they look like containers: the policy walk for
engines (clamd) that decode the content themselves.
"""

from __future__ import annotations

import email.message
import re
from collections.abc import Iterator

from scand.config import ContentConfig
from scand.content import archives, mime
from scand.content.parts import Budget, Encrypted, Item, LimitHit, Part
from scand.events import Reason, Unchecked

# Encoded bytes decoded to sniff a part's type in a names-only walk.
SNIFF_ENCODED = 1024
# Leading bytes of an RFC 5322 message (after an optional mbox "From " line).
_HEADER_LINE = re.compile(rb"^[\x21-\x39\x3b-\x7e]{1,76}:[ \t]?[^\r\n]*\r?\n")
_KNOWN_HEADERS = re.compile(
    rb"(?im)^(from|to|subject|date|received|return-path|message-id|mime-version|"
    rb"content-type|delivered-to|x-[\w-]+):")


def looks_like_message(data: bytes) -> bool:
    """An RFC 5322 message (or one mbox entry): header lines first, known names."""
    head = data[:8192]
    if head.startswith(b"From "):
        head = head.split(b"\n", 1)[1] if b"\n" in head else b""
    return bool(_HEADER_LINE.match(head)) and bool(_KNOWN_HEADERS.search(head))


def walk(
    data: bytes, name: str, limits: ContentConfig, *, keep_data: bool = True
) -> Iterator[Item]:
    """All parts of ``data`` (whose own name is ``name``); see the module docstring."""
    walker = _Walker(Budget(limits), keep_data)
    try:
        yield from walker.bytes_(data, (name,) if name else (), "", 0, name or "input", False)
    except LimitHit as hit:
        yield hit.verdict
    except RecursionError:
        yield Unchecked(Reason.TOO_DEEP, "recursion limit")


class _Walker:
    def __init__(self, budget: Budget, keep_data: bool) -> None:
        self.budget = budget
        self.keep = keep_data

    def bytes_(self, data: bytes, names: tuple[str, ...], mime_type: str, depth: int,
               where: str, in_archive: bool) -> Iterator[Item]:
        """A part given as bytes: yield it, then whatever it contains."""
        self.budget.depth(depth, where)
        self.budget.part()
        keep = self.keep or depth == 0
        yield Part(data if keep else b"", names, mime_type, depth, where, in_archive)
        kind = archives.sniff(data)
        if kind is not None:
            yield from self.archive(kind, data, names, depth, where)
        elif looks_like_message(data):
            yield from self.message(data, depth, where)
        elif mime.has_uuencode(data):
            yield from self.uuencoded(data, depth, where)

    def message(self, data: bytes, depth: int, where: str) -> Iterator[Item]:
        """The parts of an RFC 5322 message: its body, or each MIME part, recursively."""
        headers, body = mime.split(data)
        yield from self.entity(headers, body, depth, where)

    def entity(self, headers: email.message.Message, body: bytes, depth: int,
               where: str) -> Iterator[Item]:
        """One MIME entity: a multipart's children, a nested message, or a leaf."""
        parts = mime.subparts(headers, body)
        if parts is not None:
            for raw in parts:
                self.budget.part()
                sub_headers, sub_body = mime.split(raw)
                yield from self.entity(sub_headers, sub_body, depth, where)
            return
        names = mime.part_names(headers)
        ctype = mime.declared_type(headers)
        label = f"{where}>{names[0] if names else ctype or 'body'}"
        if headers.get_content_maintype() == "message" and ctype in (
                "message/rfc822", "message/global", "message/news"):
            self.budget.depth(depth + 1, label)
            yield from self.message(mime.decode_body(headers, body), depth + 1, label)
            return
        if not self.keep:
            # Names-only walk: decode just enough to tell whether this part can hold
            # further names (a container, or uuencoded blocks in text).
            head = mime.decode_body(headers, body[:SNIFF_ENCODED])
            if archives.sniff(head) is None and not mime.has_uuencode(body):
                self.budget.part()
                if names or ctype:
                    yield Part(b"", names, ctype, depth + 1, label, False)
                return
        decoded = mime.decode_body(headers, body)
        self.budget.grow(len(decoded))
        yield from self.bytes_(decoded, names, ctype, depth + 1, label, False)

    def uuencoded(self, data: bytes, depth: int, where: str) -> Iterator[Item]:
        for uname, decoded in mime.uudecode_blocks(data):
            self.budget.grow(len(decoded))
            yield from self.bytes_(decoded, (uname,), "", depth + 1, f"{where}>uu:{uname}",
                                   False)

    def archive(self, kind: str, data: bytes, names: tuple[str, ...], depth: int,
                where: str) -> Iterator[Item]:
        opener = archives.OPENERS[kind]
        for member in opener(data, names, self.budget, not self.keep, where):
            if isinstance(member, (Encrypted, Unchecked)):
                yield member
                continue
            label = f"{where}>{kind}:{member.name}"
            if member.data is None:  # names-only walk: not a container, not read
                self.budget.part()
                yield Part(b"", (member.name,), "", depth + 1, label, True)
                continue
            yield from self.bytes_(member.data, (member.name,), "", depth + 1, label, True)
