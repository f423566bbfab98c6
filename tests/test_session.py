"""The protected link under faults: cues, refresh, memory checks and resync (semcom.link.session).

The invariants, over seeds, regimes and rules: the receiver never decodes from a memory it knows to be
out of sync; a damaged or lost packet never makes the memories differ; a corrupted receiver memory agrees
with the transmitter's again within ``sync_every - 1`` frames (the next memory check) when no packet of
the repair is lost.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from semcom.config import FaultConfig, LinkConfig, ProtectionConfig
from semcom.errors import ConfigError
from semcom.link import Receiver, Transmitter
from semcom.link import protected as pk
from semcom.link.session import ProtectedLink, fault_summary, resync_delays
from semcom.metrics.bits import paper_bits
from semcom.sources import REGIMES


def drift(n: int = 60, d: int = 64, seed: int = 0, step: float = 0.08, jumps: int = 4) -> torch.Tensor:
    """Unit-norm latents that drift and jump: a few scenes, slow motion inside each."""
    g = torch.Generator().manual_seed(seed)
    out, z = [], F.normalize(torch.randn(d, generator=g), dim=0)
    for t in range(n):
        if t % (n // jumps) == 0:
            z = F.normalize(torch.randn(d, generator=g), dim=0)
        z = F.normalize(z + step * torch.randn(d, generator=g) / d**0.5, dim=0)
        out.append(z)
    return torch.stack(out)


def run(latents, link=None, protection=None, faults=None):
    pl = ProtectedLink(link or LinkConfig(tau=0.97), protection or ProtectionConfig(cue_bits=32),
                       faults or FaultConfig())
    outs, recs = [], []
    for z in latents:
        latent, rec = pl.step(z)
        outs.append(latent)
        recs.append(rec)
    return pl, outs, recs


def test_without_faults_the_session_decodes_what_the_plain_link_does():
    latents = drift()
    link = LinkConfig(tau=0.97)
    pl, outs, recs = run(latents, link, ProtectionConfig(cue_bits=0, sync_every=0))
    tx, rx = Transmitter(link), Receiver(link)
    for z, got, rec in zip(latents, outs, recs, strict=True):
        want = rx.receive_latent(tx.send_latent(z))
        assert torch.equal(got, want)
        assert rec.in_sync and rec.kind in ("hit", "miss") and rec.feedback_bits == pk.ACK_BITS
        assert rec.repair_bits == 0 and rec.packets == 1
    assert pl.tx.tx.memory == tx.memory == pl.rx.rx.memory
    assert 0 < sum(r.hit for r in recs) < len(recs)


def test_paper_accounting_adds_the_cue_to_a_hit():
    latents = drift()
    link = LinkConfig(tau=0.97)
    _, _, recs = run(latents, link, ProtectionConfig(cue_bits=20, sync_every=0))
    m = 0
    for r in recs:
        assert r.paper_bits == paper_bits(r.hit, m, link.d, 8) + (20 if r.hit else 0)
        m += not r.hit


def test_a_hit_packet_carries_seq_symbol_cue_and_crc16():
    latents = drift(n=10, jumps=1, step=0.01)
    pl = ProtectedLink(LinkConfig(tau=0.9), ProtectionConfig(cue_bits=32, sync_every=0))
    pl.step(latents[0])
    _, rec = pl.step(latents[1])          # a hit on a memory of one: 1 symbol bit
    assert rec.kind == "hit"
    assert rec.forward_bits == 8 * (-(-(8 + 1 + 32) // 8) + 2)


@pytest.mark.parametrize("rule", ["nearest", "hopfield", "paper"])
def test_channel_faults_never_desynchronise_the_memories(rule):
    """Every damaged or lost packet is detected and repaired in its frame (or the frame dropped at both
    ends), so the memories agree after every frame."""
    latents = drift(n=80, seed=3)
    faults = FaultConfig(ber=3e-3, erasure_rate=0.1, seed=7)
    pl, outs, recs = run(latents, LinkConfig(rule=rule, tau=0.97), ProtectionConfig(cue_bits=32), faults)
    assert sum(r.damaged for r in recs) > 10                  # the channel did damage packets
    assert all(r.in_sync for r in recs)
    assert not any(r.decoded_known_bad for r in recs)
    assert all((o is None) == (r.kind == "lost") for o, r in zip(outs, recs, strict=True))
    assert pl.channel.flipped > 0 and pl.channel.erased > 0


def test_lost_frames_after_max_attempts_roll_back_the_transmitter():
    latents = drift(n=40)
    pl, outs, recs = run(latents, LinkConfig(tau=0.97), ProtectionConfig(max_attempts=1),
                         FaultConfig(erasure_rate=0.5, seed=1))
    lost = [r for r in recs if r.kind == "lost"]
    assert lost and all(r.damaged == 1 for r in lost)
    assert all(r.in_sync for r in recs)


@pytest.mark.parametrize("mode", ["ids", "sigma"])
@pytest.mark.parametrize("sync_every", [4, 16])
def test_corruption_is_repaired_by_the_next_memory_check(mode, sync_every):
    """The flat resync (the earlier protocol): a corruption waits for the next memory check."""
    latents = drift(n=70, seed=5)
    kw = {"corrupt_ids": 0.5} if mode == "ids" else {"corrupt_sigma": 0.05}
    faults = FaultConfig(**kw, corrupt_at=30, seed=2)
    pl, _, recs = run(latents, LinkConfig(tau=0.97), ProtectionConfig(cue_bits=32, sync_every=sync_every,
                                                                      resync="flat"), faults)
    assert recs[30].corrupted
    check = -(-30 // sync_every) * sync_every              # the first memory check at or after frame 30
    delays = resync_delays(recs)
    assert len(delays) == 1 and delays[0] is not None and delays[0] <= check - 30
    assert all(r.in_sync for r in recs[check:])
    if mode == "sigma":   # every prototype moved a little: the cues pass, the memory check finds it
        assert all(not r.in_sync for r in recs[30:check])
        corrupted_slots = sum(not r.hit for r in recs[:30])   # one slot per earlier miss
        assert recs[check].resyncs == 1 and recs[check].repaired_slots == corrupted_slots
    else:                 # a permuted pair is found by the cue lookup and swapped back, or by the check
        assert sum(r.lookups for r in recs[30:check + 1]) + recs[check].repaired_slots >= 1
    assert not any(r.decoded_known_bad for r in recs)


def test_without_memory_checks_a_corruption_the_cue_tolerates_stays():
    """The paper's protocol (cues with 25 % tolerance, no check): mild noise passes every cue."""
    latents = drift(n=60, seed=5)
    pl, _, recs = run(latents, LinkConfig(tau=0.97), ProtectionConfig(cue_bits=32, sync_every=0),
                      FaultConfig(corrupt_sigma=0.01, corrupt_at=30, seed=2))
    assert not recs[-1].in_sync and sum(r.cue_failures for r in recs) == 0
    assert fault_summary(recs)["frames_to_resync"] is None


