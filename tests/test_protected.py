"""Protected packets and fault injection (semcom.link.protected, semcom.link.faults)."""

from __future__ import annotations

import binascii
import copy
import functools
import math
import zlib
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy.stats import binomtest, chisquare

from semcom.config import FaultConfig, LinkConfig, ProtectionConfig, validated
from semcom.errors import ConfigError, WireFormatError
from semcom.link import protected as pk
from semcom.link.faults import Corruption, PacketChannel
from semcom.link.session import ProtectedLink, audit_salt, digest32
from semcom.link.wire import BitWriter, HitMessage, MissMessage, RefineMessage
from semcom.memory import PrototypeMemory

SETTINGS = settings(max_examples=60, deadline=None)
SEQ = 300  # frame 300: seq byte 44


def ref_bits(n_symbols: int) -> int:
    """ceil(log2(n)) without bit tricks: the smallest b with 2**b >= n (0 for a single symbol)."""
    b = 0
    while 2**b < n_symbols:
        b += 1
    return b


def ref_crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE bit by bit: poly 0x1021, init 0xFFFF, MSB first, no final xor."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def ref_crc32(data: bytes) -> int:
    """CRC-32 (ISO-HDLC, zlib's) bit by bit: reflected poly 0xEDB88320, init and final xor 0xFFFFFFFF."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xEDB88320 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


# =========================================================================== strategies


@dataclass(frozen=True)
class DataCase:
    msg: object
    m: int
    seq: int
    p: pk.Protection
    digest: int | None
    cue: int | None

    def encode(self) -> bytes:
        return pk.encode_data(self.msg, self.m, self.seq, self.p, self.digest, self.cue)

    def decode(self, packet: bytes, seq: int | None = None) -> pk.DataPacket:
        return pk.decode_data(packet, self.m, self.seq if seq is None else seq, self.p, self.digest is not None)

    @property
    def has_cue(self) -> bool:
        return self.p.cue_bits > 0 and not isinstance(self.msg, MissMessage)


@st.composite
def data_cases(draw, kinds=("hit", "refine", "miss"), max_d=32):
    kind = draw(st.sampled_from(kinds))
    m = draw(st.integers(0 if kind == "miss" else 1, 300))
    d = draw(st.integers(1, max_d))
    residual_bits = draw(st.integers(1, 8)) if kind == "refine" else draw(st.sampled_from([0, 0, 1, 5, 8]))
    cue_bits = draw(st.one_of(st.just(0), st.integers(1, 64)))
    p = pk.Protection(d, residual_bits, cue_bits, draw(st.sampled_from([16, 32])))
    if kind == "miss":
        msg = MissMessage(draw(st.binary(min_size=d, max_size=d)))
    elif kind == "hit":
        msg = HitMessage(draw(st.integers(0, m - 1)))
    else:
        codes = draw(st.lists(st.integers(0, 2**residual_bits - 1), min_size=d, max_size=d))
        msg = RefineMessage(draw(st.integers(0, m - 1)), bytes(codes))
    digest = draw(st.none() | st.integers(0, 2**32 - 1))
    if cue_bits and kind != "miss":
        cue = draw(st.integers(0, 2**cue_bits - 1))
    else:  # a cue given with a miss, or while cues are off, is not sent
        cue = draw(st.none() | st.integers(0, 2**max(cue_bits, 1) - 1))
    return DataCase(msg, m, draw(st.integers(-(2**40), 2**40)), p, digest, cue)


def _payload_bits(case: DataCase) -> int:
    if isinstance(case.msg, MissMessage):
        return 8 * case.p.d
    if isinstance(case.msg, RefineMessage):
        return case.p.residual_bits * case.p.d
    return 0


def _field_bits(case: DataCase) -> int:
    """Bits of seq | digest | symbol | payload | cue, from the format's description."""
    n_symbols = (2 if case.p.residual_bits else 1) * case.m + 1
    return (8 + (32 if case.digest is not None else 0) + ref_bits(n_symbols) + _payload_bits(case)
            + (case.p.cue_bits if case.has_cue else 0))


# =========================================================================== round trips and lengths


@settings(max_examples=150, deadline=None)
@given(data_cases())
def test_data_round_trip(case):
    """encode_data/decode_data give back the message, the digest and the cue (only on a hit when cues are on)."""
    packet = case.encode()
    expected = pk.DataPacket(case.msg, case.digest, case.cue if case.has_cue else None)
    assert case.decode(packet) == expected
    # the sequence number is the frame mod 256
    assert packet[0] == case.seq % 256
    assert case.decode(packet, seq=case.seq % 256 + 256 * 7) == expected


