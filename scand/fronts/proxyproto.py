"""PROXY protocol version 2, the header a load balancer puts before a connection (sans-IO).

HAProxy's ``send-proxy-v2`` writes one binary header at the start of each
connection it opens to a server: who the real client is (source address and
port) and which address it called (destination). scand reads it only from
configured balancers (``[farm] proxy_from``) and then applies its allow-list
to the real client (:mod:`scand.fronts.proxy_gate`, the trio half).

This module is bytes in, a result out: :func:`parse` returns a
:class:`ProxyHeader`, ``NEED_DATA`` (a prefix of a valid header; read more),
or raises :class:`ProxyError`. It is strict: the 12-byte signature, version 2,
command LOCAL or PROXY, a known family and transport, an address block of the
family's exact size, a total length bounded by :data:`MAX_HEADER`, and TLVs
that fit the header exactly (their contents are skipped). Version 1 (the text
form, ``PROXY TCP4 ...``) is refused: HAProxy speaks v2 with
``send-proxy-v2`` and one parser is less to get wrong.

Stdlib only (as scand.protocol). Format: the PROXY protocol specification,
section 2.2 (haproxy/doc/proxy-protocol.txt).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Literal

from scand.events import NEED_DATA, NeedData

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
FIXED = 16  # signature (12), version/command (1), family/transport (1), length (2)
# The largest header accepted: the biggest address block (two 108-byte Unix
# paths) plus room for the TLVs HAProxy sends (unique-id, ALPN, authority, SSL
# with its cipher and version, CRC32C, NOOP padding). A balancer that sends
# more is misconfigured; bounding it bounds what a connection holds before it
# is known to be a client at all.
MAX_HEADER = 2048
ADDRESS_SIZES = {0x1: 12, 0x2: 36, 0x3: 216}  # INET, INET6, UNIX (spec 2.2)
FAMILY_NAMES = {0x0: "UNSPEC", 0x1: "INET", 0x2: "INET6", 0x3: "UNIX"}
TRANSPORTS = {0x0: "UNSPEC", 0x1: "STREAM", 0x2: "DGRAM"}
TLV_HEADER = 3  # type (1), length (2)

Address = tuple[str, int]


class ProxyError(ValueError):
    """Not a valid PROXY v2 header; the connection must be closed."""


@dataclass(frozen=True)
class ProxyHeader:
    """One parsed header. ``source``/``dest`` are None for LOCAL and for UNSPEC/UNIX."""

    command: Literal["LOCAL", "PROXY"]
    family: str  # UNSPEC, INET, INET6, UNIX
    transport: str  # UNSPEC, STREAM, DGRAM
    source: Address | None
    dest: Address | None
    length: int  # bytes the header took on the wire (read exactly these)


def header_length(prefix: bytes) -> int | NeedData:
    """The total length of the header that starts ``prefix``, once its first 16
    bytes are known (so a reader can ask for exactly that many)."""
    check_signature(prefix)
    if len(prefix) < FIXED:
        return NEED_DATA
    total: int = FIXED + struct.unpack_from("!H", prefix, 14)[0]
    if total > MAX_HEADER:
        raise ProxyError(f"header of {total} bytes, over {MAX_HEADER}")
    return total


def check_signature(prefix: bytes) -> None:
    """Raise ProxyError unless ``prefix`` could be the start of a v2 header."""
    n = min(len(prefix), len(SIGNATURE))
    if prefix[:n] != SIGNATURE[:n]:
        head = prefix[:len(V1_PREFIX)]
        if head and V1_PREFIX.startswith(head):
            raise ProxyError("PROXY protocol version 1 (text) is not accepted; use send-proxy-v2")
        raise ProxyError("no PROXY v2 signature")


def looks_like_proxy(first: bytes) -> bool:
    """True when a connection's first bytes are (the start of) a PROXY header of any
    version: what a peer that is not a balancer must not send. No Sophie or clamd
    request starts with CR LF or with ``PROXY``."""
    if not first:
        return False
    n = min(len(first), len(SIGNATURE))
    return (n >= 2 and first[:n] == SIGNATURE[:n]) or first.startswith(b"PROXY")


def parse(data: bytes) -> ProxyHeader | NeedData:
    """Parse the header at the start of ``data`` (bytes after it are ignored)."""
    total = header_length(data)
    if total is NEED_DATA:
        return NEED_DATA
    assert isinstance(total, int)
    if len(data) < total:
        return NEED_DATA
    ver_cmd, fam_proto = data[12], data[13]
    if ver_cmd >> 4 != 2:
        raise ProxyError(f"PROXY protocol version {ver_cmd >> 4}, not 2")
    command = ver_cmd & 0x0F
    if command not in (0x0, 0x1):
        raise ProxyError(f"unknown PROXY command {command:#x}")
    family, transport = fam_proto >> 4, fam_proto & 0x0F
    if family not in FAMILY_NAMES or transport not in TRANSPORTS:
        raise ProxyError(f"unknown family/transport byte {fam_proto:#04x}")
    body = data[FIXED:total]
    size = ADDRESS_SIZES.get(family, 0)
    if len(body) < size:
        raise ProxyError(f"{FAMILY_NAMES[family]} address block of {len(body)} bytes, "
                         f"needs {size}")
    _check_tlvs(body[size:])
    source = dest = None
    if command == 0x1 and family in (0x1, 0x2):
        source, dest = _addresses(family, body[:size])
    return ProxyHeader("PROXY" if command == 0x1 else "LOCAL", FAMILY_NAMES[family],
                       TRANSPORTS[transport], source, dest, total)


def _addresses(family: int, block: bytes) -> tuple[Address, Address]:
    width = 4 if family == 0x1 else 16
    src = ipaddress.ip_address(block[:width])
    dst = ipaddress.ip_address(block[width:2 * width])
    sport, dport = struct.unpack_from("!HH", block, 2 * width)
    return (str(src), sport), (str(dst), dport)


def _check_tlvs(tlvs: bytes) -> None:
    """TLVs must tile the rest of the header exactly; their values are not used."""
    at = 0
    while at < len(tlvs):
        if len(tlvs) - at < TLV_HEADER:
            raise ProxyError("truncated TLV header")
        length: int = struct.unpack_from("!H", tlvs, at + 1)[0]
        at += TLV_HEADER + length
        if at > len(tlvs):
            raise ProxyError("TLV longer than the header")


def build(command: Literal["LOCAL", "PROXY"] = "PROXY", source: Address | None = None,
          dest: Address | None = None, tlvs: bytes = b"") -> bytes:
    """A v2 header (for tests and test clients): INET or INET6 from the addresses,
    UNSPEC when there are none."""
    if source is None or dest is None:
        block, fam = b"", 0x00
    else:
        src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(dest[0])
        if src.version != dst.version:
            raise ValueError("source and destination of different families")
        fam = 0x11 if src.version == 4 else 0x21
        block = src.packed + dst.packed + struct.pack("!HH", source[1], dest[1])
    cmd = 0x21 if command == "PROXY" else 0x20
    body = block + tlvs
    return SIGNATURE + bytes([cmd, fam]) + struct.pack("!H", len(body)) + body


__all__ = ["MAX_HEADER", "ProxyError", "ProxyHeader", "build", "header_length",
           "looks_like_proxy", "parse"]