def _fill(pl: ProtectedLink, latents) -> None:
    for z in latents:
        pl.step(z)


def test_exact_cue_lookup_swaps_a_permuted_pair_back():
    latents = drift(n=40, jumps=4, step=0.02)
    pl = ProtectedLink(LinkConfig(tau=0.97), ProtectionConfig(cue_bits=32, cue_tolerance=0.0, sync_every=0))
    _fill(pl, latents[:35])
    mem = pl.rx.rx.memory
    assert mem.size >= 2
    target = pl.tx.tx.rule.decide(latents[35], pl.tx.tx.memory).index
    other = (target + 1) % mem.size
    mem.swap(target, other)                                  # the receiver's ID map sends them to each other
    assert pl.tx.tx.memory != mem
    latent, rec = pl.step(latents[35])
    assert rec.kind == "hit" and rec.cue_failures == 1 and rec.lookups == 1 and rec.refreshes == 0
    assert rec.in_sync and torch.equal(latent, pl.tx.tx.memory.prototypes[target])


def test_a_cue_nothing_matches_gets_the_slot_refreshed():
    latents = drift(n=40, jumps=4, step=0.02)
    pl = ProtectedLink(LinkConfig(tau=0.97), ProtectionConfig(cue_bits=32, sync_every=0))
    _fill(pl, latents[:35])
    target = pl.tx.tx.rule.decide(latents[35], pl.tx.tx.memory).index
    mem = pl.rx.rx.memory
    wrecked = mem.prototypes.clone()
    wrecked[target] = -wrecked[target]                       # the opposite vector: every cue bit differs
    mem.corrupt(wrecked)
    latent, rec = pl.step(latents[35])
    assert rec.cue_failures == 1 and rec.refreshes == 1 and rec.kind == "refresh"
    assert rec.in_sync                                        # both wrote Q(z_t) into the slot
    assert torch.equal(pl.tx.tx.memory.prototypes[target], latent)
    assert rec.repair_bits > 8 * 64                           # request + refresh packet with d codes