@settings(max_examples=150, deadline=None)
@given(data_cases())
def test_data_packet_layout_length_and_checksum(case):
    """Length = ceil(fields / 8) + checksum bytes; CRC-16 on a hit (when so configured), CRC-32 otherwise;
    the digest follows seq; the padding is zero; the checksum is that of the body."""
    packet = case.encode()
    crc_bits = case.p.checksum_bits if isinstance(case.msg, HitMessage) else 32
    fields = _field_bits(case)
    assert len(packet) == math.ceil(fields / 8) + crc_bits // 8
    body, crc = packet[: -crc_bits // 8], packet[-crc_bits // 8 :]
    assert int.from_bytes(crc, "big") == (ref_crc16(body) if crc_bits == 16 else zlib.crc32(body))
    if case.digest is not None:
        assert int.from_bytes(body[1:5], "big") == case.digest
    pad = 8 * len(body) - fields
    assert 0 <= pad < 8 and int.from_bytes(body, "big") & ((1 << pad) - 1) == 0


@SETTINGS
@given(m=st.integers(1, 300), digest=st.booleans(), cue_bits=st.integers(0, 64), crc=st.sampled_from([16, 32]),
       residual=st.booleans(), data=st.data())
def test_hit_packet_length_closed_form(m, digest, cue_bits, crc, residual, data):
    """A hit: ceil((8 + [32] + symbol_bits + cue_bits) / 8) + checksum_bits / 8 bytes; a miss carries CRC-32."""
    from semcom.link.wire import symbol_bits

    p = pk.Protection(16, 3 if residual else 0, cue_bits, crc)
    dg = 0xDEADBEEF if digest else None
    cue = data.draw(st.integers(0, 2**cue_bits - 1)) if cue_bits else None
    hit = pk.encode_data(HitMessage(data.draw(st.integers(0, m - 1))), m, 5, p, dg, cue)
    assert len(hit) == math.ceil((8 + 32 * digest + symbol_bits(m, residual) + cue_bits) / 8) + crc // 8
    miss = pk.encode_data(MissMessage(bytes(range(16))), m, 5, p, dg)
    assert len(miss) == math.ceil((8 + 32 * digest + symbol_bits(m, residual) + 8 * 16) / 8) + 4
    assert int.from_bytes(miss[-4:], "big") == zlib.crc32(miss[:-4])


@SETTINGS
@given(m=st.integers(0, 300), d=st.integers(1, 64), seq=st.integers(-(2**40), 2**40),
       digest=st.none() | st.integers(0, 2**32 - 1), data=st.data())
def test_refresh_round_trip_and_length(m, d, seq, digest, data):
    """REFRESH: slot (None = a new one) in ceil(log2(M + 1)) bits, the d codes, CRC-32."""
    slot = data.draw(st.none() | st.integers(0, m - 1)) if m else None
    codes = data.draw(st.binary(min_size=d, max_size=d))
    packet = pk.encode_refresh(slot, codes, m, seq, digest)
    assert pk.decode_refresh(packet, m, d, seq, digest is not None) == pk.RefreshPacket(slot, codes, digest)
    fields = 8 + (32 if digest is not None else 0) + ref_bits(m + 1) + 8 * d
    assert len(packet) == math.ceil(fields / 8) + 4
    assert int.from_bytes(packet[-4:], "big") == zlib.crc32(packet[:-4])
    assert packet[0] == seq % 256


@pytest.mark.parametrize("slot,m", [(-1, 5), (5, 5), (6, 5), (7, 5), (0, 0), (-1, 0), (2**20, 300)])
def test_refresh_of_a_slot_outside_the_memory_is_refused(slot, m):
    """Only slots 0 .. M-1 (or None, a new slot) can be refreshed: slot M would read back as "new"."""
    with pytest.raises(ValueError, match="slot"):
        pk.encode_refresh(slot, bytes(4), m, 0)


# memory sizes for audits: small ones, any up to the 24-bit limit, and the chunk boundaries
audit_sizes = st.one_of(st.integers(0, 300), st.integers(0, 2**24 - 1),
                        st.sampled_from([0, 1, 31, 32, 33, 63, 64, 65, 96, 97, 2**24 - 33, 2**24 - 32, 2**24 - 1]))


@st.composite
def audit_chunks(draw):
    """(M, first, hashes) of one valid AUDIT chunk: first a multiple of 32 below M (0 if M = 0), often the last."""
    m = draw(audit_sizes)
    chunks = max(1, -(-m // 32))
    first = 32 * draw(st.one_of(st.integers(0, chunks - 1), st.just(chunks - 1)))
    n = min(32, m - first)   # the closed form, independently of pk.audit_count
    return m, first, draw(st.lists(st.integers(0, 2**16 - 1), min_size=n, max_size=n))


@settings(max_examples=150, deadline=None)
@given(chunk=audit_chunks(), digest=st.integers(0, 2**32 - 1), seq=st.integers(-(2**40), 2**40))
def test_audit_round_trip_and_layout(chunk, digest, seq):
    """AUDIT: seq | digest (32) | M (24) | first (24) | min(32, M - first) hashes of 16 bits | CRC-32."""
    m, first, hashes = chunk
    assert pk.audit_count(m, first) == len(hashes)
    packet = pk.encode_audit(digest, m, first, hashes, seq)
    assert len(packet) == 1 + 4 + 3 + 3 + 2 * len(hashes) + 4 == 15 + 2 * len(hashes)
    assert packet[0] == seq % 256
    assert int.from_bytes(packet[1:5], "big") == digest
    assert int.from_bytes(packet[5:8], "big") == m and int.from_bytes(packet[8:11], "big") == first
    assert int.from_bytes(packet[-4:], "big") == zlib.crc32(packet[:-4])
    assert pk.decode_audit(packet, seq) == pk.AuditPacket(digest, m, first, tuple(hashes))
    assert pk.decode_audit(packet, seq % 256 + 256 * 3).first == first


@pytest.mark.parametrize("m", [0, 1, 2, 31, 32, 33, 63, 64, 65, 127, 128, 255, 256, 1000, 4096])
def test_an_audit_of_every_memory_size_splits_into_chunks(m):
    """ceil(M / 32) chunks (one, empty, for M = 0) from slots 0, 32, 64, ...; together they hold every hash,
    in order, and each tells M (hypothesis seldom draws long memories)."""
    hashes = [(7919 * s) % 2**16 for s in range(m)]
    got, total = [], 0
    for first in range(0, max(m, 1), pk.AUDIT_CHUNK):
        n = pk.audit_count(m, first)
        packet = pk.encode_audit(2**32 - 1, m, first, hashes[first : first + n], 257)
        total += len(packet)
        back = pk.decode_audit(packet, 1)
        assert (back.digest, back.memory_size, back.first) == (2**32 - 1, m, first)
        got += back.hashes
    assert got == hashes
    assert total == 15 * max(1, math.ceil(m / 32)) + 2 * m


def test_an_audit_of_the_largest_memory():
    """M = 2**24 - 1 (the largest a 24-bit size field holds): the first chunk is full, the last holds 31."""
    m = 2**24 - 1
    full = pk.encode_audit(7, m, 0, list(range(32)), 0)
    assert pk.decode_audit(full, 0) == pk.AuditPacket(7, m, 0, tuple(range(32)))
    last = pk.encode_audit(7, m, m - 31, [0xFFFF] * 31, 0)
    assert len(last) == 15 + 62 and pk.decode_audit(last, 0).hashes == (0xFFFF,) * 31


def test_audit_count_and_the_constants():
    assert (pk.AUDIT_CHUNK, pk.SIZE_BITS, pk.MORE_BITS) == (32, 24, 1)
    cases = {(0, 0): 0, (1, 0): 1, (31, 0): 31, (32, 0): 32, (33, 0): 32, (33, 32): 1, (64, 32): 32, (65, 64): 1,
             (70, 64): 6, (5, 32): 0, (32, 32): 0, (2**24 - 1, 2**24 - 32): 31}
    assert {k: pk.audit_count(*k) for k in cases} == cases


@SETTINGS
@given(d=st.integers(1, 64), seq=st.integers(-(2**40), 2**40), data=st.data())
def test_repair_round_trip(d, seq, data):
    """REPAIR: one listed slot, its codes and its last-use frame (32 bits, mod 2**32)."""
    rep = data.draw(st.builds(pk.SlotRepair, st.binary(min_size=d, max_size=d), st.integers(0, 2**40)))
    packet = pk.encode_repair(rep, seq)
    assert len(packet) == math.ceil((8 + 8 * d + 32) / 8) + 4 == d + 9
    assert packet[0] == seq % 256 and packet[1 : 1 + d] == rep.codes
    assert int.from_bytes(packet[-4:], "big") == zlib.crc32(packet[:-4])
    assert pk.decode_repair(packet, d, seq) == pk.SlotRepair(rep.codes, rep.last_used % 2**32)


def test_encoders_reject_what_does_not_fit():
    """A hit without its cue, a refined hit without residual bits, an index, digest, cue or hash out of range,
    an audit with the wrong number of hashes or a memory too large for its size field."""
    p = pk.Protection(4, 0, 16, 16)
    with pytest.raises(ValueError, match="cue"):
        pk.encode_data(HitMessage(1), 5, 0, p)
    with pytest.raises(ValueError):
        pk.encode_data(RefineMessage(1, bytes(4)), 5, 0, pk.Protection(4))
    with pytest.raises(ValueError):
        pk.encode_data(HitMessage(5), 5, 0, pk.Protection(4))
    with pytest.raises(ValueError):
        pk.encode_data(HitMessage(1), 5, 0, p, cue=2**16)
    with pytest.raises(ValueError):
        pk.encode_data(HitMessage(1), 5, 0, p, digest=2**32, cue=0)
    with pytest.raises(ValueError):
        pk.encode_audit(0, 1, 0, [2**16], 0)
    with pytest.raises(ValueError):
        pk.encode_audit(2**32, 1, 0, [0], 0)
    with pytest.raises(ValueError):
        pk.encode_audit(0, 2**24, 0, [0] * 32, 0)
    for m, first, n in [(5, 0, 4), (5, 0, 6), (70, 0, 31), (70, 0, 33), (70, 64, 32), (0, 0, 1), (32, 0, 0)]:
        with pytest.raises(ValueError, match="hashes"):
            pk.encode_audit(0, m, first, [0] * n, 0)


def test_feedback_sizes():
    """ACK and "more"/"again" 1 bit; a request is flag + 2-bit kind + 8-bit seq; a repair list one bit per slot."""
    assert pk.ACK_BITS == 1 and pk.MORE_BITS == 1
    assert pk.REQUEST_BITS == 1 + 2 + 8 == 11
    assert {int(r) for r in pk.Request} == {0, 1, 2} and max(pk.Request) < 4
    assert [pk.bitmap_bits(m) for m in (0, 1, 7, 256)] == [0, 1, 7, 256]



# =========================================================================== checksums


def test_checksums_of_the_check_string():
    """The catalogue check values: CRC-16/CCITT-FALSE("123456789") = 0x29B1, CRC-32 = 0xCBF43926."""
    assert pk.checksum(b"123456789", 16) == (0x29B1).to_bytes(2, "big")
    assert pk.checksum(b"123456789", 32) == (0xCBF43926).to_bytes(4, "big")
    assert ref_crc16(b"123456789") == 0x29B1 and ref_crc32(b"123456789") == 0xCBF43926
    assert pk.checksum(b"", 16) == b"\xff\xff" and pk.checksum(b"", 32) == bytes(4)
    for bits in (0, 8, 24, 64):
        with pytest.raises(ValueError):
            pk.checksum(b"x", bits)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_checksums_match_bitwise_references(data):
    assert pk.checksum(data, 16) == ref_crc16(data).to_bytes(2, "big")
    assert pk.checksum(data, 32) == ref_crc32(data).to_bytes(4, "big")
    assert binascii.crc_hqx(data, 0xFFFF) == ref_crc16(data)


# =========================================================================== detection


def _fixed_packets() -> list[tuple[str, bytes, object]]:
    """(name, packet, decode(packet, seq)) for a few valid packets of every kind."""
    rng = np.random.default_rng(3)
    codes = bytes(rng.integers(0, 256, 8, dtype=np.uint8))
    out = []

    def data(name, msg, m, p, digest=None, cue=None):
        case = DataCase(msg, m, SEQ, p, digest, cue)
        out.append((name, case.encode(), lambda b, seq=SEQ: case.decode(b, seq)))

    data("hit16", HitMessage(3), 5, pk.Protection(8))
    data("hit16-m1", HitMessage(0), 1, pk.Protection(8))
    data("hit16-digest-cue", HitMessage(200), 300, pk.Protection(8, 0, 32, 16), 0x12345678, 0xCAFEF00D)
    data("hit16-cue24", HitMessage(2), 5, pk.Protection(1, 0, 24, 16), cue=0xABCDEF)
    data("hit32-cue", HitMessage(4), 5, pk.Protection(8, 0, 7, 32), cue=0x55)
    data("hit-residual-mode", HitMessage(6), 7, pk.Protection(8, 3, 0, 16))
    data("refined", RefineMessage(2, bytes([1, 7, 0, 5, 3, 2, 6, 4])), 7, pk.Protection(8, 3, 16, 16), cue=0xBEEF)
    data("refined-digest", RefineMessage(0, bytes(8)), 1, pk.Protection(8, 8, 0, 32), 0xFFFFFFFF)
    data("miss", MissMessage(codes), 5, pk.Protection(8))
    data("miss-empty-memory", MissMessage(codes), 0, pk.Protection(8, 0, 32, 16))
    data("miss-digest-residual", MissMessage(bytes(8)), 12, pk.Protection(8, 2, 0, 16), 0)
    for name, slot, m, digest in (("refresh-new", None, 5, None), ("refresh-slot", 3, 5, 0xA5A5A5A5),
                                  ("refresh-empty-memory", None, 0, None)):
        pkt = pk.encode_refresh(slot, codes, m, SEQ, digest)
        out.append((name, pkt, lambda b, seq=SEQ, m=m, dg=digest: pk.decode_refresh(b, m, 8, seq, dg is not None)))
    hashes = [int(h) for h in rng.integers(0, 2**16, 32)]
    for name, m, first in (("audit", 5, 0), ("audit-empty", 0, 0), ("audit-full-chunk", 70, 32),
                           ("audit-last-chunk", 70, 64), ("audit-one-hash", 65, 64),
                           ("audit-huge", 2**24 - 1, 2**24 - 32)):
        pkt = pk.encode_audit(0x0BADF00D, m, first, hashes[: pk.audit_count(m, first)], SEQ)
        out.append((name, pkt, lambda b, seq=SEQ: pk.decode_audit(b, seq)))
    for name, rep in (("repair", pk.SlotRepair(codes, 17)),
                      ("repair-last-used-max", pk.SlotRepair(bytes(8), 2**32 - 1))):
        pkt = pk.encode_repair(rep, SEQ)
        out.append((name, pkt, lambda b, seq=SEQ: pk.decode_repair(b, 8, seq)))
    return out


FIXED = _fixed_packets()


@pytest.mark.parametrize("name,packet,decode", FIXED, ids=[f[0] for f in FIXED])
def test_every_single_bit_flip_truncation_and_extension_is_rejected(name, packet, decode):
    """Exhaustive: each of the 8*len bit flips, each truncation (1..len bytes dropped), and trailing bytes
    (including the zero bytes that a CRC without final xor accepts, and a valid checksum appended to the
    whole packet) raise WireFormatError. Every kind's length is fixed by its fields (an AUDIT's by its M and
    first slot), so no longer packet is a valid one."""
    decode(packet)  # the packet itself is valid
    for i in range(8 * len(packet)):
        bad = bytearray(packet)
        bad[i // 8] ^= 0x80 >> (i % 8)
        with pytest.raises(WireFormatError):
            decode(bytes(bad))
    for cut in range(1, len(packet) + 1):
        with pytest.raises(WireFormatError):
            decode(packet[:-cut])
    for extra in [b"\0", b"\0\0", b"\0\0\0\0", b"\xff", bytes(7), pk.checksum(packet, 16), pk.checksum(packet, 32)]:
        with pytest.raises(WireFormatError):
            decode(packet + extra)



@pytest.mark.parametrize("name,packet,decode", FIXED, ids=[f[0] for f in FIXED])
def test_wrong_sequence_number_is_rejected(name, packet, decode):
    """A packet for another frame (mod 256) is rejected; the same frame mod 256 is accepted."""
    for seq in range(SEQ - 255, SEQ + 256):
        if (seq - SEQ) % 256:
            with pytest.raises(WireFormatError, match="frame"):
                decode(packet, seq)
        else:
            decode(packet, seq)


def _sealed(fields: list[tuple[int, int]], crc_bits: int = 32) -> bytes:
    """A packet built by hand: (value, bits) fields, zero pad, a valid checksum."""
    w = BitWriter()
    for value, bits in fields:
        w.write(value, bits)
    return w.getvalue() + pk.checksum(w.getvalue(), crc_bits)


def test_well_sealed_packets_with_bad_fields_are_rejected():
    """The checks past the checksum: a symbol or slot out of range, a refined hit outside residual mode,
    an audit chunk that does not start on a chunk boundary inside the memory, non-zero padding, missing or
    extra fields (each packet here has a valid checksum and seq)."""
    p = pk.Protection(2)
    assert pk.decode_data(_sealed([(44, 8), (4, 3)], 16), 5, SEQ, p, False) == pk.DataPacket(HitMessage(4), None, None)
    assert pk.decode_refresh(_sealed([(44, 8), (5, 3), (1, 8), (2, 8)]), 5, 2, SEQ, False).slot is None
    head = [(44, 8), (7, 32)]   # seq, digest

    def audit(m, first, n):
        return pk.decode_audit(_sealed(head + [(m, 24), (first, 24)] + [(9, 16)] * n), SEQ)

    assert audit(5, 0, 5) == pk.AuditPacket(7, 5, 0, (9,) * 5)
    assert audit(0, 0, 0) == pk.AuditPacket(7, 0, 0, ())
    assert audit(33, 32, 1) == pk.AuditPacket(7, 33, 32, (9,))
    bad = {
        "symbol 6 of M=5": lambda: pk.decode_data(_sealed([(44, 8), (6, 3), (0, 16)]), 5, SEQ, p, False),
        "symbol 7 of M=5": lambda: pk.decode_data(_sealed([(44, 8), (7, 3), (0, 16)]), 5, SEQ, p, False),
        "refined, no residual": lambda: pk.decode_data(_sealed([(44, 8), (6, 4), (0, 16)]), 5, SEQ, p, False),
        "hit pad not zero": lambda: pk.decode_data(_sealed([(44, 8), (1, 3), (1, 5)], 16), 5, SEQ, p, False),
        "hit, extra byte": lambda: pk.decode_data(_sealed([(44, 8), (1, 3), (0, 13)], 16), 5, SEQ, p, False),
        "hit, no digest": lambda: pk.decode_data(_sealed([(44, 8), (1, 3)], 16), 5, SEQ, p, True),
        "miss, short codes": lambda: pk.decode_data(_sealed([(44, 8), (5, 3), (0, 8)]), 5, SEQ, p, False),
        "refresh slot 6 of M=5": lambda: pk.decode_refresh(_sealed([(44, 8), (6, 3), (0, 16)]), 5, 2, SEQ, False),
        "refresh slot 7 of M=4": lambda: pk.decode_refresh(_sealed([(44, 8), (7, 3), (0, 16)]), 4, 2, SEQ, False),
        "refresh pad": lambda: pk.decode_refresh(_sealed([(44, 8), (0, 3), (0, 16), (1, 5)]), 5, 2, SEQ, False),
        "audit, no size": lambda: pk.decode_audit(_sealed(head), SEQ),
        "audit, no first": lambda: pk.decode_audit(_sealed(head + [(0, 24)]), SEQ),
        "audit, odd byte": lambda: pk.decode_audit(_sealed(head + [(0, 24), (0, 24), (0, 8)]), SEQ),
        "audit, a hash short": lambda: audit(5, 0, 4),
        "audit, a hash extra": lambda: audit(5, 0, 6),
        "audit, 33 hashes": lambda: audit(70, 0, 33),
        "audit, first 1": lambda: audit(70, 1, 32),
        "audit, first 31": lambda: audit(70, 31, 32),
        "audit, first 33": lambda: audit(70, 33, 32),
        "audit, first = M": lambda: audit(64, 64, 0),
        "audit, first > M": lambda: audit(40, 64, 0),
        "audit, first 32 of M=0": lambda: audit(0, 32, 0),
        "audit, first 96 of M=70": lambda: audit(70, 96, 0),
        "audit, first = M, large": lambda: audit(2**24 - 32, 2**24 - 32, 0),
        "repair, short": lambda: pk.decode_repair(_sealed([(44, 8), (0, 16), (0, 24)]), 2, SEQ),
        "repair, extra": lambda: pk.decode_repair(_sealed([(44, 8), (0, 16), (0, 40)]), 2, SEQ),
        "repair, two slots": lambda: pk.decode_repair(_sealed([(44, 8), (0, 48), (0, 48)]), 2, SEQ),
    }
    for name, decode in bad.items():
        with pytest.raises(WireFormatError):
            decode()
            pytest.fail(name)




@settings(max_examples=100, deadline=None)
@given(case=data_cases(), data=st.data())
def test_random_one_and_two_bit_errors_are_rejected(case, data):
    """Any one or two bit errors in a DATA packet are detected (CRC-16/CCITT and CRC-32 catch all of them,
    and a flip that changes which checksum is read leaves a packet of the wrong length)."""
    packet = case.encode()
    n = 8 * len(packet)
    positions = data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=2))
    bad = bytearray(packet)
    for i in positions:
        bad[i // 8] ^= 0x80 >> (i % 8)
    with pytest.raises(WireFormatError):
        case.decode(bytes(bad))


# =========================================================================== fuzzing the decoders


def _decoded(fn, *args):
    """Call a decoder. Every loop in the decoders is bounded by fields it has already checked (d, at most
    AUDIT_CHUNK hashes), so a hang would be a bug that stalls this test; tests never assert on wall time."""
    return fn(*args)


params = st.fixed_dictionaries(dict(
    m=st.integers(0, 300), d=st.integers(1, 64), residual_bits=st.integers(0, 8), cue_bits=st.integers(0, 64),
    crc=st.sampled_from([16, 32]), digest_due=st.booleans(), seq=st.integers(0, 600)))


def _decode_all(blob: bytes, q: dict) -> None:
    """Feed ``blob`` to every decoder; anything accepted must re-encode to exactly ``blob`` (one encoding each)."""
    p = pk.Protection(q["d"], q["residual_bits"], q["cue_bits"], q["crc"])
    try:
        got = _decoded(pk.decode_data, blob, q["m"], q["seq"], p, q["digest_due"])
    except WireFormatError:
        pass
    else:
        assert pk.encode_data(got.message, q["m"], q["seq"], p, got.digest, got.cue) == blob
    try:
        ref = _decoded(pk.decode_refresh, blob, q["m"], q["d"], q["seq"], q["digest_due"])
    except WireFormatError:
        pass
    else:
        assert ref.slot is None or 0 <= ref.slot < q["m"]
        assert pk.encode_refresh(ref.slot, ref.codes, q["m"], q["seq"], ref.digest) == blob
    try:
        audit = _decoded(pk.decode_audit, blob, q["seq"])
    except WireFormatError:
        pass
    else:
        m, first = audit.memory_size, audit.first
        assert first % 32 == 0 and (first < m or first == m == 0) and len(audit.hashes) == min(32, m - first)
        assert pk.encode_audit(audit.digest, m, first, list(audit.hashes), q["seq"]) == blob
    try:
        rep = _decoded(pk.decode_repair, blob, q["d"], q["seq"])
    except WireFormatError:
        pass
    else:
        assert len(rep.codes) == q["d"] and 0 <= rep.last_used < 2**32
        assert pk.encode_repair(rep, q["seq"]) == blob




@settings(max_examples=300, deadline=None)
@given(blob=st.binary(max_size=120), q=params)
def test_fuzz_random_bytes(blob, q):
    """Random bytes never raise anything but WireFormatError."""
    _decode_all(blob, q)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=120), q=params, crc=st.sampled_from([16, 32]))
def test_fuzz_random_bodies_with_a_valid_checksum(body, q, crc):
    """Past the checksum and seq check: random fields are parsed or rejected, never anything else."""
    blob = bytes([q["seq"] % 256]) + body
    _decode_all(blob + pk.checksum(blob, crc), q)


mutations = st.lists(st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "append"]),
                               st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6)


