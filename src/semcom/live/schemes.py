"""Each scheme's endpoints as per-frame exchanges of a live link, with no socket in sight.

A sender turns one frame into one or more packets, each answered by the receiver's feedback (an ``exchange``:
an async callable ``(t, packet) -> feedback bytes`` that the client provides); a receiver session turns each
packet into its feedback and, when a frame is decoded, the frame. The endpoints are the library's own, so
the live link runs the same code as the simulation and the files:

* ``sphere64`` — the Hopfield paper's memory link in protected packets with feedback
  (:class:`~semcom.link.session.ProtectedTransmitter` / :class:`~semcom.link.session.ProtectedReceiver`):
  ACKs, refresh requests on damaged packets or failed cues, memory checks every ``sync_every`` frames and,
  on a mismatch, audits and repairs. The transmitter changes its memory only when the receiver acknowledges.
* a spatial model of the zoo (``hyperprior``) — the codec link (:mod:`semcom.schemes.codec_link`), one
  range-coded payload per frame (a fresh range coder per frame instead of one per file), acknowledged.

Both sides compute :func:`state_digest` of their memory; a resumed session compares them before anything
is decoded.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
import torch

from semcom.config import LinkConfig, ProtectionConfig, validated
from semcom.errors import ConfigError, SemcomError, WireFormatError
from semcom.frames import to_tensor, to_uint8
from semcom.link import wire
from semcom.link.endpoints import Receiver, Transmitter
from semcom.link.session import ProtectedReceiver, ProtectedTransmitter, check_due, simhash_for
from semcom.memory import PrototypeMemory
from semcom.quantization import dequantize

from . import feedback
from .framing import PacketError

Exchange = Callable[[int, bytes], Awaitable[bytes]]
#: A packet's frame number: the 32-bit ``t`` before the scheme's packet in a ``DATA`` payload.
FRAME_NUMBER = struct.Struct(">I")
#: Frames a sphere64 sender may skip between two packets (frames it dropped); more is a broken session.
MAX_FRAME_GAP = 1 << 10


def state_digest(memory: PrototypeMemory, t: int, *counts: np.ndarray) -> str:
    """SHA-256 of what both ends of a session must agree on: the memory, the frame counter and, for the
    codec link, its adaptive counts."""
    h = hashlib.sha256(memory.digest().encode())
    h.update(t.to_bytes(8, "big"))
    for c in counts:
        h.update(np.ascontiguousarray(c, dtype=np.float64).tobytes())
    return h.hexdigest()


def memory_state(memory: PrototypeMemory) -> dict[str, np.ndarray]:
    """A memory's exact state as arrays (for a state file)."""
    data, used, size, codes = memory.snapshot()
    return {"prototypes": data.numpy(), "last_used": used, "codes": codes, "size": np.array(size)}


def restore_memory(memory: PrototypeMemory, state: dict[str, np.ndarray]) -> None:
    size = int(state["size"])
    if not 0 <= size <= memory.m_max or state["prototypes"].shape != (size, memory.d):
        raise SemcomError(f"state holds {size} prototypes of shape {state['prototypes'].shape[1:]}, the link "
                          f"has m_max={memory.m_max} and d={memory.d}")
    memory.restore((torch.from_numpy(np.array(state["prototypes"], np.float32)),
                    np.array(state["last_used"], np.int64), size, np.array(state["codes"], np.uint8)))


@dataclass(frozen=True)
class Shown:
    """What the receiver shows after a frame, as the sender knows it: the frame (None: dropped) and its kind."""

    frame: np.ndarray | None
    kind: str
    packets: int = 1
    refreshes: int = 0
    protocol_feedback_bits: int = 0

    @property
    def hit(self) -> bool:
        return self.kind in ("hit", "refined")


@dataclass(frozen=True)
class Decoded:
    """What a receiver session did with a packet: the frame decoded (None: not yet, or dropped)."""

    t: int
    frame: np.ndarray | None = None
    kind: str | None = None        # hit | refined | miss | refresh | inter | intra | lost (once the frame ends)
    refreshes: int = 0
    lost: int = 0                  # frames given up on (this one, or ones the sender skipped)
    protocol_feedback_bits: int = 0
    repairs: dict | None = None    # once a sphere64 frame ends: its cue failures, lookups, resyncs, repaired slots


