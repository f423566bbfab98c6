"""How a stream's messages become bits: fixed-length (the paper) or adaptive arithmetic coding.

Both coders see the memory *before* the message is applied, which both ends
hold identically, so every probability the adaptive coder uses is
reproducible at the receiver from what it has already decoded.

``fixed``
    The v1 message bits back to back (:mod:`semcom.link.wire`): a symbol in
    ``ceil(log2(M + 1))`` bits, then ``8d`` code bits on a miss.

``adaptive``
    A range coder (constriction's ``RangeEncoder``, 32-bit words) with two
    adaptive frequency models, counts starting at 1 and incremented after each
    use:

    * the symbol: a hit is coded as the *recency rank* of its prototype (0 =
      most recently used; ties broken by slot), a miss as one more symbol; so
      the "same prototype again" of a stable scene costs a fraction of a bit;
    * the ``d`` codes of a miss: one shared model over the 256 code values,
      fixed within a miss and updated after it.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from semcom.config import Coding
from semcom.errors import WireFormatError
from semcom.link import wire
from semcom.memory import PrototypeMemory


class StreamWriter(Protocol):
    def write(self, msg: wire.Message, memory: PrototypeMemory) -> None: ...
    def getvalue(self) -> bytes: ...


class StreamReader(Protocol):
    def read(self, memory: PrototypeMemory, d: int) -> wire.Message: ...
    def finish(self) -> None: ...


class FixedWriter:
    """Fixed-length message bits (eq. 3 plus the hit/miss symbol), bit-packed."""

    def __init__(self) -> None:
        self.bits = wire.BitWriter()

    def write(self, msg: wire.Message, memory: PrototypeMemory) -> None:
        wire.write_message(self.bits, msg, memory.size)

    def getvalue(self) -> bytes:
        return self.bits.getvalue()


class FixedReader:
    def __init__(self, payload: bytes) -> None:
        self.bits = wire.BitReader(payload)

    def read(self, memory: PrototypeMemory, d: int) -> wire.Message:
        return wire.read_stream_message(self.bits, memory.size, d)

    def finish(self) -> None:
        r = self.bits
        if r.remaining >= 8 or r.read(r.remaining) != 0:
            raise WireFormatError(f"{(r.remaining + 7) // 8} unexpected bytes after the last frame")


class _AdaptiveModels:
    """The adaptive frequency counts both ends keep in step."""

    def __init__(self) -> None:
        self.rank_counts = np.ones(0, dtype=np.float64)
        self.miss_count = 1.0
        self.code_counts = np.ones(256, dtype=np.float64)

    def symbol_model(self, m: int):
        import constriction

        if len(self.rank_counts) < m:
            self.rank_counts = np.concatenate([self.rank_counts, np.ones(m - len(self.rank_counts))])
        counts = np.append(self.rank_counts[:m], self.miss_count)
        return constriction.stream.model.Categorical(counts / counts.sum(), perfect=False)

    def code_model(self):
        import constriction

        return constriction.stream.model.Categorical(self.code_counts / self.code_counts.sum(), perfect=False)

    def update(self, symbol: int, m: int, codes: np.ndarray | None) -> None:
        if symbol == m:
            self.miss_count += 1
            self.code_counts += np.bincount(codes, minlength=256)
        else:
            self.rank_counts[symbol] += 1


def recency_rank(memory: PrototypeMemory, slot: int) -> int:
    """Rank of ``slot`` among stored prototypes, most recently used first (ties: lower slot first)."""
    used = memory.last_used
    return int(np.sum(used > used[slot]) + np.sum(used[:slot] == used[slot]))


def slot_of_rank(memory: PrototypeMemory, rank: int) -> int:
    """Inverse of :func:`recency_rank`."""
    order = np.lexsort((np.arange(memory.size), -memory.last_used))
    return int(order[rank])


class AdaptiveWriter:
    """Range-coded messages with adaptive models (see the module docstring)."""

    def __init__(self) -> None:
        import constriction

        self.encoder = constriction.stream.queue.RangeEncoder()
        self.models = _AdaptiveModels()

    def write(self, msg: wire.Message, memory: PrototypeMemory) -> None:
        m = memory.size
        symbol = recency_rank(memory, msg.index) if isinstance(msg, wire.HitMessage) else m
        codes = None
        if m > 0:
            self.encoder.encode(np.array([symbol], dtype=np.int32), self.models.symbol_model(m))
        if symbol == m:
            codes = np.frombuffer(msg.codes, dtype=np.uint8).astype(np.int32)
            self.encoder.encode(codes, self.models.code_model())
        self.models.update(symbol, m, codes)

    def getvalue(self) -> bytes:
        return self.encoder.get_compressed().astype(">u4").tobytes()


class AdaptiveReader:
    def __init__(self, payload: bytes) -> None:
        import constriction

        if len(payload) % 4:
            raise WireFormatError(f"adaptive payload of {len(payload)} bytes is not a whole number of 32-bit words")
        words = np.frombuffer(payload, dtype=">u4").astype(np.uint32)
        self.decoder = constriction.stream.queue.RangeDecoder(words)
        self.models = _AdaptiveModels()

    def read(self, memory: PrototypeMemory, d: int) -> wire.Message:
        m = memory.size
        symbol = int(self.decoder.decode(self.models.symbol_model(m), 1)[0]) if m > 0 else 0
        if symbol < m:
            self.models.update(symbol, m, None)
            return wire.HitMessage(slot_of_rank(memory, symbol))
        codes = np.asarray(self.decoder.decode(self.models.code_model(), d), dtype=np.int64)
        self.models.update(symbol, m, codes)
        return wire.MissMessage(codes.astype(np.uint8).tobytes())

    def finish(self) -> None:
        if not self.decoder.maybe_exhausted():
            raise WireFormatError("unexpected data after the last frame of the adaptive stream")


def stream_writer(coding: Coding) -> StreamWriter:
    return AdaptiveWriter() if coding == "adaptive" else FixedWriter()


def stream_reader(coding: Coding, payload: bytes) -> StreamReader:
    return AdaptiveReader(payload) if coding == "adaptive" else FixedReader(payload)
