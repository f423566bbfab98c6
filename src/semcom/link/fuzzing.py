"""Fuzzing the version-1 decoders: mutate valid streams and session files, reseal their checksums.

A stream whose CRCs are recomputed after editing is a valid-looking file anyone
can write, so the decoders must survive it: for any bytes, :func:`decode_v1`
returns frames or raises :class:`semcom.errors.SemcomError`, after decoding at
most the number of frames the stream's own limits allow (see
:meth:`semcom.link.endpoints.Receiver.iter_stream`). The hypothesis tests
(``tests/test_fuzz_streams.py``) and the campaign (``benchmarks/fuzz_campaign.py``)
share what is here:

* :func:`reseal` recomputes the header CRC-32, the session block's CRC-32 and the
  trailing CRC-32 of the payload (or session record), so mutations reach the decoders
  (:func:`reseal_framed` does the same for stream versions 2-4, :func:`edit` applies drawn edits);
* :func:`mutate` applies one to three random edits: bit flips (anywhere, or in the
  payload), bytes overwritten, inserted or deleted, truncation, appended bytes,
  header fields set to boundary values (``frames``, ``d``, ``m_max``, height, width,
  flags, ``residual_bits``, ``top_k``, ``tau``, ``beta``), a splice of two inputs;
* :func:`decode_v1` is ``semcom decode`` without the output file: the header checked
  against the model (weights fingerprint, ``d``, frame size), then a plain stream's
  frames (:meth:`Receiver.iter_stream`) or a session's replay, then the decoder.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from semcom.link import wire

#: Header fields by name: (index in the unpacked header, values worth trying).
_FIELD_INDEX = {"flags": 2, "d": 3, "m_max": 4, "beta": 5, "tau": 6, "top_k": 7, "height": 8, "width": 9,
                "frames": 10, "residual_bits": 12, "tau_refine": 13}
_BOUNDARY = {
    "flags": [0, 1, 2, 3, 0x10, 0x11, 0x80, 0x81, 0x88, 0x08, 0x0F, 0xF0, 0xFF],
    "d": [0, 1, 2, 63, 65, 128, 4096, 4097, 65535],
    "m_max": [0, 1, 2, 3, 255, 256, 2**24 - 1, 2**24, 2**32 - 1],
    "beta": [0.0, -1.0, 1e-30, 1.0, 1e6, 1e7, float("inf"), float("nan")],
    "tau": [0.0, 1e-30, 0.5, 0.999999, 1.0, float("nan"), -0.5],
    "top_k": [0, 1, 64, 65, 255],
    "height": [0, 8, 16, 48, 64, 80, 4096, 65535],
    "width": [0, 8, 16, 48, 64, 80, 4096, 65535],
    "frames": [0, 1, 2, 3, 59, 60, 61, 255, 1000, wire.MAX_FRAMES, wire.MAX_FRAMES + 1, 2**31, 2**32 - 1],
    "residual_bits": [0, 1, 2, 4, 8, 9, 255],
    "tau_refine": [0.0, 0.5, 0.99, 0.999999, 1.0, float("nan")],
}
MUTATIONS = ("flip", "flip_payload", "byte", "insert", "delete", "truncate", "append", "field", "splice")


def _session_block_size() -> int:
    from semcom.link.transcript import BLOCK_SIZE

    return BLOCK_SIZE


def is_session(data: bytes) -> bool:
    """Whether ``data``'s header flags say a session file follows."""
    return len(data) > 4 and bool(data[4] & wire.SESSION_FLAG)


def reseal(data: bytes) -> bytes:
    """``data`` with its header CRC, session block CRC (when the flags say session) and trailing CRC-32
    recomputed over whatever the bytes now hold; too-short inputs are resealed as far as they go."""
    out = bytearray(data)
    hs = wire._HEADER.size
    if len(out) < wire.HEADER_SIZE:
        return bytes(out)
    out[hs : wire.HEADER_SIZE] = zlib.crc32(bytes(out[:hs])).to_bytes(4, "big")
    start = wire.HEADER_SIZE
    if is_session(bytes(out)):
        bs = _session_block_size()
        if len(out) < start + bs:
            return bytes(out)
        out[start + bs - 4 : start + bs] = zlib.crc32(bytes(out[start : start + bs - 4])).to_bytes(4, "big")
        start += bs
    if len(out) >= start + wire.TRAILER_SIZE:
        out[-wire.TRAILER_SIZE :] = zlib.crc32(bytes(out[start : -wire.TRAILER_SIZE])).to_bytes(4, "big")
    return bytes(out)


