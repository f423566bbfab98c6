"""Protected packets: the wire format of a link with faults (docs/wire-format.md, "Protected packets").

A link that may lose or damage packets, or whose receiver memory may be
corrupted, sends every message as a self-checking datagram. All fields are
big-endian bit strings packed with :class:`semcom.link.wire.BitWriter`, the
whole packet zero-padded to a byte, then a checksum:

* ``DATA``, the frame's message: ``seq`` (8 bits, frame number mod 256) |
  ``digest`` (32 bits, only while a memory check is due) | the v1 message
  (symbol, then codes on a miss or refined hit) | ``cue`` (``cue_bits``, on a
  hit or refined hit when cues are on: the SimHash of the readout the receiver
  must reconstruct) | pad | checksum;
* ``REFRESH``, the answer to a refresh request: ``seq`` | ``digest`` if due |
  ``slot`` in ``ceil(log2(M + 1))`` bits (``M`` = a new slot, by the write
  policy) | the ``d`` 8-bit codes of the frame's quantised latent | pad | CRC-32;
* ``AUDIT``, the answer to a resync request, in chunks: ``seq`` | the 32-bit
  digest of the transmitter's memory | its size ``M`` and the first slot of
  the chunk (24 bits each) | up to ``AUDIT_CHUNK`` salted 16-bit slot hashes |
  pad | CRC-32;
* ``REPAIR``, one per slot the receiver listed as bad, in its order: ``seq`` |
  the slot's ``d`` codes and its last-use frame (32 bits) | pad | CRC-32.

Audits and repairs go in short packets so that each has a fair chance through
a noisy channel, and what arrived is kept: a repair interrupted by a dropped
frame resumes with fewer bad slots.

The checksum is CRC-32 (zlib) on packets that carry codes and hashes, and
``checksum_bits`` (16: CRC-16/CCITT, binascii; or 32) on the short ones
(hits), sized for the job: a hit is a few bits, a 32-bit CRC would double it.
A packet whose length, checksum, sequence number, symbol or padding is wrong
is rejected with :class:`WireFormatError`; nothing is applied.

The feedback channel (receiver to transmitter) carries: ``ACK`` (1 bit), a
request (1 + 2 + 8 bits: flag, kind, seq), during a resync a bitmap of the
slots to repair (``M`` bits), and during an audit or a repair "next" or
"again" (1 bit). It is modelled as error-free (a low-rate
control channel can afford a strong code); every bit of it is counted.
"""

from __future__ import annotations

import binascii
import zlib
from dataclasses import dataclass
from enum import IntEnum

from semcom.errors import WireFormatError
from semcom.link import wire

SEQ_BITS = 8
DIGEST_BITS = 32
SLOT_HASH_BITS = 16
LAST_USED_BITS = 32
SIZE_BITS = 24           # memory sizes and slot numbers in an audit (m_max < 2**24)
AUDIT_CHUNK = 32         # slot hashes per AUDIT packet
ACK_BITS = 1
MORE_BITS = 1            # "got it, next" (or "again") during an audit or a repair
REQUEST_BITS = 1 + 2 + SEQ_BITS


class Request(IntEnum):
    """What a receiver asks for on the feedback channel."""

    DAMAGED = 0   # the packet was lost or failed its checks: send a refresh (a new latent)
    CUE = 1       # the cue names a prototype this memory does not hold: refresh that slot
    RESYNC = 2    # the memory digest disagrees: send an audit


def bitmap_bits(memory_size: int) -> int:
    """Feedback bits of the list of slots to repair: one per slot."""
    return memory_size


def checksum(body: bytes, bits: int) -> bytes:
    """CRC-16/CCITT (``binascii.crc_hqx``, init 0xFFFF) or CRC-32 (``zlib.crc32``) of ``body``."""
    if bits == 16:
        return binascii.crc_hqx(body, 0xFFFF).to_bytes(2, "big")
    if bits == 32:
        return zlib.crc32(body).to_bytes(4, "big")
    raise ValueError(f"checksum must be 16 or 32 bits, got {bits}")


