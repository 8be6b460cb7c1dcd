"""PROXY protocol v2, sans-IO: valid headers whole and byte by byte, and every way
a header is refused (signature, version, command, family, lengths, TLVs, v1)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scand.events import NEED_DATA
from scand.fronts import proxyproto
from scand.fronts.proxyproto import MAX_HEADER, SIGNATURE, ProxyError, ProxyHeader, build, parse

V4 = build("PROXY", ("192.0.2.7", 40000), ("10.0.0.1", 3310))
V6 = build("PROXY", ("2001:db8::7", 1), ("2001:db8::1", 2))


def test_ipv4_and_ipv6_headers() -> None:
    h = parse(V4 + b"STREAM 5\n")
    assert h == ProxyHeader("PROXY", "INET", "STREAM", ("192.0.2.7", 40000),
                            ("10.0.0.1", 3310), 28)
    h6 = parse(V6)
    assert isinstance(h6, ProxyHeader) and h6.source == ("2001:db8::7", 1)
    assert h6.family == "INET6" and h6.length == 16 + 36


def test_local_has_no_address_and_tlvs_are_skipped() -> None:
    local = build("LOCAL")
    assert parse(local) == ProxyHeader("LOCAL", "UNSPEC", "UNSPEC", None, None, 16)
    # HAProxy's LOCAL checks may carry an address block too: it is ignored.
    h = parse(build("LOCAL", ("127.0.0.1", 1), ("127.0.0.1", 2)))
    assert isinstance(h, ProxyHeader) and h.source is None
    tlvs = b"\x04\x00\x03abc" + b"\x05\x00\x00"  # NOOP with 3 bytes, an empty unique-id
    h = parse(build("PROXY", ("192.0.2.7", 1), ("10.0.0.1", 2), tlvs))
    assert isinstance(h, ProxyHeader) and h.length == 28 + len(tlvs)


@pytest.mark.parametrize("header", [V4, V6, build("LOCAL")])
def test_byte_by_byte_needs_data_until_complete(header: bytes) -> None:
    for n in range(len(header)):
        assert parse(header[:n]) is NEED_DATA
    assert isinstance(parse(header), ProxyHeader)
    assert proxyproto.header_length(header[:16]) == len(header)


def _with(header: bytes, at: int, value: int) -> bytes:
    return header[:at] + bytes([value]) + header[at + 1:]


@pytest.mark.parametrize(("data", "match"), [
    (b"STREAM 5\n", "no PROXY v2 signature"),
    (b"\r\n\r\nX", "no PROXY v2 signature"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "version 1"),
    (b"PRO", "version 1"),
    (_with(V4, 12, 0x11), "version 1, not 2"),
    (_with(V4, 12, 0x31), "version 3"),
    (_with(V4, 12, 0x22), "unknown PROXY command"),
    (_with(V4, 13, 0x41), "family/transport"),
    (_with(V4, 13, 0x13), "family/transport"),
    (SIGNATURE + b"\x21\x11" + struct.pack("!H", 8) + b"\0" * 8, "needs 12"),
    (SIGNATURE + b"\x21\x21" + struct.pack("!H", 12) + b"\0" * 12, "needs 36"),
    (SIGNATURE + b"\x21\x11" + struct.pack("!H", 0xFFFF), "over"),
    (SIGNATURE + b"\x21\x11" + struct.pack("!H", 14) + b"\0" * 14, "truncated TLV"),
    (SIGNATURE + b"\x21\x11" + struct.pack("!H", 16) + b"\0" * 12 + b"\x04\x00\x09\0",
     "TLV longer"),
])
def test_refused(data: bytes, match: str) -> None:
    with pytest.raises(ProxyError, match=match):
        parse(data)


def test_length_bound_is_checked_before_reading_the_body() -> None:
    too_long = SIGNATURE + b"\x21\x11" + struct.pack("!H", MAX_HEADER - 15)
    with pytest.raises(ProxyError, match="over"):
        proxyproto.header_length(too_long)
    fits = SIGNATURE + b"\x21\x11" + struct.pack("!H", MAX_HEADER - 16)
    assert proxyproto.header_length(fits) == MAX_HEADER


def test_looks_like_proxy() -> None:
    assert proxyproto.looks_like_proxy(V4)
    assert proxyproto.looks_like_proxy(V4[:2])
    assert proxyproto.looks_like_proxy(b"PROXY TCP4 1.2.3.4 ...")
    for request in (b"", b"STREAM 5\n", b"PING\n", b"zPING\0", b"nINSTREAM\n", b"/var/spool\n",
                    b"\r", b"\x16\x03\x01"):  # (\x16: a TLS ClientHello)
        assert not proxyproto.looks_like_proxy(request)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.binary(max_size=64),
                 st.builds(lambda tail: SIGNATURE + tail, st.binary(max_size=300)),
                 st.builds(lambda head, n, tail: SIGNATURE + head + struct.pack("!H", n) + tail,
                           st.binary(min_size=2, max_size=2), st.integers(0, 400),
                           st.binary(max_size=400))))
def test_any_bytes_give_a_header_need_data_or_proxy_error(data: bytes) -> None:
    try:
        result = parse(data)
    except ProxyError:
        return
    if isinstance(result, ProxyHeader):
        assert result.length <= len(data) and result.length <= MAX_HEADER
        assert (result.source is None) == (result.command == "LOCAL"
                                           or result.family in ("UNSPEC", "UNIX"))
    else:
        assert result is NEED_DATA
