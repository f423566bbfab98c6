"""The two endpoints of the semantic link: :class:`Transmitter` and :class:`Receiver`.

The one rule: the receiver sees only bytes. The transmitter turns a frame into
a message (:mod:`semcom.link.wire`); the receiver turns the message back into
a latent and a frame, using its own copy of the memory. Both memories change
only through what the message says, so they stay identical frame by frame.

Per frame ``t`` (Section II-B of the Hopfield paper):

* hit  (``H_t = 1``): send ``j*``; both sides reconstruct ``rule.readout(j*)``
  and mark slot ``j*`` as used at ``t``;
* miss (``H_t = 0``): send the codes of ``Q(z_t)``; both sides reconstruct
  ``Q(z_t)`` and store it (append while ``M < m_max``, then per ``full_policy``);
* refined hit (residual mode, a hit scoring below ``tau_refine``): send ``j*`` and
  the residual codes; both sides reconstruct ``normalize(readout + e^)``
  (:mod:`semcom.quantization.residual`); the memory changes as on a hit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from semcom.config import LinkConfig
from semcom.errors import SourceError, WeightsError, WireFormatError
from semcom.frames import to_tensor, to_uint8
from semcom.link import wire
from semcom.link.coding import StreamWriter, stream_reader, stream_writer
from semcom.memory import PrototypeMemory, make_rule
from semcom.metrics.bits import paper_bits
from semcom.quantization import dequantize, quantize
from semcom.quantization.residual import quantize_residual, refine, residual_range


@dataclass(frozen=True)
class FrameRecord:
    """What happened to one frame: decision, bits (stream, packet, eq. 3), memory size after it."""

    t: int
    hit: bool
    index: int | None
    score: float
    wire_bits: int
    packet_bits: int
    paper_bits: int
    memory_size: int
    stored_slot: int | None
    refined: bool = False


#: Latents :meth:`Receiver.decode` runs through the decoder at once.
DECODE_BATCH = 256


def decoder_dims(decoder: nn.Module | None) -> tuple[int, int, int] | None:
    """``(d, height, width)`` that a sphere decoder (:class:`semcom.models.SphericalDecoder`) takes and
    makes; None for a decoder whose dimensions are unknown."""
    from semcom.models.autoencoder import DOWNSAMPLING

    expand, grid = getattr(decoder, "expand", None), getattr(decoder, "grid", None)
    if not isinstance(expand, nn.Linear) or not isinstance(grid, tuple) or len(grid) != 2:
        return None
    return int(expand.in_features), int(grid[0]) * DOWNSAMPLING, int(grid[1]) * DOWNSAMPLING


class _Endpoint:
    """State both endpoints share: the config, the memory, the rule, the frame counter."""

    def __init__(self, config: LinkConfig):
        self.config = config
        self.memory = PrototypeMemory(config.d, config.m_max, config.full_policy, config.index)
        self.rule = make_rule(config)
        self.t = 0

    @property
    def residual_range(self) -> float:
        return residual_range(self.config.tau, self.config.d)

    def _apply(self, msg: wire.Message) -> tuple[torch.Tensor, int | None]:
        """What both ends do with a message: the latent ``z^_t`` (eq. 2) and the slot written, if any."""
        if isinstance(msg, wire.MissMessage):
            codes = np.frombuffer(msg.codes, dtype=np.uint8)
            latent = dequantize(codes, self.config.latent_bits)
            return latent, self.memory.write(latent, self.t, codes)
        latent = self.rule.readout(msg.index, self.memory)
        if isinstance(msg, wire.RefineMessage):
            latent = refine(latent, np.frombuffer(msg.codes, dtype=np.uint8), self.config.residual_bits,
                            self.residual_range)
        self.memory.touch(msg.index, self.t)
        return latent, None


class Transmitter(_Endpoint):
    """Encodes frames with ``f_theta`` and turns each latent into a wire message."""

    def __init__(self, config: LinkConfig, encoder: nn.Module | None = None, weights_id: bytes = b"\0" * 4):
        super().__init__(config)
        self.encoder = encoder
        self.weights_id = weights_id
        self.last: FrameRecord | None = None
        self.last_latent: torch.Tensor | None = None
        self.last_message: wire.Message | None = None

    def header(self, frames: int = 0) -> bytes:
        """The stream header that opens the link (``frames`` = 0 when unknown)."""
        return wire.StreamHeader(self.config, frames, self.weights_id).to_bytes()

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> torch.Tensor:
        """``z = f_theta(x)`` for a batch of uint8 frames (B, H, W, 3) -> (B, d)."""
        if self.encoder is None:
            raise WeightsError("this transmitter has no encoder; use send_latent")
        return self.encoder(to_tensor(frames))

    def send(self, frame: np.ndarray) -> bytes:
        """Encode one frame and return its message."""
        return self.send_latent(self.encode(frame)[0])

    def send_latent(self, z: torch.Tensor, writer: StreamWriter | None = None) -> bytes:
        """Decide hit or miss for the unit-norm latent ``z`` (d,), update the memory, return the packet.

        With a stream ``writer``, the message is also appended to it (coded against the memory as it
        was before the message). ``self.last`` records the decision and bits; ``self.last_latent`` is
        exactly what the receiver will reconstruct.
        """
        z = self._check_latent(z)
        m_prev, b_res = self.memory.size, self.config.residual_bits
        decision = self.rule.decide(z, self.memory)
        message = self._message(z, decision)
        packet = wire.encode_packet(message, m_prev, b_res)
        if writer is not None:
            writer.write(message, self.memory)
        latent, slot = self._apply(message)
        refined = isinstance(message, wire.RefineMessage)
        self.last = FrameRecord(self.t, decision.hit, decision.index, decision.score,
                                wire.message_bits(message, m_prev, b_res), 8 * len(packet),
                                paper_bits(decision.hit, m_prev, self.config.d, self.config.latent_bits)
                                + (self.config.d * b_res if refined else 0),
                                self.memory.size, slot, refined)
        self.last_latent, self.last_message = latent, message
        self.t += 1
        return packet

    def _message(self, z: torch.Tensor, decision) -> wire.Message:
        """Miss, hit, or (residual mode, score below ``tau_refine``) refined hit."""
        if not decision.hit:
            return wire.MissMessage(quantize(z, self.config.latent_bits).tobytes())
        if self.config.residual_bits and decision.score < self.config.tau_refine:
            e = z - self.rule.readout(decision.index, self.memory)
            codes = quantize_residual(e, self.config.residual_bits, self.residual_range)
            return wire.RefineMessage(decision.index, codes.tobytes())
        return wire.HitMessage(decision.index)

    def _check_latent(self, z: torch.Tensor) -> torch.Tensor:
        z = torch.as_tensor(z)
        if z.shape != (self.config.d,):
            raise SourceError(f"latent of shape {tuple(z.shape)}, expected ({self.config.d},)")
        if not bool(torch.isfinite(z).all()):
            raise SourceError("latent contains NaN or infinite values")
        return z.to(torch.float32)

    def stream_writer(self) -> StreamWriter:
        """A writer for this link's stream coding (``config.coding``)."""
        return stream_writer(self.config)

    def send_to_stream(self, z: torch.Tensor, writer: StreamWriter) -> None:
        """:meth:`send_latent`, appending the message to a stream ``writer``."""
        self.send_latent(z, writer)


