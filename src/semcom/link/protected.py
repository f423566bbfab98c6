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

With the ``tree`` resync (:mod:`semcom.link.session`, :mod:`semcom.link.hashtree`), ``DATA`` and
``REFRESH`` also carry a ``check_bits`` memory check after the digest, and a hit of a rule whose readout is
one slot that slot's check after the cue; AUDIT and REPAIR give way to:

* ``TREE``: ``seq`` | round (16) | level (8) | ``M`` (24) | chunk (16) | count (8) | ``count`` 16-bit node
  hashes (at most ``hashtree.CHUNK``) | pad | CRC-32;
* bulk ``REPAIR``: ``seq`` | round (16) | first (24, the position in the receiver's list of bad slots) |
  count (8) | per slot its ``d`` codes and last use (32) | pad | CRC-32, as many slots as fit
  :data:`REPAIR_PACKET_BITS` (at least one).

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
    check_bits: int = 0          # the tree protocol's memory check on every DATA (0: none)
    slot_checks: bool = False    # and its slot check on a hit (rules whose readout is one slot's)

    def data_crc_bits(self, msg: wire.Message) -> int:
        return self.checksum_bits if isinstance(msg, wire.HitMessage) else 32


@dataclass(frozen=True)
class DataPacket:
    message: wire.Message
    digest: int | None
    cue: int | None
    check: int | None = None        # the memory check (tree protocol)
    slot_check: int | None = None   # the referenced slot's check, on a hit (tree protocol)


def _has_cue(msg: wire.Message, p: Protection) -> bool:
    return p.cue_bits > 0 and not isinstance(msg, wire.MissMessage)


def _has_slot_check(msg: wire.Message, p: Protection) -> bool:
    return p.check_bits > 0 and p.slot_checks and not isinstance(msg, wire.MissMessage)


def encode_data(msg: wire.Message, memory_size: int, seq: int, p: Protection,
                digest: int | None = None, cue: int | None = None, check: int | None = None,
                slot_check: int | None = None) -> bytes:
    """A ``DATA`` packet; ``cue`` is required on a hit or refined hit when ``p.cue_bits > 0``, ``check``
    when ``p.check_bits > 0`` and ``slot_check`` on a hit when ``p.slot_checks`` too."""
    w = wire.BitWriter()
    w.write(seq % (1 << SEQ_BITS), SEQ_BITS)
    if digest is not None:
        w.write(digest, DIGEST_BITS)
    if p.check_bits:
        if check is None:
            raise ValueError("a DATA packet needs its memory check when checks are on")
        w.write(int(check), p.check_bits)
    wire.write_message(w, msg, memory_size, p.residual_bits)
    if _has_cue(msg, p):
        if cue is None:
            raise ValueError("a hit needs its cue when cues are on")
        w.write(int(cue), p.cue_bits)
    if _has_slot_check(msg, p):
        if slot_check is None:
            raise ValueError("a hit needs its slot check when slot checks are on")
        w.write(int(slot_check), p.check_bits)
    return _seal(w, p.data_crc_bits(msg))


def decode_data(packet: bytes, memory_size: int, seq: int, p: Protection, digest_due: bool) -> DataPacket:
    """Parse and check a ``DATA`` packet (see the module docstring); raises WireFormatError if damaged."""
    # the checksum's width depends on the kind, read from the (still unchecked) symbol
    head = wire.BitReader(packet)
    try:
        head.read(SEQ_BITS + (DIGEST_BITS if digest_due else 0) + p.check_bits)
        symbol = head.read(wire.symbol_bits(memory_size, p.residual_bits > 0))
    except WireFormatError:
        raise WireFormatError(f"truncated packet: {len(packet)} bytes") from None
    crc_bits = p.checksum_bits if symbol < memory_size else 32
    r = _open(packet, crc_bits, seq)
    digest = r.read(DIGEST_BITS) if digest_due else None
    check = r.read(p.check_bits) if p.check_bits else None
    msg = wire.read_stream_message(r, memory_size, p.d, p.residual_bits)
    cue = r.read(p.cue_bits) if _has_cue(msg, p) else None
    slot_check = r.read(p.check_bits) if _has_slot_check(msg, p) else None
    _finish(r)
    return DataPacket(msg, digest, cue, check, slot_check)


@dataclass(frozen=True)
class RefreshPacket:
    slot: int | None   # None: a new slot, by the write policy
    codes: bytes
    digest: int | None
    check: int | None = None   # the memory check (tree protocol)


def encode_refresh(slot: int | None, codes: bytes, memory_size: int, seq: int, digest: int | None = None,
                   check: int | None = None, check_bits: int = 0) -> bytes:
    """A ``REFRESH`` packet: the quantised latent's codes, for ``slot`` (None: a new one); with
    ``check_bits``, the memory ``check`` after the digest."""
    if slot is not None and not 0 <= slot < memory_size:
        raise ValueError(f"refresh of slot {slot} in a memory of {memory_size}")
    w = wire.BitWriter()
    w.write(seq % (1 << SEQ_BITS), SEQ_BITS)
    if digest is not None:
        w.write(digest, DIGEST_BITS)
    if check_bits:
        if check is None:
            raise ValueError("a REFRESH packet needs its memory check when checks are on")
        w.write(int(check), check_bits)
    w.write(memory_size if slot is None else slot, wire.symbol_bits(memory_size))
    for c in codes:
        w.write(c, 8)
    return _seal(w, 32)


def decode_refresh(packet: bytes, memory_size: int, d: int, seq: int, digest_due: bool,
                   check_bits: int = 0) -> RefreshPacket:
    r = _open(packet, 32, seq)
    digest = r.read(DIGEST_BITS) if digest_due else None
    check = r.read(check_bits) if check_bits else None
    slot = r.read(wire.symbol_bits(memory_size))
    if slot > memory_size:
        raise WireFormatError(f"refresh for slot {slot} of a memory of {memory_size}")
    codes = bytes(r.read(8) for _ in range(d))
    _finish(r)
    return RefreshPacket(None if slot == memory_size else slot, codes, digest, check)


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
    _write_slot(w, repair)
    return _seal(w, 32)


def _write_slot(w: wire.BitWriter, repair: SlotRepair) -> None:
    """One slot of a REPAIR: its ``d`` codes (8 bits each), then its last use."""
    for c in repair.codes:
        w.write(c, 8)
    w.write(repair.last_used % (1 << LAST_USED_BITS), LAST_USED_BITS)


def _read_slot(r: wire.BitReader, d: int) -> SlotRepair:
    return SlotRepair(bytes(r.read(8) for _ in range(d)), r.read(LAST_USED_BITS))


def decode_repair(packet: bytes, d: int, seq: int) -> SlotRepair:
    r = _open(packet, 32, seq)
    out = _read_slot(r, d)
    _finish(r)
    return out


# -- the tree protocol's resync (semcom.link.hashtree) -------------------------------------------------------

ROUND_BITS = 16          # the resync round (its salt), so that a packet of another round is refused
LEVEL_BITS = 8
CHUNK_BITS = 16
COUNT_BITS = 8
REPAIR_PACKET_BITS = 1024   # a bulk REPAIR holds as many slots as fit in this many bits (at least one)


@dataclass(frozen=True)
class TreePacket:
    round: int
    level: int                # the level of the hashed nodes (0: slots)
    memory_size: int          # the transmitter's M
    chunk: int                # the chunk of the level's node list
    hashes: tuple[int, ...]   # HASH_BITS-bit node hashes


def encode_tree(tree: TreePacket, seq: int) -> bytes:
    """A ``TREE`` packet: ``seq`` | round (16) | level (8) | M (24) | chunk (16) | count (8) | the count
    node hashes (16 bits each) | pad | CRC-32."""
    from semcom.link.hashtree import CHUNK, HASH_BITS

    if len(tree.hashes) > CHUNK or tree.memory_size >= 1 << SIZE_BITS:
        raise ValueError(f"a TREE packet holds at most {CHUNK} hashes of a memory below 2**{SIZE_BITS}")
    w = wire.BitWriter()
    w.write(seq % (1 << SEQ_BITS), SEQ_BITS)
    w.write(tree.round % (1 << ROUND_BITS), ROUND_BITS)
    w.write(tree.level, LEVEL_BITS)
    w.write(tree.memory_size, SIZE_BITS)
    w.write(tree.chunk, CHUNK_BITS)
    w.write(len(tree.hashes), COUNT_BITS)
    for h in tree.hashes:
        w.write(h, HASH_BITS)
    return _seal(w, 32)


def decode_tree(packet: bytes, seq: int) -> TreePacket:
    from semcom.link.hashtree import CHUNK, HASH_BITS

    r = _open(packet, 32, seq)
    rnd, level, size, chunk, n = (r.read(ROUND_BITS), r.read(LEVEL_BITS), r.read(SIZE_BITS), r.read(CHUNK_BITS),
                                  r.read(COUNT_BITS))
    if n > CHUNK:
        raise WireFormatError(f"TREE packet declares {n} hashes, at most {CHUNK}")
    hashes = tuple(r.read(HASH_BITS) for _ in range(n))
    _finish(r)
    return TreePacket(rnd, level, size, chunk, hashes)


def repair_batch(d: int) -> int:
    """Slots per bulk ``REPAIR``: as many as fit in :data:`REPAIR_PACKET_BITS` (at least one, at most 255)."""
    head = SEQ_BITS + ROUND_BITS + SIZE_BITS + COUNT_BITS + 32
    return max(1, min(255, (REPAIR_PACKET_BITS - head) // (8 * d + LAST_USED_BITS)))


@dataclass(frozen=True)
class BulkRepair:
    round: int
    first: int                       # the position in the receiver's list of bad slots of the first repair
    repairs: tuple[SlotRepair, ...]


def encode_repairs(bulk: BulkRepair, seq: int) -> bytes:
    """A bulk ``REPAIR``: ``seq`` | round (16) | first (24) | count (8) | per slot its ``d`` codes and last
    use (32) | pad | CRC-32."""
    if not 1 <= len(bulk.repairs) < 1 << COUNT_BITS or bulk.first >= 1 << SIZE_BITS:
        raise ValueError(f"a bulk REPAIR holds 1..255 slots from a position below 2**{SIZE_BITS}")
    w = wire.BitWriter()
    w.write(seq % (1 << SEQ_BITS), SEQ_BITS)
    w.write(bulk.round % (1 << ROUND_BITS), ROUND_BITS)
    w.write(bulk.first, SIZE_BITS)
    w.write(len(bulk.repairs), COUNT_BITS)
    for rep in bulk.repairs:
        _write_slot(w, rep)
    return _seal(w, 32)


def decode_repairs(packet: bytes, d: int, seq: int) -> BulkRepair:
    r = _open(packet, 32, seq)
    rnd, first, n = r.read(ROUND_BITS), r.read(SIZE_BITS), r.read(COUNT_BITS)
    if not 1 <= n or n * (8 * d + LAST_USED_BITS) > r.remaining:
        raise WireFormatError(f"bulk REPAIR declares {n} slots, its body holds fewer")
    reps = tuple(_read_slot(r, d) for _ in range(n))
    _finish(r)
    return BulkRepair(rnd, first, reps)
