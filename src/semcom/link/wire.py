"""The bit-exact wire format of the semantic link, version 1 (see docs/wire-format.md).

A message is a symbol ``s`` in ``{0, ..., M}`` where ``M`` is the size of the
memory both sides hold before the frame: ``s < M`` is a hit that names
prototype ``s``; ``s = M`` is a miss, followed by the ``d`` 8-bit codes of
the quantised latent ``Q(z)``. The symbol takes ``ceil(log2(M + 1))`` bits
(none while the memory is empty). Messages are self-delimiting for a
receiver whose memory is in step with the transmitter's.

Two framings of the same messages:

* **packet** (one message per datagram, for a live link): the symbol in the
  fewest whole bytes, then the ``d`` code bytes;
* **stream** (a file): a 36-byte :class:`StreamHeader`, then every message's
  bits back to back with no alignment, zero-padded to a whole byte, then a
  4-byte CRC-32 of that payload. Its length is the bit count.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from semcom.config import LinkConfig, validated
from semcom.errors import ConfigError, WireFormatError

MAGIC = b"SCM"
VERSION = 1
RULE_IDS = {"nearest": 0, "hopfield": 1, "paper": 2}
POLICY_IDS = {"none": 0, "lru": 1}
ADAPTIVE_FLAG = 0x80  # flags bit 7: adaptive arithmetic coding of the stream
_HEADER = struct.Struct(">3sBBHIffBHHI4s")
HEADER_SIZE = _HEADER.size + 4  # + CRC-32 of the header fields


def symbol_bits(memory_size: int) -> int:
    """Bits of a message's symbol: ``ceil(log2(M + 1))``, 0 while the memory is empty."""
    return memory_size.bit_length()


def symbol_bytes(memory_size: int) -> int:
    """Whole bytes that carry the symbol."""
    return (symbol_bits(memory_size) + 7) // 8


@dataclass(frozen=True)
class HitMessage:
    """A hit: the index of the reused prototype."""

    index: int


@dataclass(frozen=True)
class MissMessage:
    """A miss: the quantised latent's codes (one byte per dimension)."""

    codes: bytes


Message = HitMessage | MissMessage


def encode_hit(index: int, memory_size: int) -> bytes:
    """Wire bytes of a hit on prototype ``index`` of a memory of ``memory_size``."""
    if not 0 <= index < memory_size:
        raise ValueError(f"index {index} out of range for memory of size {memory_size}")
    return index.to_bytes(symbol_bytes(memory_size), "big")


def encode_miss(codes: bytes, memory_size: int) -> bytes:
    """Wire bytes of a miss carrying ``codes`` (d bytes)."""
    return memory_size.to_bytes(symbol_bytes(memory_size), "big") + bytes(codes)


def read_message(buf: bytes, offset: int, memory_size: int, d: int) -> tuple[Message, int]:
    """Parse one message at ``buf[offset:]``; returns it and the offset just past it.

    Raises :class:`WireFormatError` for a truncated message or a symbol out of
    range; nothing is changed, so a rejected message leaves the memory as it was.
    """
    n = symbol_bytes(memory_size)
    if offset + n > len(buf):
        raise WireFormatError(f"truncated message: need {n} bytes, {len(buf) - offset} left")
    symbol = int.from_bytes(buf[offset : offset + n], "big")
    if symbol < memory_size:
        return HitMessage(symbol), offset + n
    if symbol > memory_size:
        raise WireFormatError(f"symbol {symbol} out of range for a memory of {memory_size} prototypes")
    end = offset + n + d
    if end > len(buf):
        raise WireFormatError(f"truncated miss message: need {n + d} bytes, {len(buf) - offset} left")
    return MissMessage(bytes(buf[offset + n : end])), end


class BitWriter:
    """Appends big-endian bit strings; :meth:`getvalue` zero-pads the last byte."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._acc = 0
        self._pending = 0
        self.bits = 0

    def write(self, value: int, nbits: int) -> None:
        if not 0 <= value < (1 << nbits) and not (value == 0 and nbits == 0):
            raise ValueError(f"value {value} does not fit in {nbits} bits")
        if nbits == 0:
            return
        self._acc = (self._acc << nbits) | value
        self._pending += nbits
        self.bits += nbits
        if self._pending >= 8:
            rest = self._pending % 8
            self._buf += (self._acc >> rest).to_bytes(self._pending // 8, "big")
            self._acc &= (1 << rest) - 1
            self._pending = rest

    def getvalue(self) -> bytes:
        tail = (self._acc << (8 - self._pending)).to_bytes(1, "big") if self._pending else b""
        return bytes(self._buf) + tail


class BitReader:
    """Reads big-endian bit strings from ``data`` starting at bit ``pos``."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    @property
    def remaining(self) -> int:
        return 8 * len(self.data) - self.pos

    def read(self, nbits: int) -> int:
        if nbits > self.remaining:
            raise WireFormatError(f"truncated message: need {nbits} bits, {self.remaining} left")
        if nbits == 0:
            return 0
        first, last = self.pos // 8, (self.pos + nbits - 1) // 8
        chunk = int.from_bytes(self.data[first : last + 1], "big")
        value = (chunk >> (8 * (last + 1) - self.pos - nbits)) & ((1 << nbits) - 1)
        self.pos += nbits
        return value


