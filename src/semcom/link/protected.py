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
* ``AUDIT``, the answer to a resync request: ``seq`` | the 32-bit digest of the
  transmitter's memory | ``M`` salted 16-bit slot hashes | pad | CRC-32;
* ``REPAIR``, the answer to the receiver's list of bad slots: ``seq`` | per
  listed slot, its ``d`` codes and its last-use frame (32 bits) | pad | CRC-32.

The checksum is CRC-32 (zlib) on packets that carry codes and hashes, and
``checksum_bits`` (16: CRC-16/CCITT, binascii; or 32) on the short ones
(hits), sized for the job: a hit is a few bits, a 32-bit CRC would double it.
A packet whose length, checksum, sequence number, symbol or padding is wrong
is rejected with :class:`WireFormatError`; nothing is applied.

The feedback channel (receiver to transmitter) carries: ``ACK`` (1 bit), a
request (1 + 2 + 8 bits: flag, kind, seq) and, during a resync, a bitmap of
the slots to repair (``M`` bits). It is modelled as error-free (a low-rate
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
ACK_BITS = 1
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
    hashes: tuple[int, ...]


def encode_audit(digest: int, hashes: list[int], seq: int) -> bytes:
    """An ``AUDIT`` packet: the memory's digest and one salted hash per slot."""
    w = wire.BitWriter()
    w.write(seq % (1 << SEQ_BITS), SEQ_BITS)
    w.write(digest, DIGEST_BITS)
    for h in hashes:
        w.write(h, SLOT_HASH_BITS)
    return _seal(w, 32)


def decode_audit(packet: bytes, memory_size: int, seq: int) -> AuditPacket:
    """``memory_size`` is the transmitter's (the receiver learns it from the packet's length)."""
    r = _open(packet, 32, seq)
    digest = r.read(DIGEST_BITS)
    hashes = tuple(r.read(SLOT_HASH_BITS) for _ in range(memory_size))
    _finish(r)
    return AuditPacket(digest, hashes)


def audit_size(packet: bytes) -> int:
    """The number of slot hashes an ``AUDIT`` packet of this length holds."""
    body_bits = 8 * (len(packet) - 4) - SEQ_BITS - DIGEST_BITS
    return max(body_bits, 0) // SLOT_HASH_BITS


@dataclass(frozen=True)
class SlotRepair:
    codes: bytes
    last_used: int


def encode_repair(repairs: list[SlotRepair], seq: int) -> bytes:
    """A ``REPAIR`` packet: codes and last use of each slot the receiver listed, in its order."""
    w = wire.BitWriter()
    w.write(seq % (1 << SEQ_BITS), SEQ_BITS)
    for rep in repairs:
        for c in rep.codes:
            w.write(c, 8)
        w.write(rep.last_used % (1 << LAST_USED_BITS), LAST_USED_BITS)
    return _seal(w, 32)


def decode_repair(packet: bytes, count: int, d: int, seq: int) -> list[SlotRepair]:
    r = _open(packet, 32, seq)
    out = [SlotRepair(bytes(r.read(8) for _ in range(d)), r.read(LAST_USED_BITS)) for _ in range(count)]
    _finish(r)
    return out