def _mutate(packet: bytes, ops) -> bytes:
    b = bytearray(packet)
    for op, pos, value in ops:
        i = pos % (len(b) + 1)
        if op == "flip" and b:
            b[i % len(b)] ^= 1 << (value % 8)
        elif op == "set" and b:
            b[i % len(b)] = value
        elif op == "insert":
            b.insert(i, value)
        elif op == "delete" and b:
            del b[i % len(b)]
        elif op == "truncate":
            del b[i:]
        elif op == "append":
            b += bytes([value]) * (1 + pos % 5)
    return bytes(b)


@settings(max_examples=200, deadline=None)
@given(case=data_cases(max_d=64), ops=mutations, q=params)
def test_fuzz_mutated_valid_packets(case, ops, q):
    """Mutations of real DATA packets, to the decoders under their own and under random parameters."""
    blob = _mutate(case.encode(), ops)
    try:
        got = _decoded(case.decode, blob)
    except WireFormatError:
        pass
    else:
        assert pk.encode_data(got.message, case.m, case.seq, case.p, got.digest, got.cue) == blob
    _decode_all(blob, q)


@settings(max_examples=200, deadline=None)
@given(chunk=audit_chunks(), d=st.integers(1, 64), seq=st.integers(0, 600), data=st.data(), ops=mutations,
       q=params)