def _seal(w: wire.BitWriter, crc_bits: int) -> bytes:
    body = w.getvalue()
    return body + checksum(body, crc_bits)


def _open(packet: bytes, crc_bits: int, seq: int) -> wire.BitReader:
    """Check the checksum and the sequence number; a reader over the body, positioned after ``seq``."""
    n = crc_bits // 8
    if len(packet) <= n:
        raise WireFormatError(f"truncated packet: {len(packet)} bytes")
    body = packet[:-n]
    if checksum(body, crc_bits) != packet[-n:]:
        raise WireFormatError("packet checksum mismatch")
    r = wire.BitReader(body)
    got = r.read(SEQ_BITS)
    if got != seq % (1 << SEQ_BITS):
        raise WireFormatError(f"packet for frame {got} (mod 256), expected {seq % (1 << SEQ_BITS)}")
    return r


def _finish(r: wire.BitReader) -> None:
    """The rest of the body must be fewer than 8 zero padding bits."""
    if r.remaining >= 8 or r.read(r.remaining) != 0:
        raise WireFormatError("packet is longer than its fields (or its padding is not zero)")


@dataclass(frozen=True)
class Protection:
    """The parameters of the framing both ends share."""

    d: int
    residual_bits: int = 0
    cue_bits: int = 0
    checksum_bits: int = 16

    def data_crc_bits(self, msg: wire.Message) -> int:
        return self.checksum_bits if isinstance(msg, wire.HitMessage) else 32


@dataclass(frozen=True)
class DataPacket:
    message: wire.Message
    digest: int | None
    cue: int | None


def _has_cue(msg: wire.Message, p: Protection) -> bool:
    return p.cue_bits > 0 and not isinstance(msg, wire.MissMessage)


def encode_data(msg: wire.Message, memory_size: int, seq: int, p: Protection,
                digest: int | None = None, cue: int | None = None) -> bytes:
    """A ``DATA`` packet; ``cue`` is required on a hit or refined hit when ``p.cue_bits > 0``."""
    w = wire.BitWriter()
    w.write(seq % (1 << SEQ_BITS), SEQ_BITS)
    if digest is not None:
        w.write(digest, DIGEST_BITS)
    wire.write_message(w, msg, memory_size, p.residual_bits)
    if _has_cue(msg, p):
        if cue is None:
            raise ValueError("a hit needs its cue when cues are on")
        w.write(int(cue), p.cue_bits)
    return _seal(w, p.data_crc_bits(msg))


def decode_data(packet: bytes, memory_size: int, seq: int, p: Protection, digest_due: bool) -> DataPacket:
    """Parse and check a ``DATA`` packet (see the module docstring); raises WireFormatError if damaged."""
    # the checksum's width depends on the kind, read from the (still unchecked) symbol
    head = wire.BitReader(packet)
    try:
        head.read(SEQ_BITS + (DIGEST_BITS if digest_due else 0))
        symbol = head.read(wire.symbol_bits(memory_size, p.residual_bits > 0))
    except WireFormatError:
        raise WireFormatError(f"truncated packet: {len(packet)} bytes") from None
    crc_bits = p.checksum_bits if symbol < memory_size else 32
    r = _open(packet, crc_bits, seq)
    digest = r.read(DIGEST_BITS) if digest_due else None
    msg = wire.read_stream_message(r, memory_size, p.d, p.residual_bits)
    cue = r.read(p.cue_bits) if _has_cue(msg, p) else None
    _finish(r)
    return DataPacket(msg, digest, cue)


@dataclass(frozen=True)
class RefreshPacket:
    slot: int | None   # None: a new slot, by the write policy
    codes: bytes
    digest: int | None


