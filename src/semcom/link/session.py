"""The semantic link under faults: cues, refresh, memory checks and resync (Hopfield paper, Section IV-D).

Two endpoints exchange protected packets (:mod:`semcom.link.protected`) over
a forward channel that may flip bits or drop packets, and feedback messages
over an error-free, counted feedback channel. Per frame ``t``:

1. The transmitter decides the frame's message against its memory (which it
   does not change yet) and sends it as a ``DATA`` packet, with the SimHash cue
   of the referenced prototype (or of its readout, ``cue_of``) on a hit, and
   the digest of its memory when a check is due (every ``sync_every`` frames,
   and until one arrives).
2. The receiver rejects a lost or damaged packet and asks for a refresh; the
   transmitter answers with a ``REFRESH``: the frame's quantised latent, which
   both write into a new slot (the paper's "new transmission").
3. A digest that disagrees with the receiver's memory makes it *known bad*:
   the receiver asks for a resync before it decodes anything. The transmitter
   sends ``AUDIT`` chunks (a salted 16-bit hash per slot), the receiver lists
   the slots that differ, the transmitter sends their codes and recency one
   ``REPAIR`` at a time (kept even if the frame is dropped later), and the
   receiver checks the digest again (a new salt per round).
4. On a hit, the receiver verifies the cue against its own slot, tolerating
   ``cue_tolerance`` of the bits; if that fails it looks the cue up over all its
   slots (content-addressable) and, if found, swaps the two slots back (the
   repair of a permuted ID map); if not, it asks for a refresh of that slot,
   and both ends write the frame's quantised latent into it.
5. The receiver acknowledges what it decoded; only then does the transmitter
   apply the same message to its memory. A frame that suffers
   ``max_attempts`` damaged packets (or audit rounds) is dropped at both ends (the receiver shows
   its previous frame); a receiver still known bad resyncs at the next frame.

So the receiver never decodes from a memory it knows to be out of sync, and
the memories agree again at the first memory check after a fault (within
``sync_every`` frames) unless every packet of that exchange is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from semcom.config import FaultConfig, LinkConfig, ProtectionConfig
from semcom.errors import ConfigError, WireFormatError
from semcom.link import protected as pk
from semcom.link import wire
from semcom.link.endpoints import Receiver, Transmitter
from semcom.link.faults import Corruption, PacketChannel
from semcom.memory import PrototypeMemory
from semcom.memory.cues import SimHash, hamming
from semcom.quantization import dequantize, quantize

CUE_SEED = 0x5EC  # both ends draw the SimHash planes from this seed


def simhash_for(link: LinkConfig, protection: ProtectionConfig) -> SimHash | None:
    """The cue function both ends build from the shared config (None: no cues)."""
    return SimHash(link.d, protection.cue_bits, CUE_SEED) if protection.cue_bits else None


def cued(rule, memory: PrototypeMemory, cue_of: str, index: int | None = None) -> torch.Tensor:
    """What a cue fingerprints: the stored prototype ``mu_j`` (the paper) or the rule's readout (for
    ``hopfield``, ``r_j``, which depends on the whole memory); of slot ``index``, or of every slot."""
    if cue_of == "prototype":
        return memory.prototypes if index is None else memory.prototypes[index]
    return rule.readouts(memory) if index is None else rule.readout(index, memory)


def check_due(protection: ProtectionConfig, t: int) -> bool:
    """Whether a memory check falls due at frame ``t`` (both ends count frames)."""
    return protection.sync_every > 0 and t % protection.sync_every == 0


def receiver_corruption(faults: FaultConfig) -> Corruption:
    """The receiver-memory faults of ``faults``, seeded apart from the channel's."""
    return Corruption(faults, np.random.default_rng([faults.seed, 1]))


def digest32(memory: PrototypeMemory) -> int:
    """The 32-bit memory check: the first 4 bytes of the SHA-256 of prototypes and recency."""
    return int(memory.digest()[:8], 16)


def audit_salt(t: int, round_: int) -> int:
    """The salt of the ``round_``-th audit of frame ``t``: both ends count the resync requests."""
    return (t << 8) | (round_ & 0xFF)


def _codes_latent(codes: bytes, bits: int = 8) -> tuple[np.ndarray, torch.Tensor]:
    q = np.frombuffer(codes, dtype=np.uint8)
    return q, dequantize(q, bits)