# -- sphere64: the memory link in protected packets -------------------------------------------------------


class SphereSender:
    """The transmitter of the sphere64 memory link (protected packets, feedback)."""

    scheme = "sphere64"

    def __init__(self, model, link: LinkConfig, protection: ProtectionConfig):
        from semcom.models import fingerprint

        self.model, self.link, self.protection = model, link, protection
        self.ptx = ProtectedTransmitter(Transmitter(link, model.encoder, fingerprint(model)), protection,
                                        simhash_for(link, protection))
        self.in_flight = False   # a frame's exchange is under way (its packets may or may not have arrived)

    @property
    def memory(self) -> PrototypeMemory:
        return self.ptx.tx.memory

    @property
    def t(self) -> int:
        return self.ptx.tx.t

    def header(self, frames: int = 0) -> bytes:
        return self.ptx.tx.header(frames)

    def hello(self) -> dict:
        return {"protection": self.protection.model_dump()}

    def digest(self) -> str:
        return state_digest(self.memory, self.t)

    def state(self) -> dict[str, np.ndarray]:
        return memory_state(self.memory) | {"t": np.array(self.t), "digest_due": np.array(self.ptx.digest_due)}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        restore_memory(self.memory, state)
        self.ptx.tx.t = int(state["t"])
        self.ptx.digest_due = bool(state["digest_due"])
        self.in_flight = False

    def pending_state(self) -> dict[str, np.ndarray] | None:
        """With a frame in flight (an exchange cut off): the state had the receiver acknowledged its last packet
        (``ProtectedTransmitter.commit(True)``, applied to a copy); None otherwise."""
        if not self.in_flight:
            return None
        ptx, tx = self.ptx, self.ptx.tx
        saved = (tx.memory.snapshot(), tx.t, ptx.digest_due)
        ptx.commit(True)
        after = self.state()
        tx.memory.restore(saved[0])
        tx.t, ptx.digest_due = saved[1], saved[2]
        return after

    @torch.no_grad()
    def show(self, latent: torch.Tensor) -> np.ndarray:
        """``g_phi(z^)`` of one latent, exactly as the receiver decodes it (a batch of one)."""
        return to_uint8(self.model.decoder(latent[None]))[0]

    async def send_frame(self, frame: np.ndarray, exchange: Exchange) -> Shown:
        """One frame's whole exchange: DATA, then the answers to each feedback until an ACK or a drop."""
        ptx, t = self.ptx, self.t
        with torch.no_grad():
            z = self.model.encoder(to_tensor(frame))[0]
        packet = ptx.begin(z, check_due(self.protection, t))
        packets, bits = 0, 0
        self.in_flight = True
        while True:
            packets += 1
            reply = feedback.decode(await exchange(t, packet), self.memory.size)
            fb = reply.feedback
            bits += fb.bits
            if fb.ack or reply.drop:
                ptx.observe(fb)      # the last feedback too: what of the resync arrived (tree protocol)
                break
            if packets > self._packet_guard():
                raise SemcomError(f"frame {t}: the receiver keeps asking after {packets} packets")
            packet = ptx.answer(fb)
        refresh = ptx.refresh_slot is not False
        latent = None
        if fb.ack:
            latent = dequantize(np.frombuffer(ptx._codes(), np.uint8), self.link.latent_bits) if refresh \
                else ptx.tx.last_latent
        ptx.commit(fb.ack)
        self.in_flight = False
        kind = "lost" if not fb.ack else ("refresh" if refresh else _kind(ptx.message))
        return Shown(None if latent is None else self.show(latent), kind, packets, int(fb.ack and refresh), bits)

    def _packet_guard(self) -> int:
        p, m = self.protection, self.memory.size + 1
        return max((p.max_attempts + 1) * (4 + m), p.resync_packets + 2 * p.max_attempts) + p.max_attempts + 8


