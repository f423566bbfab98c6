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

That is the ``flat`` resync (``ProtectionConfig.resync``). The ``tree`` resync (the default) changes
steps 3 to 5 so that a repair neither depends on luck nor stalls the link:

* every ``DATA`` and ``REFRESH`` packet carries a ``check_bits`` keyed hash of the transmitter's whole
  memory, salted with the frame (:func:`semcom.link.hashtree.memory_check`), and a hit of a rule whose
  readout is one slot (``nearest``, ``paper``) one of that slot (:func:`~semcom.link.hashtree.slot_check`):
  a corruption is known at the first packet after it, and a corrupted slot at its first use;
* a receiver that knows its memory is bad locates the differing slots by descending a salted hash tree
  (:mod:`semcom.link.hashtree`: ``TREE`` packets of node hashes, answered level by level with the bitmap of
  the children that differ, ``ceil(log_F M) + 1`` levels at most) and repairs them several per bulk
  ``REPAIR``. The resync has its own budget, ``resync_packets`` per frame, apart from the frame's
  ``max_attempts``; both ends keep its state (the round, the level and nodes in doubt, the slots left to
  repair) across frames, so a frame that ends mid-resync costs nothing already done; a new round (a new
  salt) starts only when the memory check still fails once the round is over;
* the frame's own packet is then decoded if it does not depend on a slot in doubt: a miss or a refresh
  never does, a hit on a slot whose check matches does; any other hit (and every ``hopfield`` hit, whose
  readout depends on every slot) asks for a refresh of its slot instead, so nothing is decoded from a
  slot the receiver cannot vouch for;
* the memory is declared good again as soon as a memory check of the frame matches it (after the repairs,
  or at a later frame).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from semcom.config import FaultConfig, LinkConfig, ProtectionConfig
from semcom.errors import ConfigError, WireFormatError
from semcom.link import hashtree as ht
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


def tree_mode(protection: ProtectionConfig) -> bool:
    """Whether the link runs the ``tree`` resync (memory checks on and ``resync="tree"``)."""
    return protection.sync_every > 0 and protection.resync == "tree"


def slot_local(rule) -> bool:
    """Whether the rule's readout of a hit is its slot's prototype alone (``nearest``, ``paper``), so that a
    check of that slot vouches for the decode; ``hopfield``'s depends on every slot."""
    from semcom.memory.rules import DecisionRule

    return type(rule).readout is DecisionRule.readout


def framing(config: LinkConfig, protection: ProtectionConfig, rule) -> pk.Protection:
    """The packet parameters both ends derive from the shared configs."""
    tree = tree_mode(protection)
    return pk.Protection(config.d, config.residual_bits, protection.cue_bits, protection.checksum_bits,
                         protection.check_bits if tree else 0, tree and slot_local(rule))


def tree_salt(round_: int) -> int:
    """The key of the hash tree in resync round ``round_`` (both ends read the round from the packets)."""
    return (0x7EE << 16) | (round_ % (1 << pk.ROUND_BITS))


