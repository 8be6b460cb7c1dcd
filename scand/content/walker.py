"""The content walker: one input object -> every part any reader could deliver.

``walk(data, name, limits)`` is a generator. It yields

* :class:`Part` for the input itself (depth 0) and for every decoded part:
  MIME leaves, nested messages, uuencode/yEnc/BinHex blocks, ``data:`` URIs,
  archive members and decompressed streams, each with every name it is known
  by and its declared MIME type;
* :class:`Encrypted` for an encrypted archive member (the caller decides:
  ``-1:encrypted`` or a policy hit);
* :class:`~scand.events.Unchecked` for what could not be decoded. A limit hit
  (``too-deep``, ``too-many-files``, ``too-large``) is yielded last: the walk
  stops there, because the rest would not be scanned either.

**The union rule.** Where a message can be read more than one way (where the
header block ends, which boundary, which transfer encoding, central or local
zip names, ...) every reading is walked and every part it yields is scanned
and name-checked. The union only adds parts, so it can never turn a ``1:``
into ``0``; where a structure cannot be read at all the walk yields
``Unchecked``, never silence. Parts reached only by a non-standard reading
are marked ``alt``: an engine that decodes by itself (clamd, libclamav) read
the standard way, so the scanner hands it those parts too. Parts whose bytes
were already yielded are yielded again without data (their names still
count), so the union costs little on ordinary mail.

It never raises for bad input. Pure Python (stdlib), trio-free: it runs in
the worker, under the memory cap. With ``keep_data=False`` leaves come without
their bytes and archive members are read only when they look like containers:
the policy walk beside engines that decode content themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from scand.config import ContentConfig
from scand.content import archives, embedded, headers, mime, params, textblocks
from scand.content.embedded import looks_like_message
from scand.content.parts import Budget, Context, Encrypted, Item, LimitHit, Slice
from scand.events import Reason, Unchecked

# Encoded bytes decoded to sniff a part's type in a names-only walk; for disk
# images (by name, see archives.IMAGE_SUFFIXES, or a leading run of zero bytes)
# enough for an ISO 9660 volume descriptor at 32 KiB.
SNIFF_ENCODED = 1024
SNIFF_IMAGE = 48 * 1024
MESSAGE_TYPES = ("message/rfc822", "message/global", "message/news")
# Names of one part checked before each further name counts as a part (a header
# with thousands of names costs a policy check per name).
NAMES_FREE = 16
# message/partial fragments reassembled per id, at most.
MAX_FRAGMENTS = 100
# Leading bytes looked at to tell text (no NUL) from binary.
TEXT_SNIFF = 1024
# Parts a browser renders: data: URIs (HTML smuggling) are looked for in these.
HTML_TYPES = ("text/html", "application/xhtml+xml", "image/svg+xml", "message/html")
HTML_SUFFIXES = (".htm", ".html", ".xhtml", ".shtml", ".svg", ".mht", ".mhtml", ".hta")
_HTML_SNIFF = re.compile(rb"(?i)<(?:!doctype html|html|svg|body|script|a\s|iframe)")


def _named(names: tuple[str, ...], suffixes: tuple[str, ...]) -> bool:
    return any(n.lower().rstrip(". ").endswith(suffixes) for n in names)


def _may_be_read_as_text(ctx: Context) -> bool:
    """A part of a message an engine may read as text: a text type, or none at all
    outside a non-standard reading (scand.engines.clamav.urlcheck.checked)."""
    return not ctx.in_archive and (ctx.mime.lower().startswith("text/")
                                   or not (ctx.mime or ctx.alt))


def is_html(data: bytes, names: tuple[str, ...], mime_type: str) -> bool:
    """A part a browser would render: by declared type, by name, or by its start."""
    return (mime_type in HTML_TYPES
            or _named(names, HTML_SUFFIXES)
            or _HTML_SNIFF.search(data, 0, 1024) is not None)


def walk(data: bytes, name: str, limits: ContentConfig, *, keep_data: bool = True,
         engine_max: int | None = None, member_data: bool | None = None) -> Iterator[Item]:
    """All parts of ``data`` (whose own name is ``name``); see the module docstring.

    ``engine_max``: in a names-only walk, the size above which the engine beside
    it would scan only a prefix of an archive member (reported as too-large).
    ``member_data`` (default: ``keep_data``): False reads archives for their
    names only (members that are containers, or reached by a non-standard
    reading, still come with their bytes): for an engine that opens archives
    itself but takes the walker's decoded MIME parts."""
    walker = _Walker(Budget(limits, engine_max), keep_data,
                     keep_data if member_data is None else member_data)
    try:
        yield from walker.bytes_(data, Context.root(name))
        yield from walker.reassemble()
    except LimitHit as hit:
        yield hit.verdict
    except RecursionError:
        yield Unchecked(Reason.TOO_DEEP, "recursion limit")