def _kind(msg: wire.Message) -> str:
    return {wire.HitMessage: "hit", wire.RefineMessage: "refined", wire.MissMessage: "miss"}[type(msg)]


class SphereSession:
    """The receiver of the sphere64 memory link for one session: packets in, feedback and frames out."""

    scheme = "sphere64"

    def __init__(self, header: bytes, hello: dict, model):
        from semcom.models import fingerprint

        rx, h = Receiver.from_header(header, model.decoder, fingerprint(model))
        if h.config.coding != "fixed":
            raise WireFormatError("the live link sends protected packets, which use --coding fixed")
        protection = validated(ProtectionConfig, **dict(hello.get("protection") or {}))
        self.link, self.protection = h.config, protection
        self.prx = ProtectedReceiver(rx, protection, simhash_for(h.config, protection))
        self.frame_t: int | None = None
        self.damaged = self.packets = 0

    @property
    def memory(self) -> PrototypeMemory:
        return self.prx.rx.memory

    @property
    def t(self) -> int:
        return self.prx.rx.t

    def digest(self) -> str:
        return state_digest(self.memory, self.t)

    def resumed(self) -> None:
        """A resumed sender starts its next frame afresh."""
        self.frame_t = None

    def _check_audit(self, t: int, packet: bytes) -> None:
        """An audit of a memory larger than ``m_max`` (which no transmitter holds) would make the receiver
        collect that many slot hashes: refused before the protocol sees it."""
        size = _audit_size(t, packet)
        if size is not None and size > self.link.m_max:
            raise PacketError(f"audit of a memory of {size} prototypes, the link's m_max is {self.link.m_max}")

    def on_data(self, t: int, packet: bytes) -> tuple[bytes, Decoded]:
        """Feed one packet of frame ``t``; the feedback to send and what was decoded."""
        prx, lost = self.prx, 0
        if t != self.frame_t:
            if not self.t <= t <= self.t + MAX_FRAME_GAP:
                raise PacketError(f"packet for frame {t}, the receiver is at frame {self.t}")
            lost = t - self.t                                   # frames the sender skipped
            prx.begin(t, check_due(self.protection, t))
            self.frame_t, self.damaged, self.packets = t, 0, 0
        if prx.expect == "audit":
            self._check_audit(t, packet)
        fb = prx.on_packet(packet)
        self.packets += 1
        self.damaged = prx.data_damaged if prx.tree else self.damaged + fb.damaged
        tx_size = getattr(prx, "tx_size", self.memory.size)
        st = prx.stats
        if fb.ack:
            self.frame_t = None
            frame = prx.rx.decode(fb.latent[None])[0]
            return feedback.encode(fb, memory_size=tx_size), Decoded(t, frame, st.kind, st.refreshes, lost, fb.bits,
                                                                    _repairs(st))
        p = self.protection
        if self.damaged >= p.max_attempts or prx.audits > p.max_attempts or self.packets > prx._packet_guard():
            prx.rx.t, self.frame_t = t + 1, None                # dropped at both ends: memories unchanged
            return feedback.encode(fb, drop=True, memory_size=tx_size), Decoded(t, None, "lost", 0, lost + 1, fb.bits,
                                                                               _repairs(st))
        return feedback.encode(fb, memory_size=tx_size), Decoded(t, None, None, 0, lost, fb.bits)


def _audit_size(t: int, packet: bytes) -> int | None:
    """The transmitter's memory size an ``AUDIT`` packet declares (None: not a valid audit)."""
    from semcom.link import protected as pk

    try:
        return pk.decode_audit(packet, t).memory_size
    except WireFormatError:
        return None


def _repairs(stats) -> dict:
    return {k: getattr(stats, k) for k in ("cue_failures", "lookups", "resyncs", "repaired_slots")}


def memory_bytes(m_max: int, d: int) -> int:
    """Bytes a full memory of ``m_max`` prototypes of ``d`` floats holds (vectors, codes, recency)."""
    return m_max * (d * 5 + 8)


# -- links that range-code each frame: the codec link, the token link ---------------------------------------


def _new_range_encoder():
    import constriction

    return constriction.stream.queue.RangeEncoder()