def test_fuzz_mutated_audit_and_repair_packets(chunk, d, seq, data, ops, q):
    """Mutations of real AUDIT chunks and REPAIR packets, to their decoders and to every decoder at random
    parameters (with the packet's own seq half of the time, so that mutations reach past the seq check)."""
    m, first, hashes = chunk
    rep = pk.SlotRepair(data.draw(st.binary(min_size=d, max_size=d)), data.draw(st.integers(0, 2**32 - 1)))
    q = {**q, "seq": data.draw(st.sampled_from([seq, q["seq"]]))}
    for blob in (_mutate(pk.encode_audit(0xFEEDBEEF, m, first, hashes, seq), ops),
                 _mutate(pk.encode_repair(rep, seq), ops)):
        _decode_all(blob, q)
        _decode_all(blob, {**q, "d": d, "seq": seq})


# =========================================================================== fuzzing the receiver


@functools.lru_cache(maxsize=1)
def _primed_link() -> ProtectedLink:
    """A link with cues on that has streamed 12 new latents (misses) and 4 repeats (hits)."""
    link = ProtectedLink(LinkConfig(), ProtectionConfig(cue_bits=32, resync="flat"), FaultConfig())
    zs = F.normalize(torch.randn(12, LinkConfig().d, generator=torch.Generator().manual_seed(0)), dim=1)
    kinds = [link.step(z)[1].kind for z in list(zs) + list(zs[:4])]
    assert kinds == ["miss"] * 12 + ["hit"] * 4
    assert link.rx.rx.memory.size == 12 and link.tx.tx.memory == link.rx.rx.memory
    return link


