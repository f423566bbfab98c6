"""The receiver's feedback as bytes: the payload of a ``FEEDBACK`` packet (:mod:`semcom.live.framing`).

A :class:`semcom.link.session.Feedback` (what the simulation passes as an object) crosses the socket as::

    flags (1: ack, damaged, more, drop, request, slots) | protocol bits (4) | request kind (1, if any)
    | memory size M (4) and an M-bit bitmap of the slots to repair (if any)

``protocol bits`` is what the Hopfield paper's accounting charges for it (:mod:`semcom.link.protected`: an
ACK is 1 bit, a request 11, a bitmap M); the bytes on the wire are counted apart. ``drop``: the receiver gave
up on the frame after ``max_attempts`` damaged packets (both ends then keep their memories as they were).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from semcom.link import protected as pk
from semcom.link.session import Feedback

from .framing import PacketError

ACK, DAMAGED, MORE, DROP, REQUEST, SLOTS = (1 << i for i in range(6))
_HEAD = struct.Struct(">BI")
_SIZE = struct.Struct(">I")
#: The largest memory a repair bitmap may describe (the link's m_max is far below).
MAX_BITMAP_SLOTS = 1 << 20
_REQUESTS = frozenset(int(r) for r in pk.Request)


@dataclass(frozen=True)
class Reply:
    """A decoded feedback: the simulation's :class:`Feedback` and whether the frame was dropped."""

    feedback: Feedback
    drop: bool = False


def encode(fb: Feedback, drop: bool = False, memory_size: int = 0) -> bytes:
    """``fb`` as bytes; ``memory_size``: the transmitter's M, the length of a repair bitmap."""
    flags = ((ACK if fb.ack else 0) | (DAMAGED if fb.damaged else 0) | (MORE if fb.more else 0)
             | (DROP if drop else 0) | (REQUEST if fb.request is not None else 0)
             | (SLOTS if fb.slots is not None else 0))
    out = _HEAD.pack(flags, fb.bits)
    if fb.request is not None:
        out += bytes([int(fb.request)])
    if fb.slots is not None:
        bitmap = 0
        for s in fb.slots:
            bitmap |= 1 << s
        out += _SIZE.pack(memory_size) + bitmap.to_bytes((memory_size + 7) // 8, "little")
    return out


def decode(data: bytes, memory_size: int) -> Reply:
    """Parse a feedback; a repair bitmap must describe a memory of exactly ``memory_size`` slots."""
    if len(data) < _HEAD.size:
        raise PacketError(f"truncated feedback: {len(data)} bytes")
    flags, bits = _HEAD.unpack_from(data)
    pos, request, slots = _HEAD.size, None, None
    if flags >> 6:
        raise PacketError(f"feedback has unknown flags {flags:#04x}")
    if flags & REQUEST:
        if pos >= len(data) or data[pos] not in _REQUESTS:
            raise PacketError("feedback names no valid request")
        request, pos = pk.Request(data[pos]), pos + 1
    if flags & SLOTS:
        if pos + _SIZE.size > len(data):
            raise PacketError("truncated repair bitmap")
        (m,) = _SIZE.unpack_from(data, pos)
        pos += _SIZE.size
        if m != memory_size or m > MAX_BITMAP_SLOTS:
            raise PacketError(f"repair bitmap for a memory of {m} slots, this one holds {memory_size}")
        bitmap = int.from_bytes(data[pos : pos + (m + 7) // 8], "little")
        pos += (m + 7) // 8
        slots = [s for s in range(m) if bitmap >> s & 1]
    if pos != len(data):
        raise PacketError(f"feedback has {len(data) - pos} unexpected trailing bytes")
    fb = Feedback(bits, ack=bool(flags & ACK), request=request, slots=slots, damaged=bool(flags & DAMAGED),
                  more=bool(flags & MORE))
    return Reply(fb, drop=bool(flags & DROP))