def _counts(ep, names: tuple[str, ...]) -> list[np.ndarray]:
    """An endpoint's adaptive counts, the recency ranks' cut to the memory's size (they grow with it, lazily
    and at different moments at the two ends)."""
    from semcom.link.coding import grown

    return [grown(ep.rank_counts, ep.memory.size)[: ep.memory.size] if n == "rank_counts" else getattr(ep, n)
            for n in names]


class RangeCodedSender:
    """The transmitter of a link that range-codes frames against its memory with adaptive counts (the codec
    link, the token link): one payload per frame (a fresh range coder's words), acknowledged. ``tx`` is the
    scheme's transmitter, ``counts`` the names of its adaptive counts, ``show`` turns what its ``send``
    returns into the frame the receiver shows."""

    def __init__(self, tx, scheme: str, header: bytes, counts: tuple[str, ...], show=None):
        self.tx, self.scheme, self._header, self.counts = tx, scheme, header, counts
        self.show = show or (lambda out: out)
        self.in_flight = False

    @property
    def memory(self) -> PrototypeMemory:
        return self.tx.memory

    @property
    def t(self) -> int:
        return self.tx.t

    def header(self, frames: int = 0) -> bytes:
        return self._header

    def hello(self) -> dict:
        return {}

    def digest(self) -> str:
        return state_digest(self.memory, self.t, *_counts(self.tx, self.counts))

    def state(self) -> dict[str, np.ndarray]:
        return (memory_state(self.memory) | {"t": np.array(self.t)}
                | {n: getattr(self.tx, n).copy() for n in self.counts} | _extra_state(self.tx))

    def restore(self, state: dict[str, np.ndarray]) -> None:
        missing = [n for n in ("t", "size", "prototypes", *self.counts) if n not in state]
        if missing:
            raise SemcomError(f"state lacks {', '.join(missing)} (written by another version of semcom?)")
        restore_memory(self.memory, state)
        self.tx.t = int(state["t"])
        for n in self.counts:
            setattr(self.tx, n, np.array(state[n], np.float64))
        if hasattr(self.tx, "load_extra_state"):
            self.tx.load_extra_state(state)
        self.in_flight = False

    def pending_state(self) -> dict[str, np.ndarray] | None:
        """With a frame in flight: the state had the receiver decoded it (the transmitter applied it when it
        coded it); None otherwise."""
        return self.state() if self.in_flight else None

    def payload(self, frame: np.ndarray) -> tuple[bytes, np.ndarray, str]:
        """Code one frame: its payload, what the receiver shows, its kind."""
        shown = self.show(self.tx.send(frame))
        data = self.tx.encoder.get_compressed().astype(">u4").tobytes()
        self.tx.encoder = _new_range_encoder()
        return data, shown, self.tx.records[-1].kind

    async def send_frame(self, frame: np.ndarray, exchange: Exchange) -> Shown:
        t = self.t
        data, shown, kind = self.payload(frame)
        self.in_flight = True
        reply = feedback.decode(await exchange(t, data), 0)
        if not reply.feedback.ack:
            raise SemcomError(f"frame {t}: the receiver did not acknowledge it")
        self.in_flight = False
        return Shown(shown, kind, 1, 0, reply.feedback.bits)