def _fresh_link() -> ProtectedLink:
    return copy.deepcopy(_primed_link())


def _hit(link: ProtectedLink, digest: int) -> bytes:
    """A valid DATA packet for the receiver's frame: a hit on slot 0, with its true cue and ``digest``."""
    rx, mem = link.rx, link.rx.rx.memory
    cue = int(rx.simhash(rx.rx.rule.readout(0, mem)))
    return pk.encode_data(HitMessage(0), mem.size, rx.t, rx.frame, digest, cue)


def _valid_packet(link: ProtectedLink, kind: str, rng: np.random.Generator) -> bytes:
    """A valid packet of what the receiver expects now, built from its own state (for an audit: the next
    chunk of the audit under way, or the first chunk of a memory of any size)."""
    rx, mem, t, d = link.rx, link.rx.rx.memory, link.rx.t, link.link.d
    dg = digest32(mem) if rx.digest_due else None
    codes = bytes(rng.integers(0, 256, d, dtype=np.uint8))
    if kind == "data":
        if rng.random() < 0.5:
            return pk.encode_data(MissMessage(codes), mem.size, t, rx.frame, dg)
        return pk.encode_data(HitMessage(int(rng.integers(mem.size))), mem.size, t, rx.frame, dg,
                              int(rng.integers(2**32)))
    if kind == "refresh":
        return pk.encode_refresh(None, codes, mem.size, t, dg)
    if kind == "audit":
        m, first = (rx.tx_size, len(rx.hashes)) if rx.hashes else (int(rng.integers(0, 100)), 0)
        hashes = [int(h) for h in rng.integers(0, 2**16, pk.audit_count(m, first))]
        return pk.encode_audit(int(rng.integers(2**32)), m, first, hashes, t)
    return pk.encode_repair(pk.SlotRepair(codes, int(rng.integers(2**32))), t)


def _rejects(rx, packet: bytes | None) -> bool:
    """Whether the receiver (in its current state) must reject ``packet``: its parser does, or it is an audit
    chunk out of turn (not the next slot, or another memory size than the chunks before it)."""
    if packet is None:
        return True
    mem = rx.rx.memory
    try:
        if rx.expect == "audit":
            audit = pk.decode_audit(packet, rx.t)
            return audit.first != len(rx.hashes) or bool(rx.hashes) and audit.memory_size != rx.tx_size
        if rx.expect == "repair":
            pk.decode_repair(packet, rx.rx.config.d, rx.t)
        elif rx.expect == "data":
            pk.decode_data(packet, mem.size, rx.t, rx.frame, rx.digest_due)
        else:
            pk.decode_refresh(packet, mem.size, rx.rx.config.d, rx.t, rx.digest_due)
    except WireFormatError:
        return True
    return False


RX_STATES = ["data", "refresh", "audit", "audit-mid", "repair"]


