"""What the walker produces, and the budget that bounds one walk."""

from __future__ import annotations

from dataclasses import dataclass, replace

from scand.config import ContentConfig
from scand.events import Reason, Unchecked

# Output of one decompression step; also the granularity of limit checks.
CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Slice:
    """``buf[start:end]`` as offsets: a body or a part of one buffer, not a copy.

    Headers, multipart splitting and transfer decoding work on these, so a
    message's body, its parts and their bodies cost nothing until a part is
    decoded (the decoder reads :meth:`view`, a memoryview)."""

    buf: bytes
    start: int
    end: int

    @classmethod
    def of(cls, data: bytes) -> Slice:
        return cls(data, 0, len(data))

    def __len__(self) -> int:
        return self.end - self.start

    def view(self) -> memoryview:
        return memoryview(self.buf)[self.start : self.end]

    def tobytes(self) -> bytes:
        """The bytes (a copy, unless this is the whole buffer)."""
        if self.start == 0 and self.end == len(self.buf):
            return self.buf
        return self.buf[self.start : self.end]

    def head(self, n: int) -> bytes:
        """The first ``n`` bytes (a copy of at most ``n``)."""
        return self.buf[self.start : min(self.end, self.start + n)]


class LimitHit(Exception):
    """A walk limit was reached; carries the verdict for it."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.verdict = Unchecked(reason, detail)


@dataclass(frozen=True, slots=True)
class Part:
    """One decoded piece of the input."""

    data: bytes
    names: tuple[str, ...]
    mime: str
    depth: int
    where: str  # a short trail for logs: "input>zip:a.zip>b.exe"
    in_archive: bool = False
    # Reached only by a non-standard reading (an ambiguous header, boundary or
    # encoding, a zip entry only the local headers list, ...): an engine that
    # decodes by itself may not have seen it, so the scanner hands it over too.
    alt: bool = False
    # The walker read these bytes as an RFC 5322 message (and walked its parts):
    # an engine handed the walker's parts need not parse it as mail again.
    message: bool = False
    # Inside a message quoted in a text (Context.quoted): scanned, but its names and
    # types are text to a mail client, offered as no attachment: no policy check.
    quoted: bool = False
    # A text holding messages the walker read (walker.inline_message): an engine
    # handed the walker's parts need not parse it as mail again.
    inline_read: bool = False


@dataclass(frozen=True, slots=True)
class Context:
    """Where a walk is: how the bytes found here were reached and what they are
    known as. Passed down the walk and derived, never changed."""

    depth: int
    where: str  # the trail so far (Part.where)
    names: tuple[str, ...] = ()
    mime: str = ""
    in_archive: bool = False
    alt: bool = False  # reached only by a non-standard reading (Part.alt)
    # False: the body of a header block cut short (its message was read in full
    # already), never a message of its own.
    sniff_message: bool = True
    # False: what is here was read by another reading already (a text's messages,
    # walker.inline_message; a multipart's parts): no message is looked for in a
    # text here, a multipart with parts is not read as one leaf too, and one
    # without parts is no -1:unreadable (a bounce quoting a message's headers).
    inline: bool = True
    # Inside a message found in a text (walker.inline_message), at any depth: what a
    # mail client shows as text. A message/partial here is no fragment a client would
    # put together (so neither banned nor kept for reassembly): its body is read.
    quoted: bool = False

    @classmethod
    def root(cls, name: str) -> Context:
        """The input itself, named ``name`` (or not)."""
        return cls(0, name or "input", (name,) if name else ())

    def label(self, what: str) -> str:
        """The trail one step further: ``input>zip:a.zip``."""
        return f"{self.where}>{what}"

    def child(self, where: str, names: tuple[str, ...] = (), mime: str = "", *,
              in_archive: bool = False, alt: bool | None = None,
              sniff_message: bool = True, inline: bool = True) -> Context:
        """A part one level down, at trail ``where``; ``alt`` defaults to this one's."""
        return Context(self.depth + 1, where, names, mime, in_archive,
                       self.alt if alt is None else alt, sniff_message, inline, self.quoted)

    def reading(self, odd: bool) -> Context:
        """This place in a reading that is non-standard if ``odd``."""
        return replace(self, alt=True) if odd and not self.alt else self

    def part(self, data: bytes, message: bool = False, inline_read: bool = False) -> Part:
        """A part found here (``message``: read as an RFC 5322 message; ``inline_read``:
        a text whose messages the walker reads)."""
        return Part(data, self.names, self.mime, self.depth, self.where, self.in_archive,
                    self.alt, message, self.quoted, inline_read)


@dataclass(frozen=True, slots=True)
class Encrypted:
    """An encrypted archive member: not scannable."""

    name: str
    where: str


@dataclass(frozen=True, slots=True)
class Member:
    """An archive member as an opener hands it over; ``data`` None = not read."""

    name: str
    data: bytes | None
    names: tuple[str, ...] = ()  # every name (central, local, unicode path, ...)
    alt: bool = False  # see Part.alt


Item = Part | Encrypted | Unchecked


class Budget:
    """Counts parts and decoded bytes against the limits, for one whole walk."""

    def __init__(self, limits: ContentConfig, engine_max: int | None = None) -> None:
        self.limits = limits
        # Names-only walk: the engine beside it cuts members larger than this and
        # calls them clean (ClamAV's MaxFileSize), so the walker reports them.
        self.engine_max = engine_max
        self.parts = 0
        self.bytes = 0

    def depth(self, depth: int, where: str) -> None:
        if depth > self.limits.max_depth:
            raise LimitHit(Reason.TOO_DEEP, f"nesting>{self.limits.max_depth} at {where}")

    def part(self) -> None:
        self.parts += 1
        if self.parts > self.limits.max_parts:
            raise LimitHit(Reason.TOO_MANY_FILES, f"parts>{self.limits.max_parts}")

    def grow(self, n: int) -> None:
        self.bytes += n
        if self.bytes > self.limits.max_bytes:
            raise LimitHit(Reason.TOO_LARGE, f"decoded>{self.limits.max_bytes}")

    def parts_left(self) -> int:
        return self.limits.max_parts - self.parts

    def room(self) -> int:
        """Decoded bytes left before the byte limit."""
        return self.limits.max_bytes - self.bytes

    def ratio(self, produced: int, consumed: int, where: str) -> None:
        """A bomb check: only past 1 MiB of output, so tiny files never trip it."""
        if produced > CHUNK and produced > self.limits.max_ratio * max(consumed, 1):
            raise LimitHit(Reason.TOO_LARGE, f"ratio>{self.limits.max_ratio} at {where}")