class Receiver(_Endpoint):
    """Turns wire messages back into latents (and frames with ``g_phi``)."""

    def __init__(self, config: LinkConfig, decoder: nn.Module | None = None):
        super().__init__(config)
        self.decoder = decoder

    @classmethod
    def from_header(cls, header: bytes, decoder: nn.Module | None = None,
                    weights_id: bytes | None = None) -> tuple[Receiver, wire.StreamHeader]:
        """A receiver configured by a stream header; refuses a stream made with other weights."""
        h = wire.StreamHeader.from_bytes(header)
        if weights_id is not None and h.weights != weights_id:
            raise WeightsError(f"stream was encoded with weights {h.weights.hex()}, "
                               f"this receiver has {weights_id.hex()}")
        dims = decoder_dims(decoder)
        if dims is not None and dims != (h.config.d, h.config.height, h.config.width):
            c = h.config
            raise WireFormatError(f"stream declares d={c.d} and {c.height}x{c.width} frames, but this receiver's "
                                  f"model has d={dims[0]} and {dims[1]}x{dims[2]} frames")
        return cls(h.config, decoder), h

    def receive_latent(self, message: bytes) -> torch.Tensor:
        """Decode exactly one packet into ``z^_t``; a rejected packet leaves the memory untouched."""
        return self._receive(wire.decode_message(message, self.memory.size, self.config.d,
                                                 self.config.residual_bits))

    def _receive(self, msg: wire.Message) -> torch.Tensor:
        latent, _ = self._apply(msg)
        self.t += 1
        return latent

    def iter_stream(self, data: bytes, frames: int, offset: int = wire.HEADER_SIZE) -> Iterator[torch.Tensor]:
        """Decode the ``frames`` bit-packed messages of a whole stream (header, payload, CRC), one latent
        per frame.

        The payload CRC is checked before anything is decoded, and the payload must end with fewer
        than 8 zero padding bits; anything else is rejected.

        Any bytes, bounded work: whatever ``data`` holds, this yields latents or raises
        :class:`WireFormatError`. Before decoding, ``frames`` must lie in ``1 ..`` :data:`wire.MAX_FRAMES`
        and, with fixed coding, be at most ``1 + 8 * len(payload) - 8 * d`` (the first frame is a miss of
        ``8d`` bits, every later one costs at least one bit). With adaptive coding, decoding stops with an
        error once the range decoder has used up its words and decoded more than
        :data:`semcom.link.coding.EXHAUSTED_BITS` bits beyond them. So at most ``min(frames, MAX_FRAMES)``
        messages are decoded, each in ``O(M d)`` time with ``M <= min(frames, m_max)`` prototypes of ``d``
        floats held.
        """
        if frames <= 0:
            raise WireFormatError("stream does not announce its number of frames")
        if frames > wire.MAX_FRAMES:
            raise WireFormatError(f"stream declares {frames} frames, more than the limit of {wire.MAX_FRAMES}")
        payload = wire.stream_payload(data, offset)
        reader = stream_reader(self.config, payload)
        bound = reader.max_frames(self.config.d)
        if bound is not None and frames > bound:
            raise WireFormatError(f"stream declares {frames} frames, but its {len(payload)}-byte payload "
                                  f"can hold at most {bound}")
        for _ in range(frames):
            try:
                msg = reader.read(self.memory, self.config.d)
            except WireFormatError as exc:
                raise WireFormatError(f"frame {self.t}: {exc}") from None
            yield self._receive(msg)
        reader.finish()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """``x^ = g_phi(z^)`` for latents (B, d) -> uint8 frames (B, H, W, 3).

        Repeated latents (the hits of a static scene) are decoded once, and the rest in batches of
        :data:`DECODE_BATCH`, so a long stream costs the decoder its distinct latents and its peak memory
        is its uint8 frames, not the decoder's activations."""
        if self.decoder is None:
            raise WeightsError("this receiver has no decoder")
        latents = torch.as_tensor(latents)
        if latents.ndim != 2 or latents.shape[1] != self.config.d:
            raise WireFormatError(f"latents of shape {tuple(latents.shape)}, expected (B, {self.config.d})")
        if len(latents) <= DECODE_BATCH:
            return to_uint8(self.decoder(latents))
        unique, inverse = torch.unique(latents, dim=0, return_inverse=True)
        frames = np.concatenate([to_uint8(self.decoder(unique[i : i + DECODE_BATCH]))
                                 for i in range(0, len(unique), DECODE_BATCH)])
        return frames[inverse.numpy()]

    def receive(self, message: bytes) -> np.ndarray:
        """Decode one message into a uint8 frame (H, W, 3)."""
        return self.decode(self.receive_latent(message)[None])[0]