def _drive_to(link: ProtectedLink, state: str, check: bool) -> None:
    """Begin the next frame and bring the receiver to expect ``state``: data, refresh, audit (its first chunk),
    audit-mid (the second chunk of a 70-slot audit) or repair (of slot 1)."""
    rx, mem = link.rx, link.rx.rx.memory
    rx.begin(link.t, check or state not in ("data", "refresh"))
    if state == "refresh":
        assert rx.on_packet(None).request is pk.Request.DAMAGED
    elif state != "data":
        # a valid DATA packet whose digest disagrees: the receiver knows its memory is bad and asks to resync
        fb = rx.on_packet(_hit(link, digest32(mem) ^ 1))
        assert fb.request is pk.Request.RESYNC and fb.bits == pk.REQUEST_BITS and not fb.damaged and not fb.ack
        assert rx.audits == 1 and rx.hashes == []
        if state == "audit-mid":   # the first chunk of an audit of 70 slots: 32 hashes collected, "next"
            fb = rx.on_packet(pk.encode_audit(1234, 70, 0, list(range(32)), rx.t))
            assert fb.more and not fb.damaged and fb.bits == pk.MORE_BITS and fb.slots is None
            assert rx.hashes == list(range(32)) and rx.tx_size == 70
        elif state == "repair":
            tx = link.tx.tx.memory
            salt = audit_salt(rx.t, rx.audits)
            hashes = [tx.slot_hash(s, salt) for s in range(tx.size)]
            hashes[1] ^= 1   # one slot listed as bad
            fb = rx.on_packet(pk.encode_audit(digest32(tx) ^ 1, tx.size, 0, hashes, rx.t))
            assert fb.slots == [1] == rx.bad and fb.bits == pk.bitmap_bits(tx.size) and not fb.more
    assert rx.expect == state.removesuffix("-mid")


@settings(max_examples=100, deadline=None)
@given(state=st.sampled_from(RX_STATES), check=st.booleans(), seed=st.integers(0, 2**32 - 1),
       packets=st.lists(st.one_of(st.none(), st.binary(max_size=100), mutations), min_size=1, max_size=4))
def test_receiver_rejects_damaged_packets_and_changes_nothing(state, check, seed, packets):
    """Garbage (random bytes, a lost packet, or a mutated valid packet of the kind expected) is answered with
    damaged=True and no ACK: "again" (1 bit) during an audit or a repair, else a request for what was expected;
    it leaves the receiver memory, its frame and its resync state as they were."""
    link = _fresh_link()
    _drive_to(link, state, check)
    rx, rng = link.rx, np.random.default_rng(seed)
    for item in packets:
        packet = _mutate(_valid_packet(link, rx.expect, rng), item) if isinstance(item, list) else item
        if not _rejects(rx, packet):
            return    # a mutation that left a valid packet (a valid repair changes the memory by design)
        before, expect, last, t = rx.rx.memory.digest(), rx.expect, rx.last_request, rx.rx.t
        resync = (list(rx.hashes), list(rx.bad), rx.audits, rx.known_bad)
        fb = rx.on_packet(packet)
        assert fb.damaged and not fb.ack and fb.latent is None and fb.slots is None
        assert rx.rx.memory.digest() == before and rx.rx.t == t
        assert (rx.hashes, rx.bad, rx.audits, rx.known_bad) == resync
        if expect in ("audit", "repair"):
            assert fb.more and fb.request is None and fb.bits == pk.MORE_BITS
            assert rx.expect == expect
        else:
            wanted = pk.Request.DAMAGED if expect == "data" else last
            assert fb.request is wanted and fb.bits == pk.REQUEST_BITS and not fb.more
            assert rx.expect == ("audit" if wanted is pk.Request.RESYNC else "refresh")


def test_audit_chunks_out_of_turn_are_damage():
    """During a 70-slot audit: the first chunk again, a chunk that skips one, or the next chunk of another
    memory size are answered "again" and not collected; the right chunk is."""
    link = _fresh_link()
    _drive_to(link, "audit-mid", False)
    rx, t = link.rx, link.rx.t
    for m, first, dg in [(70, 0, 1234), (70, 64, 1234), (96, 32, 1234), (64, 32, 1234), (33, 32, 1234)]:
        fb = rx.on_packet(pk.encode_audit(dg, m, first, [0] * pk.audit_count(m, first), t))
        assert fb.damaged and fb.more and fb.bits == pk.MORE_BITS and len(rx.hashes) == 32
    fb = rx.on_packet(pk.encode_audit(1234, 70, 32, [0] * 32, t))
    assert fb.more and not fb.damaged and len(rx.hashes) == 64 and rx.expect == "audit"


@pytest.mark.parametrize("digest_ok", [True, False])
def test_an_audit_without_bad_slots_checks_the_digest(digest_ok):
    """Every hash matches: no bitmap; the receiver checks the digest at once and decodes (ACK) if it matches,
    or audits again with the next salt if not (a hash collision hid a slot)."""
    link = _fresh_link()
    rx, tx = link.rx, link.tx.tx.memory
    rx.begin(link.t, True)
    assert rx.on_packet(_hit(link, digest32(tx) ^ 1)).request is pk.Request.RESYNC
    hashes = [tx.slot_hash(s, audit_salt(rx.t, 1)) for s in range(tx.size)]
    fb = rx.on_packet(pk.encode_audit(digest32(tx) ^ (0 if digest_ok else 1), tx.size, 0, hashes, rx.t))
    assert fb.slots is None and not fb.damaged and rx.bad == [] and rx.stats.repaired_slots == 0
    if digest_ok:
        assert fb.ack and fb.latent is not None and not rx.known_bad and rx.stats.kind == "hit"
    else:
        assert fb.request is pk.Request.RESYNC and fb.bits == pk.REQUEST_BITS and not fb.ack
        assert rx.expect == "audit" and rx.audits == 2 and rx.hashes == [] and rx.known_bad
        assert rx.rx.memory == tx


def test_receiver_rejects_every_single_bit_flip_of_a_data_packet():
    """Each bit flip of a real hit packet (with digest and cue) is rejected by on_packet; the clean one is ACKed."""
    link = _fresh_link()
    rx, mem = link.rx, link.rx.rx.memory
    before = mem.digest()
    rx.begin(link.t, True)
    packet = link.tx.begin(F.normalize(mem.prototypes[5].clone(), dim=0), True)
    assert pk.decode_data(packet, mem.size, rx.t, rx.frame, True).message == HitMessage(5)
    for i in range(8 * len(packet)):
        rx.begin(link.t, True)
        bad = bytearray(packet)
        bad[i // 8] ^= 0x80 >> (i % 8)
        fb = rx.on_packet(bytes(bad))
        assert fb.damaged and not fb.ack and fb.request is pk.Request.DAMAGED
        assert mem.digest() == before
    rx.begin(link.t, True)
    fb = rx.on_packet(packet)
    assert fb.ack and not fb.damaged and not rx.known_bad


# =========================================================================== chunked resync, end to end


BIG = 72   # slots: audits of 3 chunks (32, 32, 8); the next frame, 72, is a memory check (sync_every=8)


def _latents(n: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, LinkConfig().d, generator=torch.Generator().manual_seed(seed)), dim=1)