def message_bits(msg: Message, memory_size: int) -> int:
    """Length in bits of ``msg`` in the stream framing."""
    n = symbol_bits(memory_size)
    return n if isinstance(msg, HitMessage) else n + 8 * len(msg.codes)


def write_message(writer: BitWriter, msg: Message, memory_size: int) -> None:
    """Append ``msg`` to a bit-packed stream."""
    if isinstance(msg, HitMessage):
        if not 0 <= msg.index < memory_size:
            raise ValueError(f"index {msg.index} out of range for memory of size {memory_size}")
        writer.write(msg.index, symbol_bits(memory_size))
    else:
        writer.write(memory_size, symbol_bits(memory_size))
        writer.write(int.from_bytes(msg.codes, "big"), 8 * len(msg.codes))


def read_stream_message(reader: BitReader, memory_size: int, d: int) -> Message:
    """Read one message from a bit-packed stream; a symbol above ``M`` or a short stream is rejected."""
    symbol = reader.read(symbol_bits(memory_size))
    if symbol < memory_size:
        return HitMessage(symbol)
    if symbol > memory_size:
        raise WireFormatError(f"symbol {symbol} out of range for a memory of {memory_size} prototypes")
    return MissMessage(reader.read(8 * d).to_bytes(d, "big"))


TRAILER_SIZE = 4  # CRC-32 of the payload


def pack_stream(header: bytes, payload: bytes) -> bytes:
    """A stream file: header, bit-packed payload, CRC-32 of the payload."""
    return header + payload + zlib.crc32(payload).to_bytes(TRAILER_SIZE, "big")


def stream_payload(data: bytes, offset: int = HEADER_SIZE) -> bytes:
    """The payload of a stream, after checking its CRC-32 trailer (truncation or damage is an error)."""
    if len(data) < offset + TRAILER_SIZE:
        raise WireFormatError(f"truncated stream: {len(data)} bytes, at least {offset + TRAILER_SIZE} needed")
    payload, crc = data[offset:-TRAILER_SIZE], data[-TRAILER_SIZE:]
    if zlib.crc32(payload).to_bytes(TRAILER_SIZE, "big") != crc:
        raise WireFormatError("stream is truncated or corrupted (payload CRC mismatch)")
    return payload


def decode_message(data: bytes, memory_size: int, d: int) -> Message:
    """Parse exactly one message; trailing bytes are an error."""
    msg, end = read_message(data, 0, memory_size, d)
    if end != len(data):
        raise WireFormatError(f"message has {len(data) - end} unexpected trailing bytes")
    return msg


@dataclass(frozen=True)
class StreamHeader:
    """Everything the receiver must know before the first message (36 bytes, CRC-protected).

    ``frames`` is 0 when the length is unknown (a live link); ``weights`` is the
    4-byte fingerprint of the autoencoder the stream was encoded with.
    """

    config: LinkConfig
    frames: int = 0
    weights: bytes = b"\0\0\0\0"

    def __post_init__(self) -> None:
        if len(self.weights) != 4:
            raise ValueError(f"weights fingerprint must be 4 bytes, got {len(self.weights)}")
        if not 0 <= self.frames < 2**32:
            raise ValueError(f"frames={self.frames} does not fit the header (0 .. 2**32-1)")

    def to_bytes(self) -> bytes:
        c = self.config
        flags = RULE_IDS[c.rule] | POLICY_IDS[c.full_policy] << 4 | (ADAPTIVE_FLAG if c.coding == "adaptive" else 0)
        body = _HEADER.pack(MAGIC, VERSION, flags, c.d, c.m_max, c.beta, c.tau, c.top_k,
                            c.height, c.width, self.frames, self.weights)
        return body + zlib.crc32(body).to_bytes(4, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> StreamHeader:
        """Parse and validate a header; a damaged or foreign header is a WireFormatError."""
        if len(data) < HEADER_SIZE:
            raise WireFormatError(f"truncated stream header: {len(data)} of {HEADER_SIZE} bytes")
        body, crc = data[: _HEADER.size], data[_HEADER.size : HEADER_SIZE]
        magic, version, flags, d, m_max, beta, tau, top_k, h, w, frames, weights = _HEADER.unpack(body)
        if magic != MAGIC:
            raise WireFormatError("not a semcom stream (bad magic bytes)")
        if version != VERSION:
            raise WireFormatError(f"unsupported stream version {version} (this semcom reads {VERSION})")
        if zlib.crc32(body).to_bytes(4, "big") != crc:
            raise WireFormatError("stream header is corrupted (CRC mismatch)")
        rules = {v: k for k, v in RULE_IDS.items()}
        policies = {v: k for k, v in POLICY_IDS.items()}
        coding = "adaptive" if flags & ADAPTIVE_FLAG else "fixed"
        flags &= ~ADAPTIVE_FLAG
        if (flags & 0xF) not in rules or (flags >> 4) not in policies:
            raise WireFormatError(f"stream header has unknown rule/policy flags {flags:#04x}")
        try:
            config = validated(LinkConfig, rule=rules[flags & 0xF], full_policy=policies[flags >> 4], coding=coding,
                               d=d, m_max=m_max, beta=beta, tau=tau, top_k=top_k, height=h, width=w)
        except ConfigError as exc:
            raise WireFormatError(f"stream header holds an invalid config: {exc}") from None
        return cls(config, frames, weights)
