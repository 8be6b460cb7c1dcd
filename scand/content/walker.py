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

import email
import email.message
import email.policy
import re
from collections.abc import Iterator

from scand.config import ContentConfig
from scand.content import archives, mime
from scand.content.parts import Budget, Encrypted, Item, LimitHit, Part
from scand.events import Reason, Unchecked

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
            msg = email.message_from_bytes(data, policy=email.policy.compat32)
            yield from self.message(msg, depth, where)
        elif mime.has_uuencode(data):
            yield from self.uuencoded(data, depth, where)

    def message(self, msg: email.message.Message, depth: int, where: str) -> Iterator[Item]:
        """The parts of a parsed message; nested message/rfc822 goes one level deeper."""
        for sub in mime.children(msg):
            names = mime.part_names(sub)
            ctype = mime.declared_type(sub)
            label = f"{where}>{names[0] if names else ctype}"
            if sub.get_content_type() == "message/rfc822" or (isinstance(
                sub.get_payload(), list) and sub.get_content_maintype() == "message"):
                self.budget.depth(depth + 1, label)
                self.budget.part()
                for inner in sub.get_payload() or []:
                    if isinstance(inner, email.message.Message):
                        yield from self.message(inner, depth + 1, label)
                continue
            payload = mime.payload(sub)
            self.budget.grow(len(payload))
            yield from self.bytes_(payload, names, ctype, depth + 1, label, False)

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