@functools.lru_cache(maxsize=1)
def _big_link() -> ProtectedLink:
    """A clean link (memory checks every 8 frames, 2 attempts per frame) that has streamed BIG new latents."""
    link = ProtectedLink(LinkConfig(), ProtectionConfig(sync_every=8, max_attempts=2, resync="flat"), FaultConfig())
    assert [link.step(z)[1].kind for z in _latents(BIG, 1)] == ["miss"] * BIG
    assert link.t == BIG and link.rx.rx.memory.size == BIG and link.tx.tx.memory == link.rx.rx.memory
    return link


def _corrupt(mem: PrototypeMemory, slots: list[int]) -> None:
    """Move the prototypes of ``slots`` (codes and recency kept), as a vector-noise fault would."""
    protos = mem.prototypes.clone()
    noise = torch.randn(len(slots), mem.d, generator=torch.Generator().manual_seed(7))
    protos[slots] = F.normalize(protos[slots] + 0.05 * noise, dim=1)
    mem.corrupt(protos)


def _same_slot(a: PrototypeMemory, b: PrototypeMemory, s: int) -> bool:
    return (torch.equal(a.prototypes[s], b.prototypes[s]) and a.last_used[s] == b.last_used[s]
            and np.array_equal(a.codes[s], b.codes[s]))


def test_a_multi_chunk_audit_is_collected_then_answered_with_the_bitmap():
    """A memory of 72 slots, 3 of them bad: the audit comes in 3 chunks (slots 0, 32, 64), answered "next"
    (1 bit) twice, then the 72-bit bitmap; one REPAIR per listed slot, "next" after all but the last, and the
    receiver decodes from a memory equal to the transmitter's."""
    link = copy.deepcopy(_big_link())
    tx_mem, rx_mem = link.tx.tx.memory, link.rx.rx.memory
    bad = [5, 40, 70]
    _corrupt(rx_mem, bad)
    assert [s for s in range(BIG) if not _same_slot(tx_mem, rx_mem, s)] == bad
    t, tx_digest = link.t, digest32(tx_mem)
    sent = [link.tx.begin(_latents(1, 2)[0], True)]

    def next_packet(fb):
        if fb is not None:
            sent.append(link.tx.answer(fb))
        return sent[-1]

    latent, fbs = link.rx.receive_frame(t, True, next_packet)
    assert latent is not None
    assert [fb.bits for fb in fbs] == [pk.REQUEST_BITS, 1, 1, BIG, 1, 1, pk.ACK_BITS]
    assert fbs[0].request is pk.Request.RESYNC
    assert all(fb.more and not fb.damaged and fb.slots is None for fb in fbs[1:3] + fbs[4:6])
    assert fbs[3].slots == bad and not fbs[3].more and fbs[-1].ack
    audits = [pk.decode_audit(p, t) for p in sent[1:4]]
    assert [(a.digest, a.memory_size, a.first, len(a.hashes)) for a in audits] == [
        (tx_digest, BIG, 0, 32), (tx_digest, BIG, 32, 32), (tx_digest, BIG, 64, 8)]
    assert [len(p) for p in sent[1:4]] == [15 + 64, 15 + 64, 15 + 16]
    assert list(link.rx.hashes) == [h for a in audits for h in a.hashes]
    assert [pk.decode_repair(p, 64, t) for p in sent[4:]] == [
        pk.SlotRepair(tx_mem.codes[s].tobytes(), int(tx_mem.last_used[s])) for s in bad]
    s = link.rx.stats
    assert (s.resyncs, s.repaired_slots, s.kind, link.rx.audits, link.rx.bad) == (1, 3, "miss", 1, [])
    assert not link.rx.known_bad
    link.tx.commit(True)
    assert tx_mem == rx_mem and tx_mem.size == BIG + 1


def test_a_frame_dropped_during_a_repair_keeps_the_slots_already_repaired():
    """5 bad slots; the 3rd REPAIR and its resend ("again") are lost, so the frame is dropped (max_attempts=2):
    the 2 slots repaired stay repaired, the 3 others still differ, and the next frame's resync repairs only those."""
    link = copy.deepcopy(_big_link())
    tx_mem, rx_mem = link.tx.tx.memory, link.rx.rx.memory
    bad = [2, 17, 33, 50, 71]
    _corrupt(rx_mem, bad)
    t = link.t
    first = link.tx.begin(_latents(1, 2)[0], True)
    repairs = []

    def next_packet(fb):
        if fb is None:
            return first
        packet = link.tx.answer(fb)
        if link.tx.phase == "repair":
            repairs.append(packet)
            if len(repairs) >= 3:
                return None   # lost
        return packet

    latent, fbs = link.rx.receive_frame(t, True, next_packet)
    link.tx.commit(False)
    assert latent is None
    assert fbs[0].request is pk.Request.RESYNC and fbs[3].slots == bad
    assert [(fb.bits, fb.more, fb.damaged) for fb in fbs[4:]] == [(1, True, False)] * 2 + [(1, True, True)] * 2
    assert len(repairs) == 4 and repairs[3] == repairs[2] != repairs[1]   # "again" resends the lost repair
    assert link.rx.stats.repaired_slots == 2 and link.rx.bad == bad[2:] and link.rx.known_bad
    assert link.t == link.rx.rx.t == t + 1 and tx_mem.size == rx_mem.size == BIG
    assert all(_same_slot(tx_mem, rx_mem, s) for s in bad[:2])
    assert not any(_same_slot(tx_mem, rx_mem, s) for s in bad[2:])
    assert [s for s in range(BIG) if not _same_slot(tx_mem, rx_mem, s)] == bad[2:]
    # the next frame (no check due: the receiver still knows its memory is bad) resyncs the 3 slots left
    latent, rec = link.step(_latents(1, 3)[0])
    assert latent is not None and rec.kind == "miss" and rec.damaged == 0
    assert (rec.resyncs, rec.repaired_slots, rec.in_sync, rec.decoded_known_bad) == (1, 3, True, False)
    assert tx_mem == rx_mem and not link.rx.known_bad


# =========================================================================== PacketChannel


@SETTINGS
@given(packet=st.binary(max_size=64))
def test_clean_channel_is_the_identity(packet):
    ch = PacketChannel(0.0, 0.0, np.random.default_rng(1))
    assert ch(packet) == packet and ch(packet) == packet
    assert (ch.bits, ch.flipped, ch.erased) == (16 * len(packet), 0, 0)