@dataclass
class Resync:
    """The state of a ``tree`` resync, kept by both ends across frames: the round, then the level whose
    node hashes are being compared (``query``: the nodes of the level above still in doubt, ``chunk``: the
    next TREE packet of the level), or the slots to repair and the position reached."""

    round: int | None = None
    phase: str = "tree"               # tree | repair | idle (the round is over)
    level: int | None = None          # None: before the round's first TREE packet (receiver)
    query: list[int] = field(default_factory=lambda: [0])
    chunk: int = 0
    diff: list[int] = field(default_factory=list)    # receiver: the level's differing nodes so far
    queue: list[int] = field(default_factory=list)
    pos: int = 0

    def descend(self, nodes: list[int]) -> None:
        """The answer to a level: expand ``nodes`` at the level below, or repair them (slots)."""
        if not nodes:
            self.phase = "idle"
        elif self.level > 0:
            self.query, self.level, self.chunk, self.diff = list(nodes), self.level - 1, 0, []
        else:
            self.phase, self.queue, self.pos = "repair", list(nodes), 0


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
        self.frame = framing(tx.config, protection, tx.rule)
        self.tree = tree_mode(protection)
        self.rs: Resync | None = None
        self.rounds = 0
        self.last_kind = "data"

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
        cue = slot_check = None
        hit = not isinstance(self.message, wire.MissMessage)
        if self.simhash is not None and hit:
            cue = int(self.simhash(cued(tx.rule, mem, self.p.cue_of, self.message.index)))
        self.check = ht.memory_check(mem, self.t, self.frame.check_bits) if self.frame.check_bits else None
        if self.frame.slot_checks and hit:
            slot_check = ht.slot_check(mem, self.message.index, self.t, self.frame.check_bits)
        self.last_kind = "data"
        return pk.encode_data(self.message, mem.size, self.t, self.frame, self.digest, cue, self.check, slot_check)

    def answer(self, fb: Feedback) -> bytes:
        """The packet that answers a feedback: a refresh, an audit chunk, a slot repair, or the last again."""
        if self.tree:
            return self._answer_tree(fb)
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

    # -- the tree resync ---------------------------------------------------------------------------------

    def observe(self, fb: Feedback) -> None:
        """Take in a feedback (every one, the frame's last included): what the receiver got of the packet
        before it, and where its resync stands (``tree`` protocol; nothing to do for ``flat``)."""
        if not self.tree:
            return
        if not fb.damaged and self.last_kind in ("data", "refresh"):
            self.digest_due = False              # the receiver got a valid packet, and with it the digest
        rs = self.rs
        if rs is not None and not fb.damaged and self.last_kind == "resync":
            if rs.phase == "tree":
                rs.chunk += 1
            elif rs.phase == "repair":
                rs.pos += self.batch
                if rs.pos >= len(rs.queue):
                    rs.phase = "idle"
        if fb.slots is not None and rs is not None and rs.phase == "tree":
            rs.descend(fb.slots)
        self.last_kind = "answered"

    def _answer_tree(self, fb: Feedback) -> bytes:
        self.observe(fb)
        if fb.request is pk.Request.RESYNC:
            self.rounds += 1
            self.rs = Resync(self.rounds, level=ht.depth(self.tx.memory.size, self.p.fanout) - 1)
        if fb.request is pk.Request.RESYNC or (fb.request is None and not fb.ack and self.rs is not None
                                               and self.rs.phase != "idle"):
            self.last_kind = "resync"
            self.last = self._resync_packet()
            return self.last
        if fb.request is pk.Request.CUE:
            self.refresh_slot = self.message.index
        elif self.refresh_slot is False:      # DAMAGED: a refresh into a new slot (resent as it was)
            self.refresh_slot = None
        self.last_kind = "refresh"
        mem = self.tx.memory
        self.last = pk.encode_refresh(self.refresh_slot, self._codes(), mem.size, self.t,
                                      self.digest if self.digest_due else None, self.check, self.frame.check_bits)
        return self.last

    def _resync_packet(self) -> bytes:
        mem, rs, f = self.tx.memory, self.rs, self.p.fanout
        m = mem.size
        if rs.phase == "tree":
            nodes = ht.children(rs.query, rs.level, f, m)[rs.chunk * ht.CHUNK : (rs.chunk + 1) * ht.CHUNK]
            hashes = ht.hashes(mem, nodes, rs.level, f, m, tree_salt(rs.round))
            return pk.encode_tree(pk.TreePacket(rs.round, rs.level, m, rs.chunk, tuple(hashes)), self.t)
        slots = [s for s in rs.queue[rs.pos : rs.pos + pk.repair_batch(mem.d)] if s < m]
        self.batch = len(slots)
        reps = tuple(pk.SlotRepair(mem.codes[s].tobytes(), int(mem.last_used[s])) for s in slots)
        return pk.encode_repairs(pk.BulkRepair(rs.round, rs.pos, reps), self.t)

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
    aware: bool = False        # the receiver knew (at some point of the frame) that its memory was bad
    tree_hashes: int = 0       # node hashes received in TREE packets
    resync_packets: int = 0    # TREE and REPAIR packets of the frame (tree protocol)


