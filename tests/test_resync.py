"""The tree resync (semcom.link.hashtree, and the ``tree`` protocol of semcom.link.session).

Locating the differing slots takes at most ``ceil(log_F M) + 1`` round trips and finds exactly them; bulk
repairs restore equality; under bit errors and erasures both memories end identical and nothing is ever
decoded from memory known to be bad; a corrupted slot is caught at its first use; the resync's state
survives a dropped frame; the paper's protocols (no memory checks) are what they were.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.test_session import drift

from semcom.config import FaultConfig, LinkConfig, ProtectionConfig
from semcom.errors import WireFormatError
from semcom.link import hashtree as ht
from semcom.link import protected as pk
from semcom.link import transcript, wire
from semcom.link.session import ProtectedLink, corruption_delays, fault_summary
from semcom.memory import PrototypeMemory


def fresh(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def memory_pair(m: int, d: int = 8, seed: int = 0) -> tuple[PrototypeMemory, PrototypeMemory]:
    a, b = PrototypeMemory(d, max(m, 1)), PrototypeMemory(d, max(m, 1))
    for t, z in enumerate(fresh(m, d, seed)):
        q = np.frombuffer(bytes(range(d)), np.uint8)
        a.write(z, t, q)
        b.write(z, t, q)
    return a, b


def corrupt(mem: PrototypeMemory, slots, seed: int = 7, sigma: float = 0.05) -> None:
    """Move the prototypes of ``slots`` (codes and recency kept), as a vector-noise fault would."""
    slots = sorted(slots)
    protos = mem.prototypes.clone()
    noise = torch.randn(len(slots), mem.d, generator=torch.Generator().manual_seed(seed))
    protos[slots] = F.normalize(protos[slots] + sigma * noise, dim=1)
    mem.corrupt(protos)


def run(latents, link, protection, faults=None, corrupt_at: dict | None = None):
    pl = ProtectedLink(link, protection, faults or FaultConfig())
    outs, recs = [], []
    for t, z in enumerate(latents):
        if corrupt_at and t in corrupt_at:
            corrupt(pl.rx.rx.memory, corrupt_at[t](pl.rx.rx.memory.size))
        latent, rec = pl.step(z)
        outs.append(latent)
        recs.append(rec)
    return pl, outs, recs


# =========================================================================== the hash tree


@settings(max_examples=150, deadline=None, derandomize=True)
@given(m=st.integers(1, 300), fanout=st.integers(2, 16), data=st.data())
def test_the_tree_locates_exactly_the_differing_slots_in_log_round_trips(m, fanout, data):
    tx, rx = memory_pair(m)
    bad = data.draw(st.sets(st.integers(0, m - 1), max_size=m))
    if bad:
        corrupt(rx, bad)
    found, trips = ht.locate(tx, rx, fanout, salt=data.draw(st.integers(0, 2**16)))
    assert found == sorted(bad)
    assert trips <= ht.depth(m, fanout) <= max(1, math.ceil(math.log(m, fanout) - 1e-9)) + 1
    assert trips == ht.depth(m, fanout) or not bad       # a descent stops early only when nothing differs


@pytest.mark.parametrize("m, fanout, depth", [(1, 8, 1), (8, 8, 1), (9, 8, 2), (64, 8, 2), (65, 8, 3),
                                              (256, 16, 2), (257, 16, 3), (2**24 - 1, 8, 8)])
def test_depth_is_ceil_log(m, fanout, depth):
    assert ht.depth(m, fanout) == depth


def test_a_node_hash_depends_on_the_salt_and_covers_only_held_slots():
    tx, rx = memory_pair(20)
    d = ht.slot_digests(tx, 1)
    assert ht.node_hash(d, 1, 0, 8, 20, 1) != ht.node_hash(ht.slot_digests(tx, 2), 1, 0, 8, 20, 2)
    assert ht.children([0], 1, 8, 20) == [0, 1, 2] and ht.children([2], 0, 8, 20) == [16, 17, 18, 19]
    rx.truncate(18)   # a memory that lacks slots 18, 19 differs in their node
    assert ht.locate(tx, rx, 8, 3)[0] == [18, 19]


# =========================================================================== packets


@settings(max_examples=60, deadline=None)
@given(rnd=st.integers(0, 2**16 - 1), level=st.integers(0, 8), m=st.integers(0, 2**24 - 1),
       chunk=st.integers(0, 2**16 - 1), hashes=st.lists(st.integers(0, 2**16 - 1), max_size=ht.CHUNK),
       seq=st.integers(0, 1000))
def test_tree_packets_round_trip_and_reject_every_bit_flip(rnd, level, m, chunk, hashes, seq):
    tp = pk.TreePacket(rnd, level, m, chunk, tuple(hashes))
    packet = pk.encode_tree(tp, seq)
    assert pk.decode_tree(packet, seq) == tp
    assert len(packet) == -(-(8 + 16 + 8 + 24 + 16 + 8 + 16 * len(hashes)) // 8) + 4
    for i in range(0, 8 * len(packet), 7):
        bad = bytearray(packet)
        bad[i // 8] ^= 0x80 >> (i % 8)
        with pytest.raises(WireFormatError):
            pk.decode_tree(bytes(bad), seq)


@settings(max_examples=60, deadline=None)
@given(d=st.integers(1, 64), n=st.integers(1, 6), first=st.integers(0, 2**24 - 1), seq=st.integers(0, 1000),
       data=st.data())
def test_bulk_repairs_round_trip_and_reject_every_bit_flip(d, n, first, seq, data):
    reps = tuple(pk.SlotRepair(data.draw(st.binary(min_size=d, max_size=d)), data.draw(st.integers(0, 2**32 - 1)))
                 for _ in range(n))
    bulk = pk.BulkRepair(data.draw(st.integers(0, 2**16 - 1)), first, reps)
    packet = pk.encode_repairs(bulk, seq)
    assert pk.decode_repairs(packet, d, seq) == bulk
    for i in range(0, 8 * len(packet), 5):
        bad = bytearray(packet)
        bad[i // 8] ^= 0x80 >> (i % 8)
        with pytest.raises(WireFormatError):
            pk.decode_repairs(bytes(bad), d, seq)


def test_a_bulk_repair_holds_as_many_slots_as_fit_a_short_packet():
    assert pk.repair_batch(64) == 1                       # 64 codes: one slot already fills ~600 bits
    assert pk.repair_batch(16) == (pk.REPAIR_PACKET_BITS - 88) // (8 * 16 + 32) == 5
    assert pk.repair_batch(1) == 23


# =========================================================================== the protocol


def test_bulk_repair_restores_equality_in_one_frame():
    """16-dimensional latents (5 slots per REPAIR): 11 bad slots of 40, in every node of 8 slots, are found by
    the descent (one TREE packet of 5 node hashes, then two of the 40 slot hashes) and repaired in
    ceil(11 / 5) = 3 bulk repairs, then the frame is decoded from a memory equal to the transmitter's."""
    link = LinkConfig(d=16, tau=0.97)
    zs = fresh(41, 16, 1)
    pl, _, recs = run(zs[:40], link, ProtectionConfig(cue_bits=32))
    assert pl.rx.rx.memory.size == 40 and all(r.in_sync for r in recs)
    bad = [0, 3, 4, 9, 17, 18, 19, 25, 31, 38, 39]
    corrupt(pl.rx.rx.memory, bad)
    latent, rec = pl.step(zs[40])
    assert latent is not None and rec.kind == "miss" and rec.in_sync and not rec.decoded_known_bad
    assert rec.resyncs == 1 and rec.repaired_slots == len(bad) and rec.differed and not rec.silent
    assert ht.depth(40, 8) == 2 and rec.packets == 1 + (1 + 2) + 3
    assert pl.tx.tx.memory == pl.rx.rx.memory


