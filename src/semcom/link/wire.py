"""The bit-exact wire format of the semantic link, version 1 (see docs/wire-format.md).

A message is a symbol ``s`` where ``M`` is the size of the memory both sides
hold before the frame: ``s < M`` is a hit that names prototype ``s``; the last
symbol is a miss, followed by the ``d`` 8-bit codes of the quantised latent
``Q(z)``. In residual mode (``residual_bits > 0``) the symbols ``M .. 2M-1``
are refined hits on prototype ``s - M``, followed by ``d`` residual codes of
``residual_bits`` each (eq. 2's ``epsilon_t``). The symbol takes
``ceil(log2(#symbols))`` bits (none while the memory is empty). Messages are
self-delimiting for a receiver whose memory is in step with the transmitter's.

Two framings of the same messages:

* **packet** (one message per datagram, for a live link): the symbol in the
  fewest whole bytes, then the ``d`` code bytes;
* **stream** (a file): a 41-byte :class:`StreamHeader`, then every message's
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
SESSION_FLAG = 0x08   # flags bit 3: a session file (semcom.link.transcript) follows, not a stream
#: The most frames a version-1 stream (or session file) may declare (about 11 minutes at 24 fps);
#: decoders refuse more before decoding anything, and ``semcom encode`` refuses to write more. An
#: adaptive stream of a static scene may legitimately hold this many frames in about a hundred bytes,
#: so this limit, not the file's length, is what bounds the work of decoding one.
MAX_FRAMES = 1 << 14
_HEADER = struct.Struct(">3sBBHIffBHHI4sBf")
HEADER_SIZE = _HEADER.size + 4  # + CRC-32 of the header fields


def symbol_count(memory_size: int, residual: bool = False) -> int:
    """Number of symbols: ``M`` hits, ``M`` refined hits in residual mode, one miss."""
    return (2 if residual else 1) * memory_size + 1


def symbol_bits(memory_size: int, residual: bool = False) -> int:
    """Bits of a message's symbol: ``ceil(log2(M + 1))`` (``ceil(log2(2M + 1))`` in residual mode);
    0 while the memory is empty."""
    return (symbol_count(memory_size, residual) - 1).bit_length()


def symbol_bytes(memory_size: int, residual: bool = False) -> int:
    """Whole bytes that carry the symbol in the packet framing."""
    return (symbol_bits(memory_size, residual) + 7) // 8


@dataclass(frozen=True)
class HitMessage:
    """A hit: the index of the reused prototype."""

    index: int


@dataclass(frozen=True)
class RefineMessage:
    """A refined hit: the index of the reused prototype and the ``d`` residual codes (``b_res`` bits each,
    one byte per code in memory)."""

    index: int
    codes: bytes


@dataclass(frozen=True)
class MissMessage:
    """A miss: the quantised latent's codes (one byte per dimension)."""

    codes: bytes


Message = HitMessage | RefineMessage | MissMessage


def _symbol(msg: Message, memory_size: int, residual_bits: int) -> int:
    if isinstance(msg, MissMessage):
        return symbol_count(memory_size, residual_bits > 0) - 1
    if not 0 <= msg.index < memory_size:
        raise ValueError(f"index {msg.index} out of range for memory of size {memory_size}")
    if isinstance(msg, RefineMessage):
        if residual_bits == 0:
            raise ValueError("a refined hit needs residual_bits > 0")
        return memory_size + msg.index
    return msg.index


def _from_symbol(symbol: int, memory_size: int, residual_bits: int) -> type:
    if symbol >= symbol_count(memory_size, residual_bits > 0):
        raise WireFormatError(f"symbol {symbol} out of range for a memory of {memory_size} prototypes")
    if symbol < memory_size:
        return HitMessage
    return MissMessage if symbol == symbol_count(memory_size, residual_bits > 0) - 1 else RefineMessage


def _payload_bits(msg: Message, residual_bits: int) -> tuple[int, int]:
    """(value, bits) of what follows the symbol: 8-bit latent codes, or b_res-bit residual codes."""
    if isinstance(msg, HitMessage):
        return 0, 0
    width = 8 if isinstance(msg, MissMessage) else residual_bits
    value = 0
    for c in msg.codes:
        if c >> width:
            raise ValueError(f"code {c} does not fit in {width} bits")
        value = (value << width) | c
    return value, width * len(msg.codes)


def _codes_from(value: int, d: int, width: int) -> bytes:
    mask = (1 << width) - 1
    return bytes((value >> (width * (d - 1 - i))) & mask for i in range(d))