@dataclass
class Feedback:
    """What the receiver sends back: an ACK (with what it decoded) or a request, and its bits."""

    bits: int
    ack: bool = False
    latent: torch.Tensor | None = None
    request: pk.Request | None = None
    slots: list[int] | None = None   # a resync's list of bad slots (bitmap)
    damaged: bool = False
    more: bool = False               # during an audit or a repair: next packet (or, if damaged, again)


class ProtectedTransmitter:
    """The transmitter's side of the protocol; its memory changes only when the receiver acknowledges."""

    def __init__(self, tx: Transmitter, protection: ProtectionConfig, simhash: SimHash | None):
        self.tx, self.p, self.simhash = tx, protection, simhash
        self.frame = pk.Protection(tx.config.d, tx.config.residual_bits, protection.cue_bits,
                                   protection.checksum_bits)

    digest_due = False

    def begin(self, z: torch.Tensor, check: bool) -> bytes:
        """The frame's ``DATA`` packet; ``check``: a memory check falls due at this frame."""
        tx, mem = self.tx, self.tx.memory
        self.digest_due |= check
        self.audits = 0
        self.t, before = tx.t, mem.snapshot()
        tx.send_latent(z)                      # decides; we undo its memory change until the ACK
        mem.restore(before)
        tx.t = self.t
        self.message, self.record, self.z = tx.last_message, tx.last, z
        self.digest = digest32(mem) if self.digest_due else None   # the memory as it is for the whole frame
        self.refresh_slot: int | None | bool = False   # False: no refresh pending
        self.phase = "data"
        cue = None
        if self.simhash is not None and not isinstance(self.message, wire.MissMessage):
            cue = int(self.simhash(cued(tx.rule, mem, self.p.cue_of, self.message.index)))
        return pk.encode_data(self.message, mem.size, self.t, self.frame, self.digest, cue)

    def answer(self, fb: Feedback) -> bytes:
        """The packet that answers a feedback: a refresh, an audit chunk, a slot repair, or the last again."""
        if not fb.damaged:  # the receiver got a valid packet, and with it the digest
            self.digest_due = False
        if fb.more and fb.damaged:
            return self.last
        if fb.request is pk.Request.RESYNC:
            self.audits += 1
            self.phase, self.first = "audit", 0
        elif fb.slots is not None:
            self.phase, self.queue = "repair", list(fb.slots)
        elif fb.more and self.phase == "audit":
            self.first += pk.AUDIT_CHUNK
        elif fb.more:
            self.queue.pop(0)
        else:
            self.phase = "refresh"
            if fb.request is pk.Request.CUE:
                self.refresh_slot = self.message.index
            elif self.refresh_slot is False:      # DAMAGED: a refresh into a new slot (resent as it was)
                self.refresh_slot = None
        self.last = self._packet()
        return self.last

    def _packet(self) -> bytes:
        mem = self.tx.memory
        if self.phase == "audit":
            salt = audit_salt(self.t, self.audits)
            hashes = [mem.slot_hash(s, salt) for s in range(self.first, self.first + pk.audit_count(mem.size,
                                                                                                    self.first))]
            return pk.encode_audit(digest32(mem), mem.size, self.first, hashes, self.t)
        if self.phase == "repair":
            s = self.queue[0]
            return pk.encode_repair(pk.SlotRepair(mem.codes[s].tobytes(), int(mem.last_used[s])), self.t)
        return pk.encode_refresh(self.refresh_slot, self._codes(), mem.size, self.t,
                                 self.digest if self.digest_due else None)

    def _codes(self) -> bytes:
        return quantize(self.z, self.tx.config.latent_bits).tobytes()

    def commit(self, delivered: bool) -> None:
        """Apply what the receiver acknowledged (the message, or the refresh), or nothing if dropped."""
        tx = self.tx
        if delivered:
            self.digest_due = False
        tx.t = self.t
        if delivered and self.refresh_slot is False:
            tx._apply(self.message)
        elif delivered:
            q, latent = _codes_latent(self._codes(), tx.config.latent_bits)
            tx.memory.write(latent, self.t, q, slot=self.refresh_slot)
        tx.t = self.t + 1


@dataclass
class RxStats:
    """What the receiver did in one frame."""

    cue_failures: int = 0
    lookups: int = 0
    refreshes: int = 0
    resyncs: int = 0
    repaired_slots: int = 0
    decoded_known_bad: bool = False
    kind: str = "lost"