def test_resync_counts_audit_bitmap_and_repairs():
    latents = drift(n=33, seed=9)
    pl = ProtectedLink(LinkConfig(tau=0.97), ProtectionConfig(cue_bits=0, sync_every=32, resync="flat"))
    _fill(pl, latents[:32])
    mem = pl.rx.rx.memory
    m = mem.size
    noisy = mem.prototypes.clone()
    noisy[0] = F.normalize(noisy[0] + 0.1, dim=0)
    mem.corrupt(noisy)
    latent, rec = pl.step(latents[32])                        # frame 32: a memory check
    assert rec.resyncs == 1 and rec.repaired_slots == 1 and rec.in_sync
    d = 64
    assert m <= pk.AUDIT_CHUNK
    audit = 8 * (-(-(8 + 32 + 24 + 24 + 16 * m) // 8) + 4)
    repair = 8 * (-(-(8 + 8 * d + 32) // 8) + 4)
    assert rec.repair_bits == pk.REQUEST_BITS + audit + m + repair
    assert rec.feedback_bits == pk.REQUEST_BITS + m + pk.ACK_BITS


def test_a_resync_over_a_noisy_channel_completes():
    """Audits and repairs go slot by slot and what arrived is kept, so a large repair gets through a noisy
    channel over a few frames instead of failing whole every time."""
    base = F.normalize(torch.randn(40, 64, generator=torch.Generator().manual_seed(0)), dim=1)
    pl, _, recs = run([base[t % 40] for t in range(200)], LinkConfig(tau=0.9),
                      ProtectionConfig(cue_bits=32, sync_every=8), FaultConfig(ber=1e-3, corrupt_sigma=0.01,
                                                                               corrupt_at=60, seed=3))
    assert sum(r.repaired_slots for r in recs) >= 30                 # nearly every slot moved
    assert recs[-1].in_sync and sum(r.kind == "lost" for r in recs[60:]) < 40
    assert not any(r.decoded_known_bad for r in recs)


def test_a_receiver_known_bad_never_decodes():
    """Audits that never arrive: the receiver drops the frames rather than decode from a bad memory."""
    latents = drift(n=40, seed=4)
    pl = ProtectedLink(LinkConfig(tau=0.97), ProtectionConfig(cue_bits=32, sync_every=8, max_attempts=2))
    _fill(pl, latents[:16])
    mem = pl.rx.rx.memory
    mem.corrupt(F.normalize(mem.prototypes + 0.2 * torch.randn_like(mem.prototypes), dim=1))
    pl.channel.erasure_rate = 0.999999                       # from now on nothing gets through
    for z in latents[16:24]:
        latent, rec = pl.step(z)
        assert latent is None and rec.kind == "lost" and not rec.decoded_known_bad
    pl.channel.erasure_rate = 0.0
    latent, rec = pl.step(latents[24])
    assert latent is not None and rec.resyncs >= 1 and rec.in_sync


def test_adaptive_coding_is_refused():
    with pytest.raises(ConfigError, match="fixed-length"):
        ProtectedLink(LinkConfig(coding="adaptive"))


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["nearest", "hopfield", "paper"])
def test_fault_injection_over_seeds_regimes_and_rules(rule):
    """Random corruption (either kind, once or at a rate) with bit errors and erasures, over every regime's
    real latents and many seeds: never a decode from a known-bad memory; every corruption repaired within
    ``sync_every - 1`` frames plus the frames lost on the way; channel faults never desynchronise."""
    from semcom.experiments.semantic_link import encode_clip
    from semcom.models import load_autoencoder

    model = load_autoencoder(None)
    for i, regime in enumerate(REGIMES):
        _, latents = encode_clip(model, regime, frames=48)
        for seed in range(10):
            rng = np.random.default_rng(100 * i + seed)
            k, tol = int(rng.choice([4, 8, 16])), float(rng.choice([0.0, 0.25]))
            faults = FaultConfig(corrupt_ids=float(rng.choice([0.0, 0.2, 0.5])),
                                 corrupt_sigma=float(rng.choice([0.02, 0.1, 0.3])),
                                 corrupt_rate=float(rng.choice([0.0, 0.05])), corrupt_at=int(rng.integers(1, 40)),
                                 ber=float(rng.choice([0.0, 1e-4, 1e-3])), erasure_rate=float(rng.choice([0, 0.05])),
                                 seed=seed)
            _, _, recs = run(latents, LinkConfig(rule=rule),
                             ProtectionConfig(cue_bits=32, cue_tolerance=tol, sync_every=k), faults)
            assert not any(r.decoded_known_bad for r in recs), (regime, seed)
            for f, delay in zip([j for j, r in enumerate(recs) if r.corrupted or r.damaged], resync_delays(recs)):
                later_fault = any(r.corrupted for r in recs[f + 1 : f + 1 + (delay or len(recs))])
                if later_fault:
                    continue
                lost = sum(r.kind == "lost" for r in recs[f:])
                if delay is None:
                    assert len(recs) - f < k + lost, (regime, seed, f)   # the clip ended first
                else:
                    assert delay <= k - 1 + k * lost, (regime, seed, f, delay)
            for r in recs:
                if r.damaged and not r.corrupted and all(not x.corrupted for x in recs[: r.t + 1]):
                    assert r.in_sync


@pytest.mark.parametrize("cue_of, fails", [("prototype", False), ("readout", True)])
def test_a_readout_cue_sees_corruption_of_the_neighbours(cue_of, fails):
    """With a soft Hopfield readout (small beta), r_j depends on every slot: wrecking slot k changes what the
    receiver decodes for j. A cue of the prototype mu_j cannot see it; a cue of the readout can."""
    latents = drift(n=40, jumps=4, step=0.02)
    link = LinkConfig(rule="hopfield", tau=0.9, beta=2.0)
    pl = ProtectedLink(link, ProtectionConfig(cue_bits=64, cue_tolerance=0.0, sync_every=0, cue_of=cue_of))
    _fill(pl, latents[:35])
    target = pl.tx.tx.rule.decide(latents[35], pl.tx.tx.memory).index
    mem = pl.rx.rx.memory
    assert mem.size >= 3
    wrecked = mem.prototypes.clone()
    others = [k for k in range(mem.size) if k != target]
    wrecked[others] = -wrecked[others]
    mem.corrupt(wrecked)
    _, rec = pl.step(latents[35])
    assert rec.hit and (rec.cue_failures == 1) == fails
    assert (rec.kind == "refresh") == fails