def _packets(n: int, size: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [bytes(rng.integers(0, 256, size, dtype=np.uint8)) for _ in range(n)]


def test_bit_errors_are_binomial_and_uniform_over_positions():
    """Flipped bits ~ Binomial(n, ber), counted right, spread evenly over the bit positions; lengths kept."""
    ber, size = 0.02, 20
    ch = PacketChannel(ber, 0.0, np.random.default_rng(11))
    sent = _packets(3000, size)
    got = [ch(p) for p in sent]
    assert all(g is not None and len(g) == size for g in got)
    errors = np.unpackbits(np.frombuffer(b"".join(sent), np.uint8) ^ np.frombuffer(b"".join(got), np.uint8))
    n = 8 * size * len(sent)
    assert ch.bits == n and ch.flipped == int(errors.sum()) and ch.erased == 0
    assert binomtest(ch.flipped, n, ber).pvalue > 1e-3
    per_position = errors.reshape(len(sent), 8 * size).sum(axis=0)
    assert chisquare(per_position).pvalue > 1e-3
    # a packet's error count is Binomial(160, ber) too: its variance is not that of clustered errors
    per_packet = errors.reshape(len(sent), 8 * size).sum(axis=1)
    assert abs(per_packet.var() / (8 * size * ber * (1 - ber)) - 1) < 0.15


def test_erasures_are_binomial_and_spare_the_rest():
    rate = 0.2
    ch = PacketChannel(0.0, rate, np.random.default_rng(5))
    sent = _packets(4000, 6)
    got = [ch(p) for p in sent]
    lost = sum(g is None for g in got)
    assert lost == ch.erased and binomtest(lost, len(sent), rate).pvalue > 1e-3
    assert all(g == p for g, p in zip(got, sent, strict=True) if g is not None)
    assert ch.bits == 8 * 6 * len(sent) and ch.flipped == 0


def test_channel_is_seeded():
    """Same seed, same output (also the default generator); another seed, another output."""
    sent = _packets(200, 12)

    def run(rng):
        ch = PacketChannel(0.05, 0.1, rng)
        return [ch(p) for p in sent]

    assert run(np.random.default_rng(9)) == run(np.random.default_rng(9))
    assert run(None) == run(None) == run(np.random.default_rng(0))
    assert run(np.random.default_rng(9)) != run(np.random.default_rng(10))


@pytest.mark.parametrize("ber,erasure", [(-0.01, 0.0), (0.51, 0.0), (float("nan"), 0.0), (1.0, 0.0),
                                         (0.0, -0.1), (0.0, 1.0), (0.0, 1.5), (0.0, float("nan"))])
def test_channel_rejects_invalid_rates(ber, erasure):
    with pytest.raises(ValueError):
        PacketChannel(ber, erasure)


def test_channel_limits_are_allowed():
    ch = PacketChannel(0.5, 0.999, np.random.default_rng(0))
    assert ch(b"") in (b"", None)


# =========================================================================== Corruption


def _memory(n: int = 20, d: int = 64, seed: int = 0) -> PrototypeMemory:
    mem = PrototypeMemory(d, 256)
    z = F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)
    for i in range(n):
        mem.write(z[i], 10 + 3 * i, np.full(d, i, dtype=np.uint8))
    return mem


def test_corruption_is_due_at_its_frame_only():
    c = Corruption(FaultConfig(corrupt_ids=0.3, corrupt_at=5))
    assert c.due(5) and not c.due(4) and not c.due(6) and not c.due(0)
    assert Corruption(FaultConfig(corrupt_sigma=0.1, corrupt_at=0)).due(0)
    clean = Corruption(FaultConfig(corrupt_at=5))   # nothing to corrupt: never due
    assert not any(clean.due(t) for t in range(10))


def test_corruption_rate_is_binomial():
    c = Corruption(FaultConfig(corrupt_ids=0.3, corrupt_rate=0.1, seed=4))
    hits = sum(c.due(t) for t in range(5000))
    assert binomtest(hits, 5000, 0.1).pvalue > 1e-3


def test_id_corruption_permutes_the_rows_and_keeps_recency():
    """corrupt_ids=0.5 on 20 slots: the same set of rows, exactly 10 of them moved; last use and codes kept."""
    mem = _memory()
    before, used, codes = mem.prototypes.clone(), mem.last_used.copy(), mem.codes.copy()
    assert Corruption(FaultConfig(corrupt_ids=0.5, corrupt_at=0), np.random.default_rng(1)).apply(mem)
    after = mem.prototypes
    assert mem.size == 20
    # every row of the result is exactly one of the old rows, each used once
    match = (after[:, None, :] == before[None, :, :]).all(dim=-1)
    assert match.sum(dim=1).tolist() == [1] * 20 and match.sum(dim=0).tolist() == [1] * 20
    moved = int((~(after == before).all(dim=1)).sum())
    assert moved == 10
    assert np.array_equal(mem.last_used, used) and np.array_equal(mem.codes, codes)


@pytest.mark.parametrize("sigma", [0.002, 0.01])
def test_vector_noise_keeps_unit_norm_and_moves_by_sigma_sqrt_d(sigma):
    mem, d = _memory(), 64
    before, used = mem.prototypes.clone(), mem.last_used.copy()
    assert Corruption(FaultConfig(corrupt_sigma=sigma, corrupt_at=0), np.random.default_rng(2)).apply(mem)
    after = mem.prototypes
    assert torch.allclose(after.norm(dim=1), torch.ones(20), atol=1e-5)
    change = (after - before).norm(dim=1)
    assert bool((change > 0).all())
    assert abs(float(change.mean()) / (sigma * math.sqrt(d)) - 1) < 0.15
    assert np.array_equal(mem.last_used, used)


def test_corruption_is_seeded_and_leaves_an_empty_or_tiny_memory_alone():
    faults = FaultConfig(corrupt_ids=0.5, corrupt_sigma=0.05, corrupt_at=0, seed=7)
    a, b = _memory(), _memory()
    assert Corruption(faults).apply(a) and Corruption(faults).apply(b)
    assert a == b
    empty = PrototypeMemory(64, 16)
    assert Corruption(faults).apply(empty) is False and empty.size == 0
    one = _memory(1)
    assert Corruption(FaultConfig(corrupt_ids=1.0, corrupt_at=0)).apply(one) is False   # nothing to permute with


@pytest.mark.parametrize("kwargs", [dict(corrupt_ids=0.3), dict(corrupt_sigma=0.1),
                                    dict(corrupt_ids=0.3, corrupt_rate=0.0)])
def test_a_one_off_corruption_without_a_frame_falls_half_way_through_a_clip(kwargs):
    """No corrupt_at and no corrupt_rate: for_clip(n) puts it at frame n // 2 (and only there)."""
    faults = FaultConfig(**kwargs)
    assert faults.corrupts and faults.corrupt_at is None
    placed = faults.for_clip(101)
    assert placed.corrupt_at == 50 and placed.model_dump() == {**faults.model_dump(), "corrupt_at": 50}
    c = Corruption(placed)
    assert [t for t in range(101) if c.due(t)] == [50]
    for kept in (FaultConfig(**kwargs, corrupt_at=3), FaultConfig(**{**kwargs, "corrupt_rate": 0.5}),
                 FaultConfig(ber=0.1)):
        assert kept.for_clip(101) == kept


@pytest.mark.parametrize("kwargs", [dict(ber=0.6), dict(ber=-0.1), dict(erasure_rate=1.0), dict(corrupt_ids=1.5),
                                    dict(corrupt_sigma=-1.0), dict(corrupt_at=-1), dict(corrupt_rate=2.0),
                                    dict(bogus=1)])
def test_fault_config_rejects_values_out_of_range(kwargs):
    with pytest.raises(ValidationError):
        FaultConfig(**kwargs)
    with pytest.raises(ConfigError):
        validated(FaultConfig, **kwargs)
