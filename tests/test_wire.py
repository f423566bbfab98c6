"""The bit-exact wire format: stream header and per-frame messages (semcom.link.wire)."""

from __future__ import annotations

import random
import struct
import zlib

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from semcom.config import DEFAULT_BETA, DEFAULT_TAU, LinkConfig
from semcom.errors import ConfigError, WireFormatError
from semcom.link.wire import (
    HEADER_SIZE,
    BitReader,
    BitWriter,
    HitMessage,
    MissMessage,
    StreamHeader,
    decode_message,
    encode_hit,
    encode_miss,
    message_bits,
    read_message,
    read_stream_message,
    symbol_bits,
    symbol_bytes,
    write_message,
)

SETTINGS = settings(max_examples=60, deadline=None)


def ref_symbol_bytes(m: int) -> int:
    """ceil(ceil(log2(M + 1)) / 8), computed without bit tricks: the smallest b with 2**b >= M + 1."""
    b = 0
    while 2**b < m + 1:
        b += 1
    return -(-b // 8)


# =========================================================================== header

multiple_of_16 = st.integers(1, 256).map(lambda k: 16 * k)
configs = st.builds(
    LinkConfig,
    rule=st.sampled_from(["nearest", "hopfield", "paper"]),
    full_policy=st.sampled_from(["none", "lru"]),
    d=st.integers(1, 4096),
    m_max=st.integers(1, 2**24 - 1),
    beta=st.floats(1e-6, 1e6),
    tau=st.floats(1e-6, 1.0 - 1e-6),
    top_k=st.integers(1, 64),
    height=multiple_of_16,
    width=multiple_of_16,
)
headers = st.builds(StreamHeader, config=configs, frames=st.integers(0, 2**32 - 1),
                    weights=st.binary(min_size=4, max_size=4))


@SETTINGS
@given(headers)
def test_header_round_trip(h):
    data = h.to_bytes()
    assert len(data) == HEADER_SIZE == 41
    back = StreamHeader.from_bytes(data)
    assert back == h
    assert back.config.model_dump() == h.config.model_dump()
    # the stream's first message follows the header: trailing bytes are not part of it
    assert StreamHeader.from_bytes(data + b"\x01\x02\x03") == h


@settings(max_examples=25, deadline=None)
@given(h=headers, delta=st.integers(1, 255))
def test_any_single_byte_change_of_the_header_is_rejected(h, delta):
    data = h.to_bytes()
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= delta
        with pytest.raises(WireFormatError):
            StreamHeader.from_bytes(bytes(bad))


@settings(max_examples=10, deadline=None)
@given(headers)
def test_truncated_header_is_rejected(h):
    data = h.to_bytes()
    for n in range(len(data)):
        with pytest.raises(WireFormatError, match="truncated"):
            StreamHeader.from_bytes(data[:n])


def _with_crc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "big")


def test_header_with_valid_crc_but_bad_content_is_a_wire_format_error():
    fmt = struct.Struct(">3sBBHIffBHHI4sBf")
    ok = (b"SCM", 1, 0x11, 64, 256, 20.0, 0.9, 4, 64, 64, 0, b"\0\0\0\0", 0, 0.995)
    assert StreamHeader.from_bytes(_with_crc(fmt.pack(*ok))).config == LinkConfig(tau=0.9, beta=20.0)
    for i, value in ((2, 0x13), (2, 0x21), (3, 0), (4, 0), (4, 2**24 + 1), (5, 2e6), (5, 0.0), (6, 1.0),
                     (6, float("nan")), (7, 0), (7, 65), (8, 24), (9, 0), (1, 2), (0, b"SCN"), (12, 9),
                     (13, 1.5), (13, 0.0)):
        fields = list(ok)
        fields[i] = value
        with pytest.raises(WireFormatError):
            StreamHeader.from_bytes(_with_crc(fmt.pack(*fields)))


@pytest.mark.parametrize("kwargs", [dict(tau=0.99999999), dict(tau=1e-50), dict(beta=1e-50)])
def test_float32_rounding_keeps_tau_and_beta_in_range(kwargs):
    try:
        c = LinkConfig(**kwargs)
    except (ValidationError, ConfigError):
        return                          # refusing the value up front would be fine too
    assert 0.0 < c.tau < 1.0 and 0.0 < c.beta <= 1e6
    h = StreamHeader(c)
    assert StreamHeader.from_bytes(h.to_bytes()) == h


def test_default_config_is_rounded_like_an_explicit_one():
    assert LinkConfig() == LinkConfig(tau=DEFAULT_TAU, beta=DEFAULT_BETA)
    h = StreamHeader(LinkConfig())
    assert StreamHeader.from_bytes(h.to_bytes()) == h