class ProtectedReceiver:
    """The receiver's side: checks every packet, verifies cues, resyncs a memory it knows to be bad."""

    def __init__(self, rx: Receiver, protection: ProtectionConfig, simhash: SimHash | None):
        self.rx, self.p, self.simhash = rx, protection, simhash
        self.frame = framing(rx.config, protection, rx.rule)
        self.tree = tree_mode(protection)
        self.known_bad = False
        self.digest_due = False
        self.rs: Resync | None = None
        self.data_damaged = self.resync_fails = 0

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
            if self.tree:
                if self.data_damaged >= self.p.max_attempts:
                    break
                continue
            damaged += fb.damaged
            if damaged >= self.p.max_attempts or self.audits > self.p.max_attempts:
                break
        self.rx.t = t + 1
        return None, fbs

    def _packet_guard(self) -> int:
        """A bound on the packets of one frame that the protocol never reaches (it stops after
        ``max_attempts`` damaged packets or audit rounds): a whole audit and repair of every slot per round
        (``tree``: the frame's resync budget, and a refresh per attempt after it)."""
        if self.tree:
            return self.p.resync_packets + 2 * self.p.max_attempts + 2
        m = self.rx.memory.size + 1
        return (self.p.max_attempts + 1) * (4 + -(-m // pk.AUDIT_CHUNK) + m) + self.p.max_attempts

    def dropped(self) -> bool:
        """Whether the frame under way must be dropped (``tree``: its own packets failed ``max_attempts``
        times; the resync's failures count against its own budget)."""
        return self.data_damaged >= self.p.max_attempts if self.tree else False

    def begin(self, t: int, check: bool) -> None:
        """A new frame; ``check``: a memory check falls due at it (it stays due until a digest arrives)."""
        self.t = t
        self.digest_due |= check
        self.expect, self.held, self.last_request = "data", None, pk.Request.DAMAGED
        self.audits, self.hashes, self.bad = 0, [], []
        self.stats = RxStats(aware=self.known_bad)
        self.data_damaged = self.resync_used = 0
        self.frame_check = self.frame_digest = None

    # -- the tree protocol -------------------------------------------------------------------------------

    def _on_packet_tree(self, packet: bytes | None) -> Feedback:
        if self.expect in ("tree", "repair"):
            self.resync_used += 1
            self.stats.resync_packets += 1
            self.answer_slots, self.answer_bits = None, 0
            try:
                if packet is None:
                    raise WireFormatError("packet lost")
                if self.expect == "tree":
                    self._on_tree(pk.decode_tree(packet, self.t))
                else:
                    self._on_repairs(pk.decode_repairs(packet, self.rx.config.d, self.t))
            except WireFormatError:
                self.resync_fails += 1
                if self.resync_fails >= self.p.resync_packets:   # the two ends disagree on the resync: afresh
                    self.rs, self.resync_fails = None, 0
                return self._next(damaged=True)
            self.resync_fails = 0
            return self._next(damaged=False, slots=self.answer_slots, bits=self.answer_bits)
        mem = self.rx.memory
        try:
            if packet is None:
                raise WireFormatError("packet lost")
            if self.expect == "data":
                parsed = pk.decode_data(packet, mem.size, self.t, self.frame, self.digest_due)
            else:
                parsed = pk.decode_refresh(packet, mem.size, self.rx.config.d, self.t, self.digest_due,
                                           self.frame.check_bits)
        except WireFormatError:
            self.data_damaged += 1
            return self._next(damaged=True)
        if parsed.digest is not None:
            self.digest_due = False
            self.frame_digest = parsed.digest
        self.frame_check = parsed.check
        self.held = parsed
        self._verify()
        return self._next(damaged=False)

    def _matches(self) -> bool | None:
        """Whether this memory matches the frame's memory check (and digest, if one came); None: no check yet."""
        if self.frame_check is None:
            return None
        mem = self.rx.memory
        return (ht.memory_check(mem, self.t, self.frame.check_bits) == self.frame_check
                and (self.frame_digest is None or digest32(mem) == self.frame_digest))

    def _verify(self) -> None:
        ok = self._matches()
        if ok is None:
            return
        if ok:
            self.known_bad, self.rs = False, None
        else:
            self.known_bad = self.stats.aware = True

    def _resync_wanted(self) -> bool:
        if not self.known_bad or self.resync_used >= self.p.resync_packets:
            return False
        # a round that is over starts again only when the frame's check says the memory still differs
        return self.rs is None or self.rs.phase != "idle" or self.frame_check is not None

    def _next(self, damaged: bool, slots: list[int] | None = None, bits: int = 0) -> Feedback:
        """The feedback after a packet (``damaged``: it was lost or rejected): more resync within the frame's
        budget, else the frame's own packet: decoded, or a refresh asked for."""
        if self._resync_wanted():
            if self.rs is None or self.rs.phase == "idle":
                self.rs = Resync()
                self.stats.resyncs += 1
                fb = Feedback(bits + pk.REQUEST_BITS, request=pk.Request.RESYNC)
            else:
                fb = Feedback(bits or pk.MORE_BITS, more=slots is None)
            self.expect = "tree" if self.rs.phase == "tree" else "repair"
        elif self.held is None:
            self.expect = "refresh"
            fb = Feedback(bits + pk.REQUEST_BITS, request=pk.Request.DAMAGED)
        else:
            fb = self._decode_tree()
            fb.bits += bits
        fb.damaged, fb.slots = damaged, slots
        return fb

    def _on_tree(self, tp: pk.TreePacket) -> None:
        rs, f, mem = self.rs, self.p.fanout, self.rx.memory
        if tp.memory_size > mem.m_max:
            raise WireFormatError(f"TREE packet of a memory of {tp.memory_size}, m_max is {mem.m_max}")
        if rs.level is None:
            if tp.chunk or tp.level != ht.depth(tp.memory_size, f) - 1:
                raise WireFormatError(f"TREE packet (level {tp.level}, chunk {tp.chunk}) cannot open a round")
            level = tp.level
        elif (tp.round, tp.level, tp.chunk) != (rs.round, rs.level, rs.chunk):
            raise WireFormatError(f"TREE packet of round {tp.round} level {tp.level} chunk {tp.chunk}, expected "
                                  f"{rs.round}/{rs.level}/{rs.chunk}")
        else:
            level = rs.level
        every = ht.children(rs.query, level, f, tp.memory_size)
        nodes = every[tp.chunk * ht.CHUNK : (tp.chunk + 1) * ht.CHUNK]
        if len(nodes) != len(tp.hashes):
            raise WireFormatError(f"TREE packet holds {len(tp.hashes)} hashes, the chunk has {len(nodes)} nodes")
        if rs.level is None:
            rs.round, rs.level = tp.round, tp.level
        mem.truncate(tp.memory_size)
        self.tx_size = tp.memory_size
        rs.diff += ht.differing(mem, nodes, list(tp.hashes), level, f, tp.memory_size, tree_salt(rs.round))
        rs.chunk += 1
        self.stats.tree_hashes += len(nodes)
        if rs.chunk >= ht.chunk_count(len(every)):        # the level is complete: answer with its bitmap
            self.answer_slots, self.answer_bits = list(rs.diff), max(1, len(every))
            rs.descend(rs.diff)
            if rs.phase == "idle":
                self._verify()

    def _on_repairs(self, bulk: pk.BulkRepair) -> None:
        rs, mem = self.rs, self.rx.memory
        want = rs.queue[rs.pos : rs.pos + pk.repair_batch(mem.d)]
        if bulk.round != rs.round or bulk.first != rs.pos or len(bulk.repairs) != len(want):
            raise WireFormatError(f"REPAIR of round {bulk.round} from {bulk.first} ({len(bulk.repairs)} slots), "
                                  f"expected {rs.round} from {rs.pos} ({len(want)})")
        if any(s > mem.size + i for i, s in enumerate(want)):
            raise WireFormatError("REPAIR of a slot past the end of this memory")
        for s, rep in zip(want, bulk.repairs, strict=True):
            q, latent = _codes_latent(rep.codes, self.rx.config.latent_bits)
            if s >= mem.size and mem.slot_for_write() != mem.size:
                raise WireFormatError("REPAIR of a slot past the end of a full memory")
            mem.write(latent, rep.last_used, q, slot=s if s < mem.size else None)
            self.stats.repaired_slots += 1
        rs.pos += len(want)
        if rs.pos >= len(rs.queue):
            rs.phase = "idle"
            self._verify()

    def _decode_tree(self) -> Feedback:
        """The frame's own packet: decoded unless it is a hit the receiver cannot vouch for (then a refresh
        of its slot is asked for)."""
        held, mem = self.held, self.rx.memory
        if self.known_bad and isinstance(held, pk.DataPacket) and not isinstance(held.message, wire.MissMessage):
            index = held.message.index
            ok = (self.frame.slot_checks and held.slot_check is not None
                  and ht.slot_check(mem, index, self.t, self.frame.check_bits) == held.slot_check)
            if not ok:
                self.stats.cue_failures += 1
                self.expect, self.last_request = "refresh", pk.Request.CUE
                return Feedback(pk.REQUEST_BITS, request=pk.Request.CUE)
            return self._decode(verified=True)
        return self._decode()

    # -- the packets ---------------------------------------------------------------------------------

    def on_packet(self, packet: bytes | None) -> Feedback:
        if self.tree:
            return self._on_packet_tree(packet)
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

    def _decode(self, verified: bool = False) -> Feedback:
        """Decode the held packet; ``verified``: a hit whose slot check matched (it reads no slot in doubt)."""
        held, rx = self.held, self.rx
        rx.t = self.t
        reads_memory = isinstance(held, pk.DataPacket) and not isinstance(held.message, wire.MissMessage)
        self.stats.decoded_known_bad = self.known_bad and (not self.tree or (reads_memory and not verified))
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
    decoded_known_bad: bool   # the receiver decoded from memory it knew to be bad (must never be True)
    differed: bool = False    # the two memories differed at the start of the frame (observer's view)
    silent: bool = False      # decoded while they differed, the receiver unaware its memory was bad
    wrong: bool = False       # decoded a latent other than the transmitter's (observer's view)


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
        differed = self.tx.tx.memory != self.rx.rx.memory
        check = check_due(p, t)
        first, sent, received = self.tx.begin(z, check), [], []

        def deliver(fb: Feedback | None) -> bytes | None:
            packet = first if fb is None else self.tx.answer(fb)
            sent.append(8 * len(packet))
            received.append(self.channel(packet))
            return received[-1]

        latent, fbs = self.rx.receive_frame(t, check, deliver)
        self.tx.observe(fbs[-1])
        wrong = latent is not None and not torch.equal(latent, self._meant())
        self.tx.commit(latent is not None)
        if self.log is not None:
            self.log.append(received)
        requests = sum(fb.bits for fb in fbs if not fb.ack)
        s = self.rx.stats
        return latent, SessionRecord(
            t, s.kind if latent is not None else "lost", self.tx.record.hit, sum(sent), sum(fb.bits for fb in fbs),
            sum(sent[1:]) + requests, self._paper_bits(s) + requests, len(sent), sum(fb.damaged for fb in fbs),
            s.refreshes, s.cue_failures, s.lookups, s.resyncs, s.repaired_slots, corrupted,
            self.tx.tx.memory == self.rx.rx.memory, s.decoded_known_bad, differed,
            latent is not None and differed and not s.aware, wrong)

    def _meant(self) -> torch.Tensor:
        """The latent the transmitter meant the receiver to decode this frame (its readout, or the refresh)."""
        if self.tx.refresh_slot is not False:
            return _codes_latent(self.tx._codes(), self.link.latent_bits)[1]
        return self.tx.tx.last_latent

    def _paper_bits(self, s: RxStats) -> int:
        """Eq. (3) for the message, plus the cue on a hit, ``8d`` per refresh or repaired slot, 16 per audited
        slot (requests and bitmaps are added by the caller)."""
        d, m = self.link.d, self.tx.tx.memory.size
        bits = self.tx.record.paper_bits
        if self.tx.record.hit:
            bits += self.protection.cue_bits
        if self.tx.tree:   # the checks on the frame's packet, and the node hashes of the tree instead of audits
            f = self.tx.frame
            bits += f.check_bits * (1 + (f.slot_checks and self.tx.record.hit))
            return bits + 8 * d * (s.refreshes + s.repaired_slots) + ht.HASH_BITS * s.tree_hashes
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


def corruption_delays(records: list[SessionRecord]) -> list[int | None]:
    """For each frame a memory corruption hit, the frames until the two memories are identical again (0: after
    that very frame; None: not within the records)."""
    return [next((j - i for j in range(i, len(records)) if records[j].in_sync), None)
            for i, r in enumerate(records) if r.corrupted]


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
            "decoded_known_bad": sum(r.decoded_known_bad for r in records),
            "silent_frames": sum(r.silent for r in records), "wrong_decodes": sum(r.wrong for r in records)}