def encode_refresh(slot: int | None, codes: bytes, memory_size: int, seq: int, digest: int | None = None) -> bytes:
    """A ``REFRESH`` packet: the quantised latent's codes, for ``slot`` (None: a new one)."""
    if slot is not None and not 0 <= slot < memory_size:
        raise ValueError(f"refresh of slot {slot} in a memory of {memory_size}")
    w = wire.BitWriter()
    w.write(seq % (1 << SEQ_BITS), SEQ_BITS)
    if digest is not None:
        w.write(digest, DIGEST_BITS)
    w.write(memory_size if slot is None else slot, wire.symbol_bits(memory_size))
    for c in codes:
        w.write(c, 8)
    return _seal(w, 32)


def decode_refresh(packet: bytes, memory_size: int, d: int, seq: int, digest_due: bool) -> RefreshPacket:
    r = _open(packet, 32, seq)
    digest = r.read(DIGEST_BITS) if digest_due else None
    slot = r.read(wire.symbol_bits(memory_size))
    if slot > memory_size:
        raise WireFormatError(f"refresh for slot {slot} of a memory of {memory_size}")
    codes = bytes(r.read(8) for _ in range(d))
    _finish(r)
    return RefreshPacket(None if slot == memory_size else slot, codes, digest)


@dataclass(frozen=True)
class AuditPacket:
    digest: int
    memory_size: int          # the transmitter's M
    first: int                # the slot of the first hash in this packet
    hashes: tuple[int, ...]   # min(AUDIT_CHUNK, M - first) salted slot hashes


def audit_count(memory_size: int, first: int) -> int:
    """Slot hashes in the ``AUDIT`` packet that starts at slot ``first``."""
    return max(0, min(AUDIT_CHUNK, memory_size - first))


def encode_audit(digest: int, memory_size: int, first: int, hashes: list[int], seq: int) -> bytes:
    """An ``AUDIT`` packet: the memory's digest and size, and the hashes of slots ``first ..``."""
    if first % AUDIT_CHUNK or (first >= memory_size and not first == memory_size == 0):
        raise ValueError(f"an audit chunk starts at a multiple of {AUDIT_CHUNK} below {memory_size}, not {first}")
    if len(hashes) != audit_count(memory_size, first):
        raise ValueError(f"{len(hashes)} hashes for the audit of slots {first}.. of {memory_size}")
    w = wire.BitWriter()
    w.write(seq % (1 << SEQ_BITS), SEQ_BITS)
    w.write(digest, DIGEST_BITS)
    w.write(memory_size, SIZE_BITS)
    w.write(first, SIZE_BITS)
    for h in hashes:
        w.write(h, SLOT_HASH_BITS)
    return _seal(w, 32)


def decode_audit(packet: bytes, seq: int) -> AuditPacket:
    r = _open(packet, 32, seq)
    digest, size, first = r.read(DIGEST_BITS), r.read(SIZE_BITS), r.read(SIZE_BITS)
    if first % AUDIT_CHUNK or (first >= size and not first == size == 0):
        raise WireFormatError(f"audit from slot {first} of a memory of {size}")
    hashes = tuple(r.read(SLOT_HASH_BITS) for _ in range(audit_count(size, first)))
    _finish(r)
    return AuditPacket(digest, size, first, hashes)


@dataclass(frozen=True)
class SlotRepair:
    codes: bytes
    last_used: int


def encode_repair(repair: SlotRepair, seq: int) -> bytes:
    """A ``REPAIR`` packet: the codes and last use of the next slot the receiver listed."""
    w = wire.BitWriter()
    w.write(seq % (1 << SEQ_BITS), SEQ_BITS)
    for c in repair.codes:
        w.write(c, 8)
    w.write(repair.last_used % (1 << LAST_USED_BITS), LAST_USED_BITS)
    return _seal(w, 32)


def decode_repair(packet: bytes, d: int, seq: int) -> SlotRepair:
    r = _open(packet, 32, seq)
    out = SlotRepair(bytes(r.read(8) for _ in range(d)), r.read(LAST_USED_BITS))
    _finish(r)
    return out