def reseal_framed(data: bytes, header_size: int) -> bytes:
    """Stream versions 2-4 (``header + CRC-32`` of ``header_size`` bytes in all, payload, CRC-32 of the
    payload): both CRCs recomputed over whatever the bytes now hold; too-short inputs returned as they are."""
    if len(data) < header_size + 4:
        return bytes(data)
    body, payload = bytes(data[:header_size - 4]), bytes(data[header_size:-4])
    return body + zlib.crc32(body).to_bytes(4, "big") + payload + zlib.crc32(payload).to_bytes(4, "big")


def edit(data: bytes, edits) -> bytes:
    """``data`` after ``edits``, each ``(pos, value, op)``: op 0 sets byte ``pos`` (modulo the length) to
    ``value``, 1 truncates there, 2 appends ``value`` ``pos % 9 + 1`` times, 3 flips bit ``value % 8`` of it.
    The property tests of stream versions 3 and 4 draw ``edits`` with hypothesis."""
    x = bytearray(data)
    for pos, value, op in edits:
        if not x:
            break
        pos %= len(x)
        if op == 0:
            x[pos] = value
        elif op == 1:
            del x[pos:]
        elif op == 2:
            x += bytes([value]) * (pos % 9 + 1)
        else:
            x[pos] ^= 1 << (value % 8)
    return bytes(x)


def set_field(data: bytes, name: str, value) -> bytes:
    """``data`` with header field ``name`` set to ``value`` (not resealed)."""
    hs = wire._HEADER.size
    if len(data) < hs:
        return data
    fields = list(wire._HEADER.unpack(data[:hs]))
    fields[_FIELD_INDEX[name]] = value
    try:
        body = wire._HEADER.pack(*fields)
    except struct.error:
        return data
    return body + data[hs:]


def _payload_start(data: bytes) -> int:
    return wire.HEADER_SIZE + (_session_block_size() if is_session(data) else 0)


def mutate(data: bytes, rng: np.random.Generator, other: bytes | None = None) -> bytes:
    """One to three random edits of ``data`` (see the module docstring), resealed."""
    out = bytes(data)
    for _ in range(int(rng.integers(1, 4))):
        out = _mutate_once(out, rng, other)
    return reseal(out)


