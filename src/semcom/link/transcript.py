"""A session file: the packets a receiver got over a faulty link, replayable by ``semcom decode``.

A file has no feedback channel, so a link with faults and repairs runs live,
in process, between a transmitter and a receiver that share only packets and
feedback (:class:`semcom.link.session.ProtectedLink`). What the receiver got
is kept, and the file replays it through a fresh receiver, which must ask for
exactly what the live one asked for. Layout (docs/wire-format.md, "Session files"):

* the 41-byte stream header, with flag bit 3 set ("a session follows");
* a 70-byte session block (magic ``SCS``, version 2, the :class:`ProtectionConfig`
  and the receiver-side faults to re-inject, CRC-32); version 1 (66 bytes, before the ``tree`` resync,
  whose packets differ) is refused in one line rather than misread;
* per frame: the number of packets the receiver got (1 byte), then each as a
  2-byte length (``0xFFFF``: lost) and its bytes, as received (bit errors included);
* a CRC-32 of everything after the session block.

The file is an honest record of the forward link: its packets' bytes are the
forward bits; it adds 1 byte per frame and 2 per packet of framing.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

import torch

from semcom.config import FaultConfig, ProtectionConfig, validated
from semcom.errors import ConfigError, WireFormatError
from semcom.link import wire

MAGIC = b"SCS"
VERSION = 2
_BLOCK = struct.Struct(">3sBBdBHBdddqdIBBBBB")
CUE_OF = ("prototype", "readout")
RESYNC = ("flat", "tree")
BLOCK_SIZE = _BLOCK.size + 4
LOST = 0xFFFF


def session_block(protection: ProtectionConfig, faults: FaultConfig) -> bytes:
    """The protection and the receiver's faults (the channel's act on the recorded packets already)."""
    p, f = protection, faults
    body = _BLOCK.pack(MAGIC, VERSION, p.cue_bits, p.cue_tolerance, p.checksum_bits, p.sync_every, p.max_attempts,
                       f.corrupt_ids, f.corrupt_sigma, f.corrupt_rate, -1 if f.corrupt_at is None else f.corrupt_at,
                       f.ber, f.seed, CUE_OF.index(p.cue_of), RESYNC.index(p.resync), p.check_bits, p.fanout,
                       p.resync_packets)
    return body + zlib.crc32(body).to_bytes(4, "big")


def parse_session_block(data: bytes) -> tuple[ProtectionConfig, FaultConfig]:
    if len(data) >= 4 and data[:3] == MAGIC and data[3] != VERSION:
        raise WireFormatError(f"session block version {data[3]}: this semcom reads version {VERSION} only "
                              f"(version 1 files predate the tree resync; record the session again)")
    if len(data) < BLOCK_SIZE:
        raise WireFormatError(f"truncated session block: {len(data)} of {BLOCK_SIZE} bytes")
    body, crc = data[: _BLOCK.size], data[_BLOCK.size : BLOCK_SIZE]
    if zlib.crc32(body).to_bytes(4, "big") != crc:
        raise WireFormatError("session block is corrupted (CRC mismatch)")
    (magic, version, cue_bits, tol, checksum_bits, sync_every, max_attempts, ids, sigma, rate, at, ber,
     seed, cue_of, resync, check_bits, fanout, resync_packets) = _BLOCK.unpack(body)
    if magic != MAGIC or version != VERSION:
        raise WireFormatError(f"not a semcom session block (magic {magic!r}, version {version})")
    if cue_of >= len(CUE_OF):
        raise WireFormatError(f"session block names an unknown cue target {cue_of}")
    if resync >= len(RESYNC):
        raise WireFormatError(f"session block names an unknown resync {resync}")
    try:
        protection = validated(ProtectionConfig, cue_bits=cue_bits, cue_tolerance=tol, checksum_bits=checksum_bits,
                               sync_every=sync_every, max_attempts=max_attempts, cue_of=CUE_OF[cue_of],
                               resync=RESYNC[resync], check_bits=check_bits, fanout=fanout,
                               resync_packets=resync_packets)
        faults = validated(FaultConfig, corrupt_ids=ids, corrupt_sigma=sigma, corrupt_rate=rate,
                           corrupt_at=None if at < 0 else at, ber=ber, seed=seed)
    except ConfigError as exc:
        raise WireFormatError(f"session block holds an invalid config: {exc}") from None
    return protection, faults


def pack_session(header: bytes, block: bytes, log: list[list[bytes | None]]) -> bytes:
    """Header, session block, the packets of every frame as received, CRC-32."""
    out = bytearray()
    for packets in log:
        if len(packets) > 255:
            raise ValueError(f"{len(packets)} packets in one frame do not fit a session file")
        out.append(len(packets))
        for p in packets:
            if p is not None and len(p) >= LOST:
                raise ValueError(f"a packet of {len(p)} bytes does not fit a session file")
            out += (LOST if p is None else len(p)).to_bytes(2, "big") + (p or b"")
    body = bytes(out)
    return header + block + body + zlib.crc32(body).to_bytes(4, "big")


def frames_of(data: bytes, frames: int) -> Iterator[list[bytes | None]]:
    """The packets of each of ``frames`` frames, after checking the CRC-32 of the whole record.

    ``frames`` must lie in ``1 ..`` :data:`wire.MAX_FRAMES` and be at most the record's length in bytes
    (every frame takes at least its 1-byte packet count); each packet is at most 65,534 bytes and a frame
    holds at most 255 of them, so the work is linear in the file's length.
    """
    if not 1 <= frames <= wire.MAX_FRAMES:
        raise WireFormatError(f"session declares {frames} frames, outside 1..{wire.MAX_FRAMES}")
    body = wire.stream_payload(data, wire.HEADER_SIZE + BLOCK_SIZE)
    if frames > len(body):
        raise WireFormatError(f"session declares {frames} frames, but its {len(body)}-byte record "
                              f"can hold at most {len(body)}")
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(body):
            raise WireFormatError("truncated session record")
        pos += n
        return body[pos - n : pos]

    for _ in range(frames):
        count = take(1)[0]
        packets = []
        for _ in range(count):
            n = int.from_bytes(take(2), "big")
            packets.append(None if n == LOST else take(n))
        yield packets
    if pos != len(body):
        raise WireFormatError(f"{len(body) - pos} unexpected bytes after the last frame of the session")


def replay(data: bytes, decoder: torch.nn.Module | None = None,
           weights_id: bytes | None = None) -> tuple[list[torch.Tensor | None], object]:
    """Decode a session file through a fresh receiver; returns one latent per frame (None: dropped) and the
    :class:`semcom.link.session.ProtectedReceiver`. A receiver that asks for packets the file does not
    hold, or leaves some unread, means the file is not the record of this protocol: an error."""
    from semcom.link.endpoints import Receiver
    from semcom.link.session import ProtectedReceiver, check_due, receiver_corruption, simhash_for

    header = wire.StreamHeader.from_bytes(data[: wire.HEADER_SIZE])
    if not header.session:
        raise WireFormatError("not a session file (a plain stream: decode it without replay)")
    protection, faults = parse_session_block(data[wire.HEADER_SIZE :])
    rx, _ = Receiver.from_header(data[: wire.HEADER_SIZE], decoder, weights_id)
    prx = ProtectedReceiver(rx, protection, simhash_for(rx.config, protection))
    corruption = receiver_corruption(faults)
    out = []
    for t, packets in enumerate(frames_of(data, header.frames)):
        if corruption.due(t):
            corruption.apply(rx.memory)
        feed = iter(packets)

        def next_packet(_fb, feed=feed, t=t):
            try:
                return next(feed)
            except StopIteration:
                raise WireFormatError(f"frame {t}: the receiver asks for a packet the session does not hold") from None

        latent, _ = prx.receive_frame(t, check_due(protection, t), next_packet)
        if next(feed, False) is not False:
            raise WireFormatError(f"frame {t}: the session holds packets the receiver never asked for")
        out.append(latent)
    return out, prx