class ProtectedReceiver:
    """The receiver's side: checks every packet, verifies cues, resyncs a memory it knows to be bad."""

    def __init__(self, rx: Receiver, protection: ProtectionConfig, simhash: SimHash | None):
        self.rx, self.p, self.simhash = rx, protection, simhash
        self.frame = pk.Protection(rx.config.d, rx.config.residual_bits, protection.cue_bits,
                                   protection.checksum_bits)
        self.known_bad = False
        self.digest_due = False

    def receive_frame(self, t: int, check: bool,
                      next_packet: Callable[[Feedback | None], bytes | None]) -> tuple[torch.Tensor | None,
                                                                                        list[Feedback]]:
        """Frame ``t``'s whole exchange: ``next_packet(None)`` is its first packet as received (None if lost),
        ``next_packet(fb)`` the transmitter's answer to the feedback ``fb``. Returns the decoded latent
        (None: the frame is dropped after ``max_attempts`` damaged packets) and every feedback sent."""
        self.begin(t, check)
        fbs: list[Feedback] = []
        damaged = 0
        for _ in range(self._packet_guard()):
            fb = self.on_packet(next_packet(fbs[-1] if fbs else None))
            fbs.append(fb)
            if fb.ack:
                return fb.latent, fbs
            damaged += fb.damaged
            if damaged >= self.p.max_attempts or self.audits > self.p.max_attempts:
                break
        self.rx.t = t + 1
        return None, fbs

    def _packet_guard(self) -> int:
        """A bound on the packets of one frame that the protocol never reaches (it stops after
        ``max_attempts`` damaged packets or audit rounds): a whole audit and repair of every slot per round."""
        m = self.rx.memory.size + 1
        return (self.p.max_attempts + 1) * (4 + -(-m // pk.AUDIT_CHUNK) + m) + self.p.max_attempts

    def begin(self, t: int, check: bool) -> None:
        """A new frame; ``check``: a memory check falls due at it (it stays due until a digest arrives)."""
        self.t = t
        self.digest_due |= check
        self.expect, self.held, self.last_request = "data", None, pk.Request.DAMAGED
        self.audits, self.hashes, self.bad = 0, [], []
        self.stats = RxStats()

    # -- the packets ---------------------------------------------------------------------------------

    def on_packet(self, packet: bytes | None) -> Feedback:
        mem = self.rx.memory
        try:
            if packet is None:
                raise WireFormatError("packet lost")
            if self.expect == "audit":
                return self._on_audit(pk.decode_audit(packet, self.t))
            if self.expect == "repair":
                return self._on_repair(pk.decode_repair(packet, self.rx.config.d, self.t))
            if self.expect == "data":
                parsed = pk.decode_data(packet, mem.size, self.t, self.frame, self.digest_due)
            else:
                parsed = pk.decode_refresh(packet, mem.size, self.rx.config.d, self.t, self.digest_due)
        except WireFormatError:
            return self._resend_request()
        if parsed.digest is not None:
            self.digest_due = False
            self.tx_digest = parsed.digest
            self.known_bad |= parsed.digest != digest32(mem)
        self.held = parsed
        if self.known_bad:
            return self._request(pk.Request.RESYNC)
        return self._decode()

    def _resend_request(self) -> Feedback:
        """A damaged or lost packet: ask again for what was expected."""
        if self.expect in ("audit", "repair"):
            return Feedback(pk.MORE_BITS, more=True, damaged=True)    # again, please
        fb = self._request(self.last_request if self.expect != "data" else pk.Request.DAMAGED)
        fb.damaged = True
        if fb.request is pk.Request.DAMAGED:
            self.expect = "refresh"
        return fb

    def _request(self, kind: pk.Request) -> Feedback:
        self.last_request = kind
        if kind is pk.Request.RESYNC:
            self.expect, self.hashes = "audit", []
            self.audits += 1
            self.stats.resyncs += 1
        else:
            self.expect = "refresh"
        return Feedback(pk.REQUEST_BITS, request=kind)

    # -- resync ----------------------------------------------------------------------------------------

    def _on_audit(self, audit: pk.AuditPacket) -> Feedback:
        """Collect the audit's chunks; then list the slots whose hashes differ (or that this memory lacks)."""
        if audit.first != len(self.hashes) or (self.hashes and audit.memory_size != self.tx_size):
            raise WireFormatError(f"audit chunk from slot {audit.first}, expected {len(self.hashes)}")
        self.tx_digest, self.tx_size = audit.digest, audit.memory_size
        self.hashes += audit.hashes
        if len(self.hashes) < audit.memory_size:
            return Feedback(pk.MORE_BITS, more=True)
        mem = self.rx.memory
        salt = audit_salt(self.t, self.audits)
        self.bad = [s for s, h in enumerate(self.hashes) if s >= mem.size or mem.slot_hash(s, salt) != h]
        mem.truncate(audit.memory_size)
        if not self.bad:
            return self._verified()
        self.expect = "repair"
        return Feedback(pk.bitmap_bits(audit.memory_size), slots=list(self.bad))

    def _on_repair(self, rep: pk.SlotRepair) -> Feedback:
        """Write one listed slot (kept even if the frame is dropped later); verify after the last."""
        mem, s = self.rx.memory, self.bad.pop(0)
        q, latent = _codes_latent(rep.codes, self.rx.config.latent_bits)
        # a slot past the end (this memory missed a write) is appended: ``bad`` is in slot order
        mem.write(latent, rep.last_used, q, slot=s if s < mem.size else None)
        self.stats.repaired_slots += 1
        return Feedback(pk.MORE_BITS, more=True) if self.bad else self._verified()

    def _verified(self) -> Feedback:
        if digest32(self.rx.memory) != self.tx_digest:
            return self._request(pk.Request.RESYNC)   # a hash collision hid a slot: audit again, new salt
        self.known_bad = False
        return self._decode()

    # -- decoding ----------------------------------------------------------------------------------------

    def _decode(self) -> Feedback:
        held, rx = self.held, self.rx
        rx.t = self.t
        self.stats.decoded_known_bad = self.known_bad
        if isinstance(held, pk.RefreshPacket):
            q, latent = _codes_latent(held.codes, rx.config.latent_bits)
            rx.memory.write(latent, self.t, q, slot=held.slot)
            self.stats.refreshes += 1
            self.stats.kind = "refresh"
            return self._ack(latent)
        msg = held.message
        if held.cue is not None and not self._cue_holds(msg.index, held.cue):
            return self._request(pk.Request.CUE)
        latent, _ = rx._apply(msg)
        self.stats.kind = {wire.HitMessage: "hit", wire.RefineMessage: "refined", wire.MissMessage: "miss"}[type(msg)]
        return self._ack(latent)

    def _ack(self, latent: torch.Tensor) -> Feedback:
        self.rx.t = self.t + 1
        return Feedback(pk.ACK_BITS, ack=True, latent=latent)

    def _cue_holds(self, index: int, cue: int) -> bool:
        """Verify the cue on slot ``index``; else look it up by content and swap the slot found back."""
        mem, rule, cue_of = self.rx.memory, self.rx.rule, self.p.cue_of
        limit = int(self.p.cue_tolerance * self.simhash.bits)
        if int(hamming(self.simhash(cued(rule, mem, cue_of, index)), cue)) <= limit:
            return True
        self.stats.cue_failures += 1
        dist = hamming(self.simhash(cued(rule, mem, cue_of)), cue)
        dist[index] = np.iinfo(dist.dtype).max
        best = int(np.argmin(dist))
        if dist[best] > limit:
            return False
        mem.swap(index, best)
        self.stats.lookups += 1
        return int(hamming(self.simhash(cued(rule, mem, cue_of, index)), cue)) <= limit


@dataclass(frozen=True)
class SessionRecord:
    """One frame of a faulty link, counted in bits on both links and in the paper's accounting."""

    t: int
    kind: str                 # hit | refined | miss | refresh | lost
    hit: bool                 # the transmitter's decision
    forward_bits: int
    feedback_bits: int
    repair_bits: int          # REFRESH/AUDIT/REPAIR packets and the requests and bitmaps asking for them
    paper_bits: int
    packets: int
    damaged: int              # packets lost or rejected
    refreshes: int
    cue_failures: int
    lookups: int
    resyncs: int
    repaired_slots: int
    corrupted: bool           # a memory corruption hit the receiver before this frame
    in_sync: bool             # the two memories are identical after this frame (observer's view)
    decoded_known_bad: bool   # the receiver decoded while it knew its memory was bad (must never be True)


@dataclass
class ProtectedLink:
    """A transmitter and a receiver joined by a faulty packet channel and a feedback channel."""

    link: LinkConfig
    protection: ProtectionConfig = field(default_factory=ProtectionConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)
    decoder: torch.nn.Module | None = None
    record: bool = False   # keep every packet as received, per frame, in ``log`` (a session transcript)

    def __post_init__(self) -> None:
        if self.link.coding != "fixed":
            raise ConfigError("invalid coding='adaptive': protected packets use fixed-length coding")
        simhash = simhash_for(self.link, self.protection)
        self.tx = ProtectedTransmitter(Transmitter(self.link), self.protection, simhash)
        self.rx = ProtectedReceiver(Receiver(self.link, self.decoder), self.protection, simhash)
        rng = np.random.default_rng(self.faults.seed)
        self.channel = PacketChannel(self.faults.ber, self.faults.erasure_rate, rng)
        self.corruption = receiver_corruption(self.faults)
        self.log: list[list[bytes | None]] | None = [] if self.record else None

    @property
    def t(self) -> int:
        return self.tx.tx.t

    def step(self, z: torch.Tensor) -> tuple[torch.Tensor | None, SessionRecord]:
        """One frame; returns what the receiver decoded (None: dropped) and the frame's record."""
        t, p = self.t, self.protection
        corrupted = self.corruption.due(t) and self.corruption.apply(self.rx.rx.memory)
        check = check_due(p, t)
        first, sent, received = self.tx.begin(z, check), [], []

        def deliver(fb: Feedback | None) -> bytes | None:
            packet = first if fb is None else self.tx.answer(fb)
            sent.append(8 * len(packet))
            received.append(self.channel(packet))
            return received[-1]

        latent, fbs = self.rx.receive_frame(t, check, deliver)
        self.tx.commit(latent is not None)
        if self.log is not None:
            self.log.append(received)
        requests = sum(fb.bits for fb in fbs if not fb.ack)
        s = self.rx.stats
        return latent, SessionRecord(
            t, s.kind if latent is not None else "lost", self.tx.record.hit, sum(sent), sum(fb.bits for fb in fbs),
            sum(sent[1:]) + requests, self._paper_bits(s) + requests, len(sent), sum(fb.damaged for fb in fbs),
            s.refreshes, s.cue_failures, s.lookups, s.resyncs, s.repaired_slots, corrupted,
            self.tx.tx.memory == self.rx.rx.memory, s.decoded_known_bad)

    def _paper_bits(self, s: RxStats) -> int:
        """Eq. (3) for the message, plus the cue on a hit, ``8d`` per refresh or repaired slot, 16 per audited
        slot (requests and bitmaps are added by the caller)."""
        d, m = self.link.d, self.tx.tx.memory.size
        bits = self.tx.record.paper_bits
        if self.tx.record.hit:
            bits += self.protection.cue_bits
        return bits + 8 * d * (s.refreshes + s.repaired_slots) + pk.SLOT_HASH_BITS * m * s.resyncs


def resync_delays(records: list[SessionRecord]) -> list[int | None]:
    """For each frame hit by a fault (a memory corruption, or a packet lost or damaged), the number of
    frames until the two memories are identical again: 0 if they are after that very frame, None if they
    never are within the records."""
    out = []
    for i, r in enumerate(records):
        if r.corrupted or r.damaged:
            out.append(next((j - i for j in range(i, len(records)) if records[j].in_sync), None))
    return out


def fault_summary(records: list[SessionRecord]) -> dict:
    """Totals of a run under faults: bits per frame on each link, repairs, losses and resync delays."""
    n = len(records)
    delays = resync_delays(records)
    done = [d for d in delays if d is not None]
    total = {k: sum(getattr(r, k) for r in records) for k in
             ("forward_bits", "feedback_bits", "repair_bits", "refreshes", "cue_failures", "lookups", "resyncs",
              "repaired_slots", "damaged")}
    return {"forward_bits_per_frame": total["forward_bits"] / n, "feedback_bits_per_frame": total["feedback_bits"] / n,
            "repair_bits_per_frame": total["repair_bits"] / n, "refreshes": total["refreshes"],
            "cue_failures": total["cue_failures"], "lookups": total["lookups"], "resyncs": total["resyncs"],
            "repaired_slots": total["repaired_slots"], "damaged_packets": total["damaged"],
            "frames_lost": sum(r.kind == "lost" for r in records),
            "faults": len(delays), "frames_to_resync": max(done) if done else (0 if not delays else None),
            "unresolved_faults": len(delays) - len(done),
            "out_of_sync_frames": sum(not r.in_sync for r in records),
            "decoded_known_bad": sum(r.decoded_known_bad for r in records)}