class RangeCodedSession:
    """The receiver of a range-coded link for one session: ``rx`` is the scheme's receiver (its
    ``_receive(decoder)`` decodes one frame), ``show`` turns what that returns into a frame."""

    def __init__(self, rx, scheme: str, counts: tuple[str, ...], kinds: tuple[str, ...], show):
        self.rx, self.scheme, self.counts, self.kinds, self.show = rx, scheme, counts, kinds, show

    @property
    def memory(self) -> PrototypeMemory:
        return self.rx.memory

    @property
    def t(self) -> int:
        return self.rx.t

    def digest(self) -> str:
        return state_digest(self.memory, self.t, *_counts(self.rx, self.counts))

    def resumed(self) -> None:
        pass

    def on_data(self, t: int, packet: bytes) -> tuple[bytes, Decoded]:
        """Decode frame ``t``'s payload; a payload that does not decode leaves the session as it was."""
        import constriction

        from semcom.link.session import Feedback

        rx = self.rx
        if t != rx.t:
            raise PacketError(f"packet for frame {t}, the receiver is at frame {rx.t}")
        if not packet or len(packet) % 4:
            raise PacketError(f"payload of {len(packet)} bytes is not a whole number of 32-bit words")
        before = (rx.memory.snapshot(), {n: getattr(rx, n).copy() for n in self.counts}, rx.t, _extra_state(rx))
        try:
            decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(packet, ">u4").astype(np.uint32))
            out = rx._receive(decoder)
            if not decoder.maybe_exhausted():
                raise WireFormatError("unexpected data after the frame")
        except (WireFormatError, ValueError, RuntimeError, AssertionError) as exc:
            rx.memory.restore(before[0])
            for n, v in before[1].items():
                setattr(rx, n, v)
            rx.t = before[2]
            if before[3]:
                rx.load_extra_state(before[3])
            raise PacketError(f"frame {t} does not decode: {exc}") from None
        kind = self.kinds[int(np.argmax(rx.kind_counts - before[1]["kind_counts"]))]
        return feedback.encode(Feedback(1, ack=True)), Decoded(t, self.show(out), kind, 0, 0, 1)


_CODEC_COUNTS = ("kind_counts", "rank_counts", "tile_counts", "base_counts")


def _extra_state(ep) -> dict[str, np.ndarray]:
    """An endpoint's state beside its memory and counts (the codec link's motion state), if it has any."""
    return ep.extra_state() if hasattr(ep, "extra_state") else {}
_TOKEN_COUNTS = ("kind_counts", "rank_counts", "flag_counts", "token_counts")


def codec_sender(model, config) -> RangeCodedSender:
    """The transmitter of the codec link (:mod:`semcom.schemes.codec_link`) over a spatial model."""
    from semcom.schemes.codec_link import CodecTransmitter

    if config.bframes:
        raise ConfigError(f"bframes={config.bframes}: the live link codes each frame as it comes, so it takes 0")
    tx = CodecTransmitter(config, model)
    return RangeCodedSender(tx, config.model, tx.header(1), _CODEC_COUNTS)


def codec_session(header: bytes, hello: dict, model) -> RangeCodedSession:
    """The receiver of the codec link for one session."""
    from semcom.schemes.codec_link import KINDS, CodecReceiver

    rx, h = CodecReceiver.open(header, model)
    return RangeCodedSession(rx, h.config.model, _CODEC_COUNTS, KINDS, rx.show)


def _token_frames(model):
    """Token grid -> the frame a receiver shows (the VQ-VAE's decoder on a batch of one)."""
    from semcom.schemes.codebook import CodebookReceiver

    decoder = CodebookReceiver(model)
    return lambda grid: decoder.frames(grid[None])[0]


def token_sender(model, config) -> RangeCodedSender:
    """The transmitter of the memory link over the codebook's token grid (:mod:`semcom.schemes.token_link`)."""
    from semcom.models.weights import fingerprint
    from semcom.schemes.token_link import TokenHeader, TokenTransmitter

    tx = TokenTransmitter(config, model)
    header = TokenHeader(config, model.J, fingerprint(model), 1).to_bytes()
    return RangeCodedSender(tx, f"codebook-memory:{config.variant}", header, _TOKEN_COUNTS, _token_frames(model))


def token_session(header: bytes, hello: dict, model) -> RangeCodedSession:
    """The receiver of the token link for one session."""
    from semcom.schemes.token_link import KINDS, TokenReceiver

    rx, h = TokenReceiver.open(header, model)
    return RangeCodedSession(rx, f"codebook-memory:{h.config.variant}", _TOKEN_COUNTS, KINDS, _token_frames(model))


# -- the codebook alone (stream version 3): index labels, acknowledged -----------------------------------------


