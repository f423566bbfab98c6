"""The semantic link over a physical channel, with a repair path for what the channel destroys.

Packets of a :class:`Transmitter` cross a :class:`semcom.phy.DigitalLink`
(channel coding, modulation, channel, CRC per codeword). A packet that fails
its CRC is *erased*: the receiver never decodes it, so it never decodes a
garbled frame. Repair is stop-and-wait ARQ over a feedback channel (one
ACK/NACK bit per attempt, counted): a NACKed packet is sent again, up to
``max_attempts`` times. A frame that is still lost is dropped at both ends:
the transmitter restores the memory it had before the frame (it knows, from
the NACKs, that the receiver never applied the message), both frame counters
advance, and the receiver shows its last decoded frame again. Both memories
therefore stay identical whatever the channel does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from semcom.link.endpoints import Receiver, Transmitter


@dataclass(frozen=True)
class AirRecord:
    """One frame over the air: delivered or not, attempts, channel uses, bits on the forward and feedback links."""

    t: int
    delivered: bool
    attempts: int
    channel_uses: int
    forward_bits: int
    feedback_bits: int


class OverTheAir:
    """A transmitter and a receiver joined by a digital link with ARQ (see the module docstring)."""

    def __init__(self, tx: Transmitter, rx: Receiver, phy, max_attempts: int = 4, snr_db: float | None = None):
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.tx, self.rx, self.phy = tx, rx, phy
        self.max_attempts, self.snr_db = max_attempts, snr_db

    def step(self, z: torch.Tensor) -> tuple[torch.Tensor | None, AirRecord]:
        """Send one latent; returns what the receiver decoded (None if the frame was lost) and the record."""
        t, before = self.tx.t, self.tx.memory.snapshot()
        packet = self.tx.send_latent(z)
        uses = attempts = 0
        received = None
        while received is None and attempts < self.max_attempts:
            result = self.phy.transmit([packet], snr_db=self.snr_db)
            uses += result.channel_uses
            attempts += 1
            received = result.packets[0]
        record = AirRecord(t, received is not None, attempts, uses, 8 * len(packet) * attempts, attempts)
        if received is None:  # lost for good: undo at the transmitter, skip at the receiver
            self.tx.memory.restore(before)
            self.rx.t += 1
            return None, record
        return self.rx.receive_latent(received), record