def _mutate_once(data: bytes, rng: np.random.Generator, other: bytes | None) -> bytes:
    kind = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
    buf = bytearray(data)
    n = len(buf)
    if n == 0:
        return bytes(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8))
    start = min(_payload_start(data), n - 1)
    if kind == "flip":
        bit = int(rng.integers(8 * n))
        buf[bit // 8] ^= 1 << (bit % 8)
    elif kind == "flip_payload":
        bit = int(rng.integers(8 * start, 8 * n))
        buf[bit // 8] ^= 1 << (bit % 8)
    elif kind == "byte":
        buf[int(rng.integers(n))] = int(rng.integers(256))
    elif kind == "insert":
        i = int(rng.integers(start, n + 1))
        buf[i:i] = bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
    elif kind == "delete":
        i = int(rng.integers(start, n))
        del buf[i : i + int(rng.integers(1, 9))]
    elif kind == "truncate":
        del buf[int(rng.integers(n)) :]
    elif kind == "append":
        buf += bytes(rng.integers(0, 256, int(rng.integers(1, 33)), dtype=np.uint8))
    elif kind == "field":
        name = list(_BOUNDARY)[int(rng.integers(len(_BOUNDARY)))]
        values = _BOUNDARY[name]
        value = values[int(rng.integers(len(values)))]
        if name in ("tau", "beta", "tau_refine"):
            value = float(value)
        return set_field(bytes(buf), name, value)
    elif kind == "splice" and other:
        i, j = int(rng.integers(start, n + 1)), int(rng.integers(0, len(other) + 1))
        return bytes(buf[:i]) + other[j:]
    return bytes(buf)


@dataclass
class Outcome:
    """What decoding one input did: ``frames`` decoded (accepted), or the error that rejected it."""

    frames: int
    declared: int
    error: Exception | None = None


def decode_v1(data: bytes, model, weights_id: bytes | None = None, counter: list[int] | None = None) -> Outcome:
    """Decode a version-1 stream or session file the way ``semcom decode`` does, without writing it.

    Returns an :class:`Outcome` with the frames decoded; a :class:`semcom.errors.SemcomError` is caught
    into ``Outcome.error``; any other exception propagates (a crash). ``counter[0]`` counts the frames
    decoded so far (also on the way to an error), so a caller can check the bound on the work done.
    """
    from semcom.errors import SemcomError
    from semcom.link.endpoints import Receiver
    from semcom.models import fingerprint

    counter = counter if counter is not None else [0]
    weights_id = fingerprint(model) if weights_id is None else weights_id
    declared = -1
    try:
        rx, header = Receiver.from_header(data[: wire.HEADER_SIZE], model.decoder, weights_id)
        declared = header.frames
        if header.session:
            from semcom.link.transcript import replay

            latents, prx = _replay_counted(data, model, weights_id, counter, replay)
            shown = [z if z is not None else torch.zeros(header.config.d) for z in latents]
            frames = prx.rx.decode(torch.stack(shown))
        else:
            latents = []
            for z in rx.iter_stream(data, header.frames, wire.HEADER_SIZE):
                counter[0] += 1
                latents.append(z)
            frames = rx.decode(torch.stack(latents))
    except SemcomError as exc:
        return Outcome(counter[0], declared, exc)
    return Outcome(len(frames), declared)


def _replay_counted(data, model, weights_id, counter, replay):
    """:func:`semcom.link.transcript.replay`, counting the frames it decodes."""
    from semcom.link import transcript

    original = transcript.frames_of

    def counted(d, frames):
        for packets in original(d, frames):
            counter[0] += 1
            yield packets

    transcript.frames_of = counted
    try:
        return replay(data, model.decoder, weights_id)
    finally:
        transcript.frames_of = original


def work_bound(data: bytes) -> int:
    """The most frames any decoder may decode from ``data`` before it returns or rejects it: the declared
    count, capped by :data:`wire.MAX_FRAMES` and, for a fixed-coded stream, by what its payload can hold
    (for a session, by its record's length in bytes)."""
    try:
        h = wire.StreamHeader.from_bytes(data[: wire.HEADER_SIZE])
    except Exception:  # noqa: BLE001 - an unreadable header: nothing may be decoded
        return 0
    bound = min(h.frames, wire.MAX_FRAMES)
    body = len(data) - _payload_start(data) - wire.TRAILER_SIZE
    if h.session:
        return max(0, min(bound, body))
    if h.config.coding == "fixed":
        bits = 8 * max(body, 0)
        bound = min(bound, 0 if bits < 8 * h.config.d else 1 + bits - 8 * h.config.d)
    return max(bound, 0)


def synthetic_latents(frames: int, d: int = 64, seed: int = 0) -> torch.Tensor:
    """Unit latents that drift between a few scenes, so a stream has misses, hits and refined hits."""
    g = torch.Generator().manual_seed(seed)
    scenes = torch.nn.functional.normalize(torch.randn(4, d, generator=g), dim=1)
    which = torch.randint(0, 4, (frames // 6 + 1,), generator=g).repeat_interleave(6)[:frames]
    z = scenes[which] + 0.02 * torch.randn(frames, d, generator=g)
    return torch.nn.functional.normalize(z, dim=1)


def seed_inputs(model, frames: int = 24) -> dict[str, bytes]:
    """Valid version-1 inputs to mutate: fixed and adaptive streams (plain, residual, a tiny memory) and
    session files (cues and a memory check; bit errors and a corruption), all for ``model``."""
    from semcom.config import FaultConfig, LinkConfig, ProtectionConfig
    from semcom.link import transcript
    from semcom.link.endpoints import Transmitter
    from semcom.link.session import ProtectedLink
    from semcom.models import fingerprint

    hp, wid = model.hparams, fingerprint(model)
    z = synthetic_latents(frames, hp["d"])
    base = dict(d=hp["d"], height=hp["height"], width=hp["width"], tau=0.97)
    configs = {
        "fixed": LinkConfig(**base),
        "adaptive": LinkConfig(**base, coding="adaptive"),
        "fixed_residual": LinkConfig(**base, residual_bits=2, tau_refine=0.999, rule="nearest"),
        "adaptive_residual": LinkConfig(**base, coding="adaptive", residual_bits=3, tau_refine=0.999),
        "adaptive_m2": LinkConfig(**base, coding="adaptive", m_max=2, rule="paper"),
    }
    out = {}
    for name, cfg in configs.items():
        tx = Transmitter(cfg, weights_id=wid)
        writer = tx.stream_writer()
        for zt in z:
            tx.send_to_stream(zt, writer)
        out[name] = wire.pack_stream(tx.header(frames), writer.getvalue())
    sessions = {
        "session_cues": (ProtectionConfig(cue_bits=32, sync_every=4), FaultConfig()),
        "session_faults": (ProtectionConfig(cue_bits=16, sync_every=4),
                           FaultConfig(ber=2e-3, corrupt_sigma=0.05, corrupt_ids=0.2, corrupt_at=frames // 2, seed=3)),
    }
    for name, (protection, faults) in sessions.items():
        cfg = configs["fixed"]
        link = ProtectedLink(cfg, protection, faults, model.decoder, record=True)
        for zt in z:
            link.step(zt)
        header = wire.StreamHeader(cfg, frames, wid, session=True).to_bytes()
        out[name] = transcript.pack_session(header, transcript.session_block(protection, faults), link.log)
    return out