class LabelSender:
    """The transmitter of the codebook scheme (:mod:`semcom.schemes.codebook`): each frame's index labels as
    one packet, acknowledged. It holds no memory (an empty one, so that digests and state files work as for
    the other schemes); a session is only its frame counter."""

    def __init__(self, model):
        from semcom.schemes.codebook import CodebookHeader, CodebookReceiver, CodebookTransmitter

        self.tx, self.rx = CodebookTransmitter(model), CodebookReceiver(model)
        hp = model.hparams
        self._header = CodebookHeader(hp["variant"], model.J, self.tx.weights_id, 1, hp["height"],
                                      hp["width"]).pack()
        self.scheme = f"codebook:{hp['variant']}"
        self.memory = PrototypeMemory(1, 1)
        self.t = 0
        self.in_flight = False

    def header(self, frames: int = 0) -> bytes:
        return self._header

    def hello(self) -> dict:
        return {}

    def digest(self) -> str:
        return state_digest(self.memory, self.t)

    def state(self) -> dict[str, np.ndarray]:
        return memory_state(self.memory) | {"t": np.array(self.t)}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        self.t = int(state["t"])
        self.in_flight = False

    def pending_state(self) -> dict[str, np.ndarray] | None:
        return memory_state(self.memory) | {"t": np.array(self.t + 1)} if self.in_flight else None

    def payload(self, frame: np.ndarray) -> tuple[bytes, np.ndarray]:
        """One frame's labels, packed (``H/8 W/8 log2 J`` bits), and what the receiver shows."""
        from semcom.schemes.codebook import indices_to_bits

        idx = self.tx.indices(frame[None])
        return np.packbits(indices_to_bits(idx, self.tx.model.J)).tobytes(), self.rx.frames(idx)[0]

    async def send_frame(self, frame: np.ndarray, exchange: Exchange) -> Shown:
        t = self.t
        data, shown = self.payload(frame)
        self.in_flight = True
        reply = feedback.decode(await exchange(t, data), 0)
        if not reply.feedback.ack:
            raise SemcomError(f"frame {t}: the receiver did not acknowledge it")
        self.in_flight = False
        self.t += 1
        return Shown(shown, "labels", 1, 0, reply.feedback.bits)


class LabelSession:
    """The receiver of the codebook scheme for one session: a packet of exactly one frame's labels decodes to
    that frame; anything else is refused and changes nothing."""

    def __init__(self, header: bytes, model):
        from semcom.errors import WeightsError
        from semcom.schemes.codebook import CodebookReceiver, parse_header

        h = parse_header(header)
        self.rx = CodebookReceiver(model)
        if h.variant != model.hparams["variant"] or h.J != model.J or h.weights_id != self.rx.weights_id:
            raise WeightsError(f"stream is for {h.variant} J={h.J} weights {h.weights_id.hex()}; this server holds "
                               f"{model.hparams['variant']} J={model.J} weights {self.rx.weights_id.hex()}")
        self.grid = (h.height // 8, h.width // 8)
        self.nbits = h.indices_per_frame * int(math.log2(h.J))
        self.scheme = f"codebook:{h.variant}"
        self.memory = PrototypeMemory(1, 1)
        self.t = 0

    def digest(self) -> str:
        return state_digest(self.memory, self.t)

    def resumed(self) -> None:
        pass

    def on_data(self, t: int, packet: bytes) -> tuple[bytes, Decoded]:
        from semcom.link.session import Feedback
        from semcom.schemes.codebook import bits_to_indices

        if t != self.t:
            raise PacketError(f"packet for frame {t}, the receiver is at frame {self.t}")
        if len(packet) != -(-self.nbits // 8):
            raise PacketError(f"payload of {len(packet)} bytes, one frame's labels are {-(-self.nbits // 8)}")
        bits = np.unpackbits(np.frombuffer(packet, np.uint8))[: self.nbits]
        idx = torch.from_numpy(bits_to_indices(bits, self.rx.model.J).reshape(1, *self.grid))
        frame = self.rx.frames(idx)[0]
        self.t += 1
        return feedback.encode(Feedback(1, ack=True)), Decoded(t, frame, "labels", 0, 0, 1)


def label_session(header: bytes, hello: dict, model) -> LabelSession:
    """The receiver of the codebook scheme for one session."""
    return LabelSession(header, model)