@dataclass
class _Fragments:
    """The message/partial fragments of one id seen so far."""

    where: str
    total: int = 0
    bodies: dict[int, bytes] = field(default_factory=dict)
    bad: bool = False


class _Walker:
    def __init__(self, budget: Budget, keep_data: bool, member_data: bool) -> None:
        self.budget = budget
        self.keep = keep_data
        self.members = member_data
        self.seen: set[tuple[int, int]] = set()  # decoded parts already walked
        # The same for what was walked inside a message quoted in a text: read there
        # as quoted text (Context.quoted), it still gets its own reading elsewhere.
        self.seen_quoted: set[tuple[int, int]] = set()
        # message/partial fragments by id: number -> body, plus "total" and "where".
        self.partials: dict[str, _Fragments] = {}
        self.entities: set[tuple[int, int]] = set()  # raw MIME entities already parsed
        self.entities_quoted: set[tuple[int, int]] = set()
        self.inlined: set[int] = set()  # texts whose messages inline_message is reading

    def _first(self, seen: set[tuple[int, int]], data: bytes | memoryview) -> bool:
        key = (len(data), hash(data))  # a read-only memoryview hashes as its bytes
        if key in seen:
            return False
        seen.add(key)
        return True

    def bytes_(self, data: bytes, ctx: Context) -> Iterator[Item]:
        """A part given as bytes: yield it, then whatever it contains."""
        self.budget.depth(ctx.depth, ctx.where)
        self.budget.part()
        if ctx.depth and not self._first(self.seen_quoted if ctx.quoted else self.seen, data):
            if self.keep and not self.members and _may_be_read_as_text(ctx):
                # Handed again (scanner._scan_walked): the engine may read a text part
                # in a form its first sight did not get (libclamav's phishing check
                # skips a uuencoded block, then meets the same bytes as text/html).
                yield ctx.part(data)
            elif ctx.names or ctx.mime:  # same bytes, another name: the name still counts
                yield ctx.part(b"")
            return
        keep = self.keep or ctx.depth == 0 or ctx.alt
        # A zip behind a stub is looked for in binary parts and in parts named like archives.
        behind = b"\x00" in data[:TEXT_SNIFF] or _named(ctx.names, archives.STUB_SUFFIXES)
        kind = archives.sniff(data, behind)
        is_message = kind is None and ctx.sniff_message and looks_like_message(data)
        text = kind is None and not is_message and b"\x00" not in data[:TEXT_SNIFF]
        starts = embedded.starts(data) if text and ctx.sniff_message and ctx.inline else None
        first = next(starts, None) if starts is not None else None  # searched once
        # inline_read: its messages are read here, or by the reading it is a piece of.
        yield ctx.part(data if keep else b"", is_message, first is not None or (
            text and not ctx.inline))
        if kind is not None:
            yield from self.archive(kind, data, ctx)
        elif is_message:
            yield from self.message(data, ctx)
        else:
            yield from self.text_blocks(data, ctx, is_html(data, ctx.names, ctx.mime))
            if first is not None and starts is not None:
                yield from self.inline_message(data, ctx, first, starts)

    def message(self, data: bytes, ctx: Context) -> Iterator[Item]:
        """The parts of an RFC 5322 message in every reading of its header block."""
        for i, reading in enumerate(headers.readings(data)):
            yield from self.entity(reading.headers, reading.body,
                                   ctx.reading(reading.headers.odd), tail=i > 0)
        if data.startswith(b"From "):
            yield from self.mbox(data, ctx)

    def mbox(self, data: bytes, ctx: Context) -> Iterator[Item]:
        """An mbox holds one message after each line that starts ``From ``: mail
        readers (and libclamav) read every one. The whole was read as one message
        above (a ``From`` line inside a body is no split for that reading); here each
        later message that looks like one is read by itself too. Linear: one find per
        line, each look at most the message's own bytes."""
        starts: list[int] = []
        at = data.find(b"\nFrom ")
        while at >= 0:
            starts.append(at + 1)
            at = data.find(b"\nFrom ", at + 1)
        for k, start in enumerate(starts):
            end = starts[k + 1] if k + 1 < len(starts) else len(data)
            if looks_like_message(data[start:end]):  # else a "From " line inside a text
                yield from self.message_at(data, start, end,
                                           replace(ctx, where=ctx.label(f"mbox:{k + 2}")))

    def inline_message(self, data: bytes, ctx: Context, found: tuple[int, bool] | None,
                       starts: Iterator[tuple[int, bool]]) -> Iterator[Item]:
        """Messages inside a text after a preamble (:mod:`embedded`): the first with
        a multipart or message type read to the end of the text, as libclamav's mail
        parser reads it; each other one up to the next start (a decoy start cannot
        hide the ones after it, a base64 body is not read through the messages
        after it). Non-standard readings; each byte is in at most two of them.
        ``found``: the first of ``starts`` (embedded.starts), already taken."""
        self.budget.depth(ctx.depth + 1, ctx.where)
        # Its multiparts: not one leaf too; what is in it: quoted text (Context.quoted).
        here = replace(ctx, alt=True, inline=False, quoted=True)
        self.inlined.add(id(data))  # its pieces as they are hold no start not found here
        whole = True  # the first container start is still to come
        try:
            while found is not None:
                (start, container), found = found, next(starts, None)
                if container and whole:  # to the end of the text, as libclamav reads it
                    whole, end = False, len(data)
                else:
                    end = embedded.segment_end(data, start,
                                               len(data) if found is None else found[0])
                yield from self.message_at(data, start, end,
                                           replace(here, where=ctx.label(f"message@{start}")))
        finally:
            self.inlined.discard(id(data))

    def message_at(self, data: bytes, start: int, end: int, here: Context
                   ) -> Iterator[Item]:
        """The message ``data[start:end]`` (offsets, no copy), one part, at ``here``."""
        self.budget.part()
        for i, reading in enumerate(headers.readings(data, start, end)):
            yield from self.entity(reading.headers, reading.body,
                                   here.reading(reading.headers.odd), tail=i > 0)

    def entity(self, h: headers.Headers, body: Slice, ctx: Context, tail: bool = False
               ) -> Iterator[Item]:
        """One MIME entity: a multipart's children, a nested message, and/or a leaf.
        ``tail``: a reading whose header block ends early (its body is the rest of
        a message the first reading read whole)."""
        types = params.content_types(h)
        for _extra in types[1:]:  # each is a part of its own (below): charged first
            self.budget.part()
        ctype = types[0] if types else ""
        names = tuple(params.names(h))
        for _name in names[NAMES_FREE:]:  # each name is a policy check: a bomb is charged
            self.budget.part()
        label = ctx.label(names[0] if names else ctype or "body")
        multipart = any(t.startswith("multipart/") for t in types)
        parts, odd = mime.split(h, body, multipart, self.budget.part,  # charged as found
                                self.budget.parts_left())
        for raw in parts:
            entities = self.entities_quoted if ctx.quoted else self.entities
            if (ctx.alt or odd) and not self._first(entities, raw.view()):
                continue  # the same raw part from another reading: parsed already
            for i, reading in enumerate(headers.readings(raw.buf, raw.start, raw.end)):
                yield from self.entity(reading.headers, reading.body,
                                       ctx.reading(odd or reading.headers.odd), tail=i > 0)
        for extra in types[1:]:  # every declared type meets the policy (the names are
            # checked with the first; the shown name may exempt a type)
            yield ctx.child(label, names[:1], extra, alt=True).part(b"")
        if multipart:
            if not parts and ctx.inline:  # (else its bytes were read another way)
                yield Unchecked(Reason.UNREADABLE, f"{ctype} without parts at {ctx.where}")
            elif names:
                yield ctx.child(label, names, ctype).part(b"")
            if not parts or (ctx.alt and ctx.inline) or odd:
                yield from self.leaf(h, body, ctx.child(label, names, ctype, alt=True,
                                                        inline=not parts))
            return
        if "message/partial" in types:
            if ctx.quoted:  # quoted in a text: its body is read, as text
                yield from self.leaf(h, body, ctx.child(label, names, "text/plain"))
                return
            yield ctx.child(label, names, "message/partial").part(b"")
            self.partial(h, body, ctx.where)
            return
        if any(t in MESSAGE_TYPES for t in types):
            self.budget.depth(ctx.depth + 1, label)
            readings, odd = mime.leaf_readings(h, body)
            inner = ctx.child(label, names, ctype)
            hand = self.keep and not self.members  # its bytes to an engine (_scan_walked)
            for decoded in readings:
                if names or hand:
                    yield inner.part(decoded if hand else b"", hand)
                yield from self.message(decoded, inner.reading(odd))
            return
        yield from self.leaf(h, body, ctx.child(label, names, ctype,
                                                alt=ctx.alt or bool(parts),
                                                sniff_message=not tail))

    def partial(self, h: headers.Headers, body: Slice, where: str) -> None:
        """Keep a message/partial fragment for reassembly at the end of the walk."""
        found: dict[str, list[str]] = {}
        for value in h.all("content-type"):
            for key, values in params.params(value).items():
                found.setdefault(key, []).extend(values)
        ident = (found.get("id") or [""])[0]
        try:
            number = int((found.get("number") or ["0"])[0])
            total = int((found.get("total") or ["0"])[0])
        except ValueError:
            number = total = 0
        frags = self.partials.setdefault(ident, _Fragments(where))
        frags.total = total or frags.total
        if 0 < number <= MAX_FRAGMENTS:
            if number not in frags.bodies:
                frags.bodies[number] = body.tobytes()
        else:
            frags.bad = True

    def reassemble(self) -> Iterator[Item]:
        """RFC 2046 5.2.2: fragments with one id, all numbers 1..total present, are
        one message; it is walked like any other. An incomplete set is unchecked."""
        for ident, frags in self.partials.items():
            wanted = range(1, frags.total + 1)
            if frags.bad or not frags.total or any(n not in frags.bodies for n in wanted):
                yield Unchecked(Reason.UNREADABLE,
                                f"message/partial id={ident[:40]!r} incomplete at {frags.where}")
                continue
            whole = b"".join(frags.bodies[n] for n in wanted)
            self.budget.grow(len(whole))
            yield from self.message(whole, Context(1, f"partial:{ident[:40]}", alt=True))

    def leaf(self, h: headers.Headers, body: Slice, ctx: Context) -> Iterator[Item]:
        """A leaf entity's body (``ctx``: the part it decodes to), in every reading."""
        # Names-only walk: decode just enough to tell whether this part can hold
        # further names (a container, or encoded blocks in text).
        if (not self.keep and not ctx.alt and not is_html(b"", ctx.names, ctx.mime)
                and self._names_only_leaf(h, body, ctx.names, ctx.mime)):
            self.budget.part()
            if ctx.names or ctx.mime:
                yield ctx.part(b"")
            return
        readings, odd = mime.leaf_readings(h, body)
        inner = ctx.reading(odd)
        # A text piece as it is of a text whose messages are being read: no start in
        # it was missed, and an engine that decodes by itself read it in the text.
        piece = id(body.buf) in self.inlined
        for decoded in readings:
            self.budget.grow(len(decoded))
            as_is = (piece and len(decoded) == len(body) and b"\x00" not in decoded[:TEXT_SNIFF]
                     and decoded == body.view())
            yield from self.bytes_(decoded, replace(inner, inline=False, alt=False)
                                   if as_is else inner)

    def _names_only_leaf(self, h: headers.Headers, body: Slice, names: tuple[str, ...],
                         ctype: str) -> bool:
        """True when a names-only walk may stop at this leaf: its decoded start is no
        container, no HTML, no executable stub, and it can hold no encoded blocks."""
        ctes = mime.transfer_encodings(h)
        # Disk images hide their directory at 32 KiB: read that far only for them.
        image = _named(names, archives.IMAGE_SUFFIXES)
        want = SNIFF_IMAGE if image or not body.head(SNIFF_ENCODED).strip(b"A\r\n") else (
            SNIFF_ENCODED)
        start = body.head(want)
        cut = start.rfind(b"\n") if len(body) > want else -1
        # Whole lines only: a base64 quad cut in two would fail the fast decoder.
        readings, odd = mime.leaf_readings(h, Slice(start, 0, cut if cut > 0 else len(start)))
        head = readings[0]
        if odd or archives.sniff(head) is not None or head.startswith(b"MZ"):
            return False
        if "base64" in ctes or "quoted-printable" in ctes:
            # Blocks inside encoded text are seen only decoded: read such text whole.
            if _is_text(head, ctype):
                return False
        elif (textblocks.has_blocks(whole := body.tobytes()) or is_html(head, (), "")
              or (b"\x00" not in head[:TEXT_SNIFF] and embedded.any_start(whole))):
            return False
        # Last (it reads the whole body): malformed anywhere, the engine may read
        # it otherwise.
        view = body.view()
        return all(mime.canonical(cte, view) for cte in ctes)

    def text_blocks(self, data: bytes, ctx: Context, html: bool) -> Iterator[Item]:
        """Files encoded inside a text (textblocks.TEXT_BLOCKS: uuencode, yEnc,
        BinHex; data: URIs in HTML), each walked as a part of its own."""
        if b"\x00" in data[:TEXT_SNIFF]:
            return  # binary: mail clients look for these blocks in text only
        for kind in textblocks.TEXT_BLOCKS:
            if (kind.html_only and not html) or not kind.present(data):
                continue
            for found in kind.read(data, self.budget, ctx.where):
                if isinstance(found, Unchecked):
                    yield found
                    continue
                self.budget.grow(len(found.data))
                yield from self.bytes_(found.data, ctx.child(
                    ctx.label(found.label), found.names, found.mime, alt=True))

    def archive(self, kind: str, data: bytes, ctx: Context) -> Iterator[Item]:
        """The members of a container (archives.FORMATS), each walked as a part."""
        opener = archives.OPENERS[kind]
        for member in opener(data, ctx.names, self.budget, not self.members, ctx.where):
            if isinstance(member, (Encrypted, Unchecked)):
                yield member
                continue
            label = ctx.label(f"{kind}:{member.name}")
            member_names = member.names or (member.name,)
            if member.data is None:  # names-only walk: not a container, not read
                self.budget.part()
                yield ctx.child(label, member_names, in_archive=True, alt=False).part(b"")
                continue
            yield from self.bytes_(member.data, ctx.child(
                label, member_names, in_archive=True, alt=ctx.alt or member.alt))


def _is_text(head: bytes, ctype: str) -> bool:
    """A text a reader may find encoded files in (uuencode, yEnc, BinHex)."""
    return ctype.startswith("text/") or (not ctype and b"\x00" not in head[:TEXT_SNIFF])