# =========================================================================== messages


def test_symbol_sizes():
    for m, bits, nbytes in ((0, 0, 0), (1, 1, 1), (2, 2, 1), (3, 2, 1), (4, 3, 1), (255, 8, 1), (256, 9, 2),
                            (65535, 16, 2), (65536, 17, 3), (100000, 17, 3)):
        assert symbol_bits(m) == bits and symbol_bytes(m) == nbytes == ref_symbol_bytes(m)


@SETTINGS
@given(data=st.data(), m=st.integers(1, 100000), d=st.integers(1, 300))
def test_hit_round_trip_and_length(data, m, d):
    index = data.draw(st.integers(0, m - 1))
    msg = encode_hit(index, m)
    assert len(msg) == ref_symbol_bytes(m)
    assert decode_message(msg, m, d) == HitMessage(index)
    assert read_message(b"junk" + msg + b"more", 4, m, d) == (HitMessage(index), 4 + len(msg))


@SETTINGS
@given(m=st.integers(0, 100000), codes=st.binary(min_size=1, max_size=300))
def test_miss_round_trip_and_length(m, codes):
    d = len(codes)
    msg = encode_miss(codes, m)
    assert len(msg) == ref_symbol_bytes(m) + d
    assert decode_message(msg, m, d) == MissMessage(codes)


def test_encode_hit_rejects_an_index_out_of_range():
    for index, m in ((0, 0), (1, 1), (5, 5), (-1, 3)):
        with pytest.raises(ValueError):
            encode_hit(index, m)


@SETTINGS
@given(data=st.data(), m=st.integers(1, 100000), d=st.integers(1, 64))
def test_symbol_above_memory_size_is_rejected(data, m, d):
    n = symbol_bytes(m)
    assume(m < 2 ** (8 * n) - 1)
    symbol = data.draw(st.integers(m + 1, 2 ** (8 * n) - 1))
    msg = symbol.to_bytes(n, "big") + bytes(d)
    with pytest.raises(WireFormatError, match="out of range"):
        decode_message(msg, m, d)
    with pytest.raises(WireFormatError):
        read_message(msg, 0, m, d)


@SETTINGS
@given(data=st.data(), m=st.integers(0, 100000), d=st.integers(1, 64))
def test_truncated_and_trailing_messages_are_rejected(data, m, d):
    codes = data.draw(st.binary(min_size=d, max_size=d))
    miss = encode_miss(codes, m)
    for cut in range(len(miss)):
        with pytest.raises(WireFormatError, match="truncated"):
            decode_message(miss[:cut], m, d)
    extra = data.draw(st.binary(min_size=1, max_size=8))
    with pytest.raises(WireFormatError, match="trailing"):
        decode_message(miss + extra, m, d)
    if m > 0:
        hit = encode_hit(data.draw(st.integers(0, m - 1)), m)
        for cut in range(len(hit)):
            with pytest.raises(WireFormatError, match="truncated"):
                decode_message(hit[:cut], m, d)
        with pytest.raises(WireFormatError, match="trailing"):
            decode_message(hit + extra, m, d)


@settings(max_examples=100, deadline=None)
@given(blob=st.binary(max_size=80), m=st.integers(0, 100000), d=st.integers(1, 64), offset=st.integers(0, 90))
def test_fuzz_decoding_never_raises_anything_but_wire_format_error(blob, m, d, offset):
    try:
        msg = decode_message(blob, m, d)
    except WireFormatError:
        pass
    else:
        assert isinstance(msg, (HitMessage, MissMessage))
        if isinstance(msg, HitMessage):
            assert 0 <= msg.index < m and len(blob) == symbol_bytes(m)
        else:
            assert len(msg.codes) == d and len(blob) == symbol_bytes(m) + d
    try:
        msg, end = read_message(blob, offset, m, d)
    except WireFormatError:
        pass
    else:
        assert offset < end <= len(blob)
        assert isinstance(msg, (HitMessage, MissMessage))


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 200), m_max=st.integers(1, 300), d=st.integers(1, 16),
       p_hit=st.floats(0.0, 1.0))