def encode_packet(msg: Message, memory_size: int, residual_bits: int = 0) -> bytes:
    """Packet framing: the symbol in whole bytes, then the payload bits in whole bytes."""
    n = symbol_bytes(memory_size, residual_bits > 0)
    value, nbits = _payload_bits(msg, residual_bits)
    return _symbol(msg, memory_size, residual_bits).to_bytes(n, "big") + value.to_bytes((nbits + 7) // 8, "big")


def encode_hit(index: int, memory_size: int) -> bytes:
    """Wire bytes (packet) of a hit on prototype ``index`` of a memory of ``memory_size``."""
    return encode_packet(HitMessage(index), memory_size)


def encode_miss(codes: bytes, memory_size: int) -> bytes:
    """Wire bytes (packet) of a miss carrying ``codes`` (d bytes)."""
    return encode_packet(MissMessage(bytes(codes)), memory_size)


def read_message(buf: bytes, offset: int, memory_size: int, d: int,
                 residual_bits: int = 0) -> tuple[Message, int]:
    """Parse one packet at ``buf[offset:]``; returns it and the offset just past it.

    Raises :class:`WireFormatError` for a truncated message or a symbol out of
    range; nothing is changed, so a rejected message leaves the memory as it was.
    """
    n = symbol_bytes(memory_size, residual_bits > 0)
    if offset + n > len(buf):
        raise WireFormatError(f"truncated message: need {n} bytes, {len(buf) - offset} left")
    symbol = int.from_bytes(buf[offset : offset + n], "big")
    kind = _from_symbol(symbol, memory_size, residual_bits)
    if kind is HitMessage:
        return HitMessage(symbol), offset + n
    width = 8 if kind is MissMessage else residual_bits
    size = (width * d + 7) // 8
    end = offset + n + size
    if end > len(buf):
        what = "miss" if kind is MissMessage else "refined hit"
        raise WireFormatError(f"truncated {what} message: need {n + size} bytes, {len(buf) - offset} left")
    value = int.from_bytes(buf[offset + n : end], "big")
    if value >> (width * d):
        raise WireFormatError("non-zero padding bits in a refined hit")
    codes = _codes_from(value, d, width)
    return (MissMessage(codes) if kind is MissMessage else RefineMessage(symbol - memory_size, codes)), end


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


def message_bits(msg: Message, memory_size: int, residual_bits: int = 0) -> int:
    """Length in bits of ``msg`` in the stream framing."""
    return symbol_bits(memory_size, residual_bits > 0) + _payload_bits(msg, residual_bits)[1]


def write_message(writer: BitWriter, msg: Message, memory_size: int, residual_bits: int = 0) -> None:
    """Append ``msg`` to a bit-packed stream."""
    writer.write(_symbol(msg, memory_size, residual_bits), symbol_bits(memory_size, residual_bits > 0))
    writer.write(*_payload_bits(msg, residual_bits))


def read_stream_message(reader: BitReader, memory_size: int, d: int, residual_bits: int = 0) -> Message:
    """Read one message from a bit-packed stream; a symbol out of range or a short stream is rejected."""
    symbol = reader.read(symbol_bits(memory_size, residual_bits > 0))
    kind = _from_symbol(symbol, memory_size, residual_bits)
    if kind is HitMessage:
        return HitMessage(symbol)
    width = 8 if kind is MissMessage else residual_bits
    codes = _codes_from(reader.read(width * d), d, width)
    return MissMessage(codes) if kind is MissMessage else RefineMessage(symbol - memory_size, codes)


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


def decode_message(data: bytes, memory_size: int, d: int, residual_bits: int = 0) -> Message:
    """Parse exactly one packet; trailing bytes are an error."""
    msg, end = read_message(data, 0, memory_size, d, residual_bits)
    if end != len(data):
        raise WireFormatError(f"message has {len(data) - end} unexpected trailing bytes")
    return msg


@dataclass(frozen=True)
class StreamHeader:
    """Everything the receiver must know before the first message (41 bytes, CRC-protected).

    ``frames`` is 0 when the length is unknown (a live link); ``weights`` is the
    4-byte fingerprint of the autoencoder the stream was encoded with.
    """

    config: LinkConfig
    frames: int = 0
    weights: bytes = b"\0\0\0\0"
    session: bool = False

    def __post_init__(self) -> None:
        if len(self.weights) != 4:
            raise ValueError(f"weights fingerprint must be 4 bytes, got {len(self.weights)}")
        if not 0 <= self.frames < 2**32:
            raise ValueError(f"frames={self.frames} does not fit the header (0 .. 2**32-1)")

    def to_bytes(self) -> bytes:
        c = self.config
        flags = (RULE_IDS[c.rule] | POLICY_IDS[c.full_policy] << 4 | (ADAPTIVE_FLAG if c.coding == "adaptive" else 0)
                 | (SESSION_FLAG if self.session else 0))
        body = _HEADER.pack(MAGIC, VERSION, flags, c.d, c.m_max, c.beta, c.tau, c.top_k,
                            c.height, c.width, self.frames, self.weights, c.residual_bits, c.tau_refine)
        return body + zlib.crc32(body).to_bytes(4, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> StreamHeader:
        """Parse and validate a header; a damaged or foreign header is a WireFormatError."""
        if len(data) < HEADER_SIZE:
            raise WireFormatError(f"truncated stream header: {len(data)} of {HEADER_SIZE} bytes")
        body, crc = data[: _HEADER.size], data[_HEADER.size : HEADER_SIZE]
        (magic, version, flags, d, m_max, beta, tau, top_k, h, w, frames, weights, residual_bits,
         tau_refine) = _HEADER.unpack(body)
        if magic != MAGIC:
            raise WireFormatError("not a semcom stream (bad magic bytes)")
        if version != VERSION:
            raise WireFormatError(f"unsupported stream version {version} (this semcom reads {VERSION})")
        if zlib.crc32(body).to_bytes(4, "big") != crc:
            raise WireFormatError("stream header is corrupted (CRC mismatch)")
        rules = {v: k for k, v in RULE_IDS.items()}
        policies = {v: k for k, v in POLICY_IDS.items()}
        coding = "adaptive" if flags & ADAPTIVE_FLAG else "fixed"
        session = bool(flags & SESSION_FLAG)
        flags &= ~(ADAPTIVE_FLAG | SESSION_FLAG)
        if (flags & 0xF) not in rules or (flags >> 4) not in policies:
            raise WireFormatError(f"stream header has unknown rule/policy flags {flags:#04x}")
        try:
            config = validated(LinkConfig, rule=rules[flags & 0xF], full_policy=policies[flags >> 4], coding=coding,
                               d=d, m_max=m_max, beta=beta, tau=tau, top_k=top_k, height=h, width=w,
                               residual_bits=residual_bits, tau_refine=tau_refine)
        except ConfigError as exc:
            raise WireFormatError(f"stream header holds an invalid config: {exc}") from None
        return cls(config, frames, weights, session)