def test_a_dropped_frame_keeps_the_resync_where_it_was():
    """A resync budget of 2 packets per frame: the descent and the repairs run over several frames, one
    round in all (no audit from the root again), and the memories agree once it ends."""
    link = LinkConfig(d=64, tau=0.97)
    zs = fresh(80, 64, 2)
    p = ProtectionConfig(cue_bits=32, resync_packets=2)
    pl, _, _ = run(zs[:40], link, p)
    corrupt(pl.rx.rx.memory, range(40))                    # every slot
    recs = [pl.step(z)[1] for z in zs[40:]]
    assert sum(r.resyncs for r in recs) == 1
    first_sync = next(i for i, r in enumerate(recs) if r.in_sync)
    assert first_sync == -(-(1 + 2 + 40) // 2) - 1         # 3 TREE packets, 40 REPAIRs, 2 per frame
    assert all(r.kind == "miss" for r in recs)             # fresh latents: misses, decoded all along
    assert not any(r.decoded_known_bad or r.silent or r.wrong for r in recs)


def test_a_corrupted_slot_is_caught_at_its_first_use():
    """A slot moved so little that the 32-bit cue (25 % tolerance) passes: the hit's slot check does not, so
    the receiver asks for that slot's refresh instead of decoding it; a hit on a good slot decodes at once."""
    link = LinkConfig(tau=0.97, rule="nearest")
    latents = drift(n=40, jumps=4, step=0.02)
    p = ProtectionConfig(cue_bits=32, resync_packets=1)   # the resync cannot finish within the frame
    pl, _, _ = run(latents[:35], link, p)
    target = pl.tx.tx.rule.decide(latents[35], pl.tx.tx.memory).index
    others = [s for s in range(pl.rx.rx.memory.size) if s != target]
    corrupt(pl.rx.rx.memory, [target], sigma=0.01)
    latent, rec = pl.step(latents[35])
    assert rec.hit and rec.kind == "refresh" and rec.cue_failures == 1
    assert not rec.silent and not rec.wrong and not rec.decoded_known_bad
    assert torch.equal(pl.rx.rx.memory.prototypes[target], pl.tx.tx.memory.prototypes[target])
    # a corrupted slot elsewhere; a hit on the target (good) slot is decoded while the memory is known bad
    corrupt(pl.rx.rx.memory, others[:1], sigma=0.3)
    latent, rec = pl.step(latents[36])
    assert rec.hit and rec.kind == "hit" and pl.rx.known_bad
    assert not rec.decoded_known_bad and not rec.silent and not rec.wrong


def test_hopfield_hits_wait_for_a_verified_memory():
    """Hopfield's readout depends on every slot: while the memory is known bad, a hit asks for a refresh."""
    link = LinkConfig(tau=0.97, rule="hopfield")
    latents = drift(n=40, jumps=4, step=0.02)
    pl, _, _ = run(latents[:35], link, ProtectionConfig(cue_bits=32, resync_packets=1))
    corrupt(pl.rx.rx.memory, [0], sigma=0.3)
    latent, rec = pl.step(latents[35])
    assert rec.hit and rec.kind == "refresh" and not rec.wrong and not rec.decoded_known_bad


@pytest.mark.parametrize("rule", ["nearest", "hopfield", "paper"])
def test_memories_agree_after_resync_under_bit_errors_and_erasures(rule):
    """Corruption at a rate, BER 1e-3 and 10 % erasures: never a decode from memory known to be bad, never a
    silently desynchronised decode, every corruption with room left in the clip resolved within
    sync_every + 4 frames, and identical memories a few frames after the last one."""
    latents = drift(n=160, seed=3)
    faults = FaultConfig(ber=1e-3, erasure_rate=0.1, corrupt_ids=0.2, corrupt_sigma=0.05, corrupt_rate=0.03,
                         seed=11)
    p = ProtectionConfig(cue_bits=32)
    pl, outs, recs = run(latents, LinkConfig(rule=rule, tau=0.97), p, faults)
    pl.faults = FaultConfig(ber=1e-3, erasure_rate=0.1)
    pl.corruption.faults = pl.faults                       # then 20 frames of the channel alone
    recs += [pl.step(z)[1] for z in drift(n=20, seed=4)]
    s = fault_summary(recs)
    delays = corruption_delays(recs)
    assert len(delays) >= 5 and s["damaged_packets"] > 100
    assert all(d is not None and d <= p.sync_every + 4 for d in delays)
    assert s["decoded_known_bad"] == s["silent_frames"] == s["wrong_decodes"] == 0
    assert recs[-1].in_sync and pl.tx.tx.memory == pl.rx.rx.memory
    assert all((o is None) == (r.kind == "lost") for o, r in zip(outs, recs[: len(outs)], strict=True))


def test_the_paper_protocols_ignore_the_resync_setting():
    """Without memory checks (the paper's protocols) there are no per-packet checks and no resync: the same
    packets and records whatever ``resync`` says."""
    latents = drift(n=60, seed=5)
    faults = FaultConfig(ber=1e-3, corrupt_ids=0.3, corrupt_sigma=0.02, corrupt_at=30, seed=2)
    runs = [run(latents, LinkConfig(tau=0.97), ProtectionConfig(cue_bits=32, sync_every=0, resync=r), faults)[2]
            for r in ("flat", "tree")]
    assert runs[0] == runs[1]


def test_the_checks_are_counted_in_the_packets():
    """A hit of the tree protocol carries the 16-bit memory check and (nearest) the 16-bit slot check."""
    latents = drift(n=10, jumps=1, step=0.01)
    for rule, extra in (("nearest", 32), ("hopfield", 16)):
        pl = ProtectedLink(LinkConfig(tau=0.9, rule=rule), ProtectionConfig(cue_bits=32, sync_every=4))
        pl.step(latents[0])
        _, rec = pl.step(latents[1])          # a hit on a memory of one, no digest due
        assert rec.kind == "hit"
        assert rec.forward_bits == 8 * (-(-(8 + 1 + 32 + extra) // 8) + 2)
        assert rec.paper_bits == 0 + 32 + extra + 0


def test_a_tree_session_file_replays_and_a_version_1_block_is_refused():
    link = LinkConfig(tau=0.97, d=64)
    latents = drift(n=48, seed=6)
    protection = ProtectionConfig(cue_bits=32, sync_every=8)
    faults = FaultConfig(ber=1e-3, erasure_rate=0.05, corrupt_sigma=0.05, corrupt_ids=0.2, corrupt_at=20, seed=4)
    pl = ProtectedLink(link, protection, faults, record=True)
    outs = [pl.step(z)[0] for z in latents]
    header = wire.StreamHeader(link, len(latents), b"\0" * 4, session=True).to_bytes()
    data = transcript.pack_session(header, transcript.session_block(protection, faults), pl.log)
    got, _ = transcript.replay(data, None, b"\0" * 4)
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(outs, got, strict=True))
    assert transcript.parse_session_block(transcript.session_block(protection, faults))[0] == protection
    old = bytearray(data)
    old[wire.HEADER_SIZE + 3] = 1
    with pytest.raises(WireFormatError, match="version 1"):
        transcript.replay(bytes(old), None, b"\0" * 4)


def test_a_fault_campaign_cell_reports_the_issue_counts():
    """One regime and rule of ``semcom reproduce fault-campaign --quick``: the counts item 3 names, per protocol."""
    from semcom.experiments.fault_campaign import PROTOCOLS, run_fault_campaign
    from semcom.experiments.hopfield_common import ReproConfig
    from semcom.models import load_autoencoder

    res = run_fault_campaign(ReproConfig.quick_version(frames=40), load_autoencoder(None), regimes=("cam_shake",),
                             rules=("nearest",))
    assert len(res["rows"]) == len(PROTOCOLS) * 2
    by = {(r["protocol"], r["rule"]): r for r in res["summary"]}
    new, old = by[("semcom", "all")], by[("semcom-flat", "all")]
    assert new["frames"] == old["frames"] == 40 and new["decoded_known_bad"] == old["decoded_known_bad"] == 0
    assert new["silent"] == new["wrong"] == 0 and new["unresolved_with_room"] == 0
    assert set(res["targets"]) >= {"unresolved", "resync_p99", "lost_ratio", "silent_cut", "decoded_known_bad"}
