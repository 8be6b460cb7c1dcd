"""Sans-IO milter protocol, version 6, as Postfix and Sendmail speak it (PROTOCOL.md §8).

Bytes in, events out; replies are built by the small ``reply_*`` functions.
No trio, no socket, no clock.

Framing: every packet is a 4-byte big-endian length (counting the command
byte), one command byte, then the data. The MTA opens with option
negotiation; :meth:`MilterParser.negotiate` answers it asking only for the
steps scand needs (headers, body, end of message), so the MTA skips connect,
HELO, envelope, DATA, unknown commands and end of headers, and expects no
reply to each header or body chunk.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from scand.events import NEED_DATA, NeedData

# Commands (MTA -> filter): libmilter's mfdef.h SMFIC_*.
ABORT, BODY, CONNECT, MACRO, BODYEOB = b"A", b"B", b"C", b"D", b"E"
HELO, QUIT_NC, HEADER, MAIL, EOH = b"H", b"K", b"L", b"M", b"N"
OPTNEG, QUIT, RCPT, DATA, UNKNOWN = b"O", b"Q", b"R", b"T", b"U"

# Replies (filter -> MTA): SMFIR_*.
R_ACCEPT, R_CONTINUE, R_DISCARD = b"a", b"c", b"d"
R_ADDHEADER, R_PROGRESS, R_QUARANTINE = b"h", b"p", b"q"
R_REJECT, R_TEMPFAIL, R_REPLYCODE = b"r", b"t", b"y"

# Actions the filter may take (SMFIF_*).
F_ADDHDRS = 0x01
F_QUARANTINE = 0x20

# Protocol flags (SMFIP_*): steps the MTA skips, replies it does not wait for.
P_NOCONNECT = 0x01
P_NOHELO = 0x02
P_NOMAIL = 0x04
P_NORCPT = 0x08
P_NOBODY = 0x10
P_NOHDRS = 0x20
P_NOEOH = 0x40
P_NR_HDR = 0x80
P_NOUNKNOWN = 0x100
P_NODATA = 0x200
P_NR_CONN = 0x1000
P_NR_HELO = 0x2000
P_NR_MAIL = 0x4000
P_NR_RCPT = 0x8000
P_NR_DATA = 0x10000
P_NR_UNKN = 0x20000
P_NR_EOH = 0x40000
P_NR_BODY = 0x80000

VERSION = 6
# What scand asks the MTA for: skip every step but headers, body and end of
# message, and send no reply for headers and body chunks (only EOM answers).
WANTED_PROTOCOL = (
    P_NOCONNECT | P_NOHELO | P_NOMAIL | P_NORCPT | P_NOEOH | P_NOUNKNOWN | P_NODATA
    | P_NR_HDR | P_NR_BODY | P_NR_CONN | P_NR_HELO | P_NR_MAIL | P_NR_RCPT | P_NR_DATA
    | P_NR_UNKN | P_NR_EOH
)
WANTED_ACTIONS = F_ADDHDRS | F_QUARANTINE
# A body chunk is at most 64 KiB; allow some slack for other packets, refuse more.
MAX_PACKET = 1024 * 1024

# The command byte of each step, and the "no reply" flag for it.
_NO_REPLY = {
    CONNECT: P_NR_CONN, HELO: P_NR_HELO, MAIL: P_NR_MAIL, RCPT: P_NR_RCPT,
    DATA: P_NR_DATA, UNKNOWN: P_NR_UNKN, HEADER: P_NR_HDR, EOH: P_NR_EOH, BODY: P_NR_BODY,
}


# --- events ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Negotiate:
    version: int
    actions: int
    protocol: int


@dataclass(frozen=True, slots=True)
class Macros:
    step: bytes  # the command the macros belong to
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Step:
    """A step scand does not act on (connect, HELO, MAIL, RCPT, DATA, EOH, unknown)."""

    command: bytes
    args: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Body:
    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    data: bytes  # a last body chunk, if the MTA put one in the E packet


@dataclass(frozen=True, slots=True)
class Abort:
    """The current message is over (RSET, or rejected elsewhere); the connection stays."""


@dataclass(frozen=True, slots=True)
class Quit:
    new_connection: bool = False  # K: a new SMTP session follows on this milter connection


@dataclass(frozen=True, slots=True)
class ProtocolError:
    detail: str


MilterEvent = (
    Negotiate | Macros | Step | Header | Body | EndOfMessage | Abort | Quit | ProtocolError
)


def _split_nul(data: bytes) -> list[bytes]:
    parts = data.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return parts


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


class MilterParser:
    """Parser and negotiation state for one milter connection."""

    def __init__(self, max_packet: int = MAX_PACKET) -> None:
        self._buf = bytearray()
        self.max_packet = max_packet
        self.protocol = 0  # the flags agreed at negotiation
        self.actions = 0
        self.version = 0
        self.negotiated = False
        self.failed = False

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_event(self) -> MilterEvent | NeedData:
        if self.failed:
            return NEED_DATA
        if len(self._buf) < 4:
            return NEED_DATA
        (length,) = struct.unpack_from(">I", self._buf)
        if length < 1 or length > self.max_packet:
            self.failed = True
            return ProtocolError(f"packet length {length}")
        if len(self._buf) < 4 + length:
            return NEED_DATA
        cmd = bytes(self._buf[4:5])
        data = bytes(self._buf[5 : 4 + length])
        del self._buf[: 4 + length]
        event = self._decode(cmd, data)
        if isinstance(event, ProtocolError):
            self.failed = True
        return event

    def _decode(self, cmd: bytes, data: bytes) -> MilterEvent:
        if cmd == OPTNEG:
            if len(data) < 12:
                return ProtocolError("short option negotiation")
            return Negotiate(*struct.unpack_from(">III", data))
        if not self.negotiated:
            return ProtocolError(f"command {cmd!r} before option negotiation")
        if cmd == BODY:
            return Body(data)
        if cmd == HEADER:
            parts = _split_nul(data)
            if len(parts) != 2:
                return ProtocolError("malformed header packet")
            return Header(_text(parts[0]), _text(parts[1]))
        if cmd == MACRO:
            if not data:
                return ProtocolError("empty macro packet")
            items = _split_nul(data[1:])
            pairs = zip(items[::2], items[1::2], strict=False)
            values = {_text(k).strip("{}"): _text(v) for k, v in pairs}
            return Macros(data[:1], values)
        if cmd == BODYEOB:
            return EndOfMessage(data)
        if cmd == ABORT:
            return Abort()
        if cmd == QUIT:
            return Quit()
        if cmd == QUIT_NC:
            return Quit(new_connection=True)
        if cmd in (CONNECT, HELO, MAIL, RCPT, DATA, EOH, UNKNOWN):
            return Step(cmd, tuple(_split_nul(data)))
        return ProtocolError(f"unknown command {cmd!r}")

    def negotiate(self, offer: Negotiate) -> bytes:
        """Agree on version, actions and steps; the reply packet to send."""
        self.version = min(offer.version, VERSION)
        self.actions = offer.actions & WANTED_ACTIONS
        # Only flags the MTA offered may be asked for (libmilter's rule).
        self.protocol = offer.protocol & WANTED_PROTOCOL
        self.negotiated = True
        return packet(OPTNEG, struct.pack(">III", self.version, self.actions, self.protocol))

    def needs_reply(self, event: MilterEvent) -> bool:
        """Whether the MTA waits for an answer to this event."""
        if isinstance(event, EndOfMessage):
            return True
        if isinstance(event, Header):
            return not self.protocol & P_NR_HDR
        if isinstance(event, Body):
            return not self.protocol & P_NR_BODY
        if isinstance(event, Step):
            return not self.protocol & _NO_REPLY.get(event.command, 0)
        return False  # negotiation is answered by negotiate(); macros, abort, quit never

    def can(self, action: int) -> bool:
        return bool(self.actions & action)


# --- replies -------------------------------------------------------------------


def packet(cmd: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data) + 1) + cmd + data


def _clean(text: str, limit: int = 400) -> bytes:
    """Reply and header text: printable ASCII only, no '%' (Sendmail's format escape)."""
    out = "".join(c if " " <= c <= "~" and c != "%" else "?" for c in text)
    return out[:limit].encode("ascii")


def reply_continue() -> bytes:
    return packet(R_CONTINUE)


def reply_accept() -> bytes:
    return packet(R_ACCEPT)


def reply_discard() -> bytes:
    return packet(R_DISCARD)


def reply_progress() -> bytes:
    return packet(R_PROGRESS)


def reply_tempfail() -> bytes:
    return packet(R_TEMPFAIL)


def reply_reject() -> bytes:
    return packet(R_REJECT)


def reply_code(line: str) -> bytes:
    """A full SMTP reply: ``"554 5.7.1 text"`` (code, enhanced status code, text)."""
    return packet(R_REPLYCODE, _clean(line) + b"\0")


def reply_add_header(name: str, value: str) -> bytes:
    return packet(R_ADDHEADER, _clean(name, 100) + b"\0" + _clean(value) + b"\0")


def reply_quarantine(reason: str) -> bytes:
    return packet(R_QUARANTINE, _clean(reason) + b"\0")