def test_read_message_parses_a_concatenation_back(seed, n, m_max, d, p_hit):
    rng = random.Random(seed)
    m, sent, chunks = 0, [], []
    sizes = []
    for _ in range(n):
        sizes.append(m)
        if m > 0 and rng.random() < p_hit:
            msg = HitMessage(rng.randrange(m))
            chunks.append(encode_hit(msg.index, m))
        else:
            msg = MissMessage(bytes(rng.randrange(256) for _ in range(d)))
            chunks.append(encode_miss(msg.codes, m))
            m = min(m + 1, m_max)          # append until full, then replace (lru) or drop (none)
        sent.append(msg)
    buf = b"".join(chunks)
    offset, m, got = 0, 0, []
    for size in sizes:
        assert size == m
        msg, offset = read_message(buf, offset, m, d)
        got.append(msg)
        if isinstance(msg, MissMessage):
            m = min(m + 1, m_max)
    assert got == sent
    assert offset == len(buf)
    assert 8 * len(buf) == sum(8 * (symbol_bytes(s) + (d if isinstance(x, MissMessage) else 0))
                               for s, x in zip(sizes, sent))


# =========================================================================== bit-packed stream framing


@SETTINGS
@given(st.lists(st.integers(0, 70).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, 2**n - 1))),
                max_size=40))
def test_bit_writer_and_reader_round_trip(fields):
    w = BitWriter()
    for n, v in fields:
        w.write(v, n)
    data = w.getvalue()
    total = sum(n for n, _ in fields)
    assert w.bits == total and len(data) == -(-total // 8)
    # big-endian, back to back, zero-padded: the same as one big integer shifted left
    ref = 0
    for n, v in fields:
        ref = (ref << n) | v
    assert int.from_bytes(data, "big") == ref << (8 * len(data) - total)
    r = BitReader(data)
    for n, v in fields:
        assert r.read(n) == v
    assert r.remaining == 8 * len(data) - total < 8
    assert r.read(r.remaining) == 0
    with pytest.raises(WireFormatError, match="truncated"):
        r.read(1)


def test_message_bits():
    assert message_bits(HitMessage(0), 1) == 1
    assert message_bits(HitMessage(3), 4) == 3
    assert message_bits(MissMessage(bytes(64)), 0) == 512
    assert message_bits(MissMessage(bytes(64)), 255) == 8 + 512
    assert message_bits(MissMessage(bytes(10)), 256) == 9 + 80
    with pytest.raises(ValueError):
        write_message(BitWriter(), HitMessage(4), 4)
    with pytest.raises(ValueError):
        write_message(BitWriter(), HitMessage(0), 0)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 200), m_max=st.integers(1, 600), d=st.integers(1, 16),
       p_hit=st.floats(0.0, 1.0))
def test_stream_messages_round_trip(seed, n, m_max, d, p_hit):
    rng = random.Random(seed)
    m, sent, sizes, w = 0, [], [], BitWriter()
    for _ in range(n):
        sizes.append(m)
        if m > 0 and rng.random() < p_hit:
            msg = HitMessage(rng.randrange(m))
        else:
            msg = MissMessage(bytes(rng.randrange(256) for _ in range(d)))
        before = w.bits
        write_message(w, msg, m)
        assert w.bits - before == message_bits(msg, m) == ref_symbol_bits(m) + (
            0 if isinstance(msg, HitMessage) else 8 * d)
        if isinstance(msg, MissMessage):
            m = min(m + 1, m_max)
        sent.append(msg)
    data = w.getvalue()
    assert len(data) == -(-w.bits // 8)
    r = BitReader(data)
    got = [read_stream_message(r, size, d) for size in sizes]
    assert got == sent
    assert 0 <= r.remaining < 8


def ref_symbol_bits(m: int) -> int:
    b = 0
    while 2**b < m + 1:
        b += 1
    return b


@SETTINGS
@given(m=st.integers(1, 100000), d=st.integers(1, 32), lead=st.integers(0, 7))
def test_stream_symbol_above_memory_size_is_rejected(m, d, lead):
    n = symbol_bits(m)
    assume(m < 2**n - 1)
    w = BitWriter()
    w.write(0, lead)                    # any bit alignment
    w.write(2**n - 1, n)
    w.write(0, 8 * d)
    r = BitReader(w.getvalue(), lead)
    with pytest.raises(WireFormatError, match="out of range"):
        read_stream_message(r, m, d)


@settings(max_examples=100, deadline=None)
@given(blob=st.binary(max_size=80), m=st.integers(0, 100000), d=st.integers(1, 64), pos=st.integers(0, 700))
def test_fuzz_stream_decoding_never_raises_anything_but_wire_format_error(blob, m, d, pos):
    r = BitReader(blob, pos)
    try:
        msg = read_stream_message(r, m, d)
    except WireFormatError:
        pass
    else:
        assert isinstance(msg, (HitMessage, MissMessage))
        assert r.pos - pos == message_bits(msg, m) and r.pos <= 8 * len(blob)
        if isinstance(msg, MissMessage):
            assert len(msg.codes) == d
        else:
            assert 0 <= msg.index < m
