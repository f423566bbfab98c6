"""A memory at scale: the transposed copy, exact scans, cached Hopfield readouts and the approximate index.

Behaviour only (never wall-clock time: speed is reported by ``semcom bench --m``, docs/scale.md).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semcom.config import LinkConfig, validated
from semcom.errors import ConfigError
from semcom.experiments.bench import decision_queries, filled_memory, scene_stream
from semcom.link import Receiver, Transmitter
from semcom.memory import HopfieldRule, NearestRule, PaperRule, PrototypeMemory, hopfield_retrieve
from semcom.memory import store as store_mod
from semcom.memory.store import top_k

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def unit(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def assert_copies_in_step(mem: PrototypeMemory) -> None:
    """The transposed copy (and, if built, the index's live slots) hold exactly the stored prototypes."""
    np.testing.assert_array_equal(mem.transposed, mem.prototypes.numpy().T)
    if mem._ann is not None and mem.size:
        found = mem._ann.search_batch(mem.prototypes.numpy(), 1)[:, 0]
        assert set(found.tolist()) <= set(range(mem.size))


# =========================================================================== the transposed copy

OPS = st.lists(st.tuples(st.sampled_from(["write", "refresh", "touch", "swap", "corrupt", "snapshot", "restore",
                                          "truncate", "poke"]), st.integers(0, 2**16)), min_size=1, max_size=40)


@SETTINGS
@given(ops=OPS, m_max=st.integers(1, 80), index=st.sampled_from(["exact", "approx"]))
def test_transposed_copy_follows_every_change(ops, m_max, index):
    d = 8
    mem = PrototypeMemory(d, m_max, "lru", index)
    rng = np.random.default_rng(len(ops))
    saved = mem.snapshot()
    for t, (op, r) in enumerate(ops):
        v = torch.from_numpy(rng.normal(size=d).astype(np.float32))
        v = v / v.norm()
        if op == "write":
            mem.write(v, t)
        elif op == "refresh" and mem.size:
            mem.write(v, t, slot=r % mem.size)
        elif op == "touch" and mem.size:
            mem.touch(r % mem.size, t)
        elif op == "swap" and mem.size:
            mem.swap(r % mem.size, (r // 7) % mem.size)
        elif op == "corrupt" and mem.size:
            mem.corrupt(F.normalize(mem.prototypes + 0.1 * torch.randn(mem.size, d), dim=1))
        elif op == "snapshot":
            saved = mem.snapshot()
        elif op == "restore":
            mem.restore(saved)
        elif op == "truncate":
            mem.truncate(r % (mem.size + 1))
        elif op == "poke" and mem.size:  # a write through the prototypes view, around the memory's methods
            mem.prototypes[r % mem.size] = v
        if index == "approx" and mem.size and r % 3 == 0:
            mem.candidates(v, 2)  # builds the index, which then has to follow every later change
        assert_copies_in_step(mem)
        if mem.size:
            s = mem.scores(v)
            np.testing.assert_allclose(s, mem.prototypes.numpy() @ v.numpy(), atol=1e-6)


def test_generation_moves_with_the_vectors_not_with_hits():
    mem = PrototypeMemory(4, 8)
    g = mem.generation
    mem.write(torch.tensor([1.0, 0, 0, 0]), 0)
    mem.write(torch.tensor([0, 1.0, 0, 0]), 1)
    assert mem.generation > g
    g = mem.generation
    mem.touch(0, 5)  # a hit: recency only
    mem.restore(mem.snapshot())  # nothing differs
    assert mem.generation == g
    for change in (lambda: mem.swap(0, 1), lambda: mem.truncate(1),
                   lambda: mem.restore((torch.eye(4)[:2], np.zeros(2, np.int64), 2, np.zeros((2, 4), np.uint8))),
                   lambda: mem.corrupt(mem.prototypes.flip(1)), lambda: mem.prototypes[0].mul_(-1.0)):
        change()
        mem.transposed  # noticed on the next read
        assert mem.generation > g
        g = mem.generation


def test_filled_memory_equals_written_memory():
    p = unit(50, 6, 1)
    a = PrototypeMemory.filled(p, m_max=80)
    b = PrototypeMemory(6, 80)
    for row in p:
        b.write(row, 0)
    assert a == b and a.slot_for_write() == b.slot_for_write() == 50
    np.testing.assert_array_equal(a.transposed, b.transposed)
    a.write(p[0], 1)
    b.write(p[0], 1)
    assert a == b


# =========================================================================== exact scans


@SETTINGS
@given(n=st.integers(1, 5000), k=st.integers(1, 9), seed=st.integers(0, 2**16), levels=st.integers(2, 50))
def test_top_k_is_a_stable_sort_prefix(n, k, seed, levels):
    # few distinct values, so ties are everywhere
    s = np.random.default_rng(seed).integers(0, levels, size=n).astype(np.float32)
    want = np.lexsort((np.arange(n), -s))[:k]
    np.testing.assert_array_equal(top_k(s, k), want)


def test_top_k_uses_blocks_and_stays_exact(monkeypatch):
    monkeypatch.setattr(store_mod, "TOP_K_BLOCK", 16)
    rng = np.random.default_rng(0)
    for n in (129, 1000, 4097):
        s = rng.integers(0, 30, size=n).astype(np.float32)
        for k in (2, 5, 9):
            np.testing.assert_array_equal(top_k(s, k), np.lexsort((np.arange(n), -s))[:k])


@pytest.mark.parametrize("chunk", [7, 64, 1 << 15])
def test_nearest_batch_is_the_rowwise_argmax(monkeypatch, chunk):
    monkeypatch.setattr(store_mod, "BATCH_CHUNK", chunk)
    mem = filled_memory(500, 16, seed=2)
    mem.write(mem.prototypes[3].clone(), 1, slot=400)  # a tie across chunks: the lower slot wins
    q = torch.cat([unit(30, 16, 3), mem.prototypes[[3, 10, 499]]])
    js, ss = mem.nearest_batch(q)
    full = mem.scores_batch(q)
    # the same maximum up to float32 rounding (a product's blocking may move the last bit)
    np.testing.assert_allclose(ss, full.max(axis=1), atol=1e-6)
    np.testing.assert_allclose(full[np.arange(len(q)), js], full.max(axis=1), atol=1e-6)
    assert js[-3] == 3 and js[-1] == 499
    for b, z in enumerate(q):
        j, s = mem.nearest(z)
        assert abs(s - ss[b]) < 1e-6 and abs(full[b, j] - full[b, js[b]]) < 1e-6


def test_decide_batch_equals_decide_one_at_a_time():
    mem = filled_memory(300, 16, seed=4)
    q = decision_queries(mem, 40, seed=5)
    for rule in (NearestRule(0.9), HopfieldRule(0.9, 20.0, 3), PaperRule(0.9, 20.0)):
        for a, b in zip(rule.decide_batch(q, mem), [rule.decide(z, mem) for z in q], strict=True):
            assert (a.hit, a.index) == (b.hit, b.index) and abs(a.score - b.score) < 1e-6
    empty = PrototypeMemory(16, 4)
    assert NearestRule(0.9).decide_batch(q, empty) == [NearestRule(0.9).decide(q[0], empty)] * 40


# =========================================================================== cached Hopfield readouts


def test_cached_readouts_equal_fresh_ones_and_follow_writes():
    mem = filled_memory(200, 16, seed=6)
    rule = HopfieldRule(0.9, 20.0, 4)
    q = decision_queries(mem, 20, seed=7)
    for step in range(3):
        for z in q:
            dec = rule.decide(z, mem)
            fresh = HopfieldRule(0.9, 20.0, 4).decide(z, PrototypeMemory.filled(mem.prototypes, m_max=mem.m_max))
            assert (dec.hit, dec.index) == (fresh.hit, fresh.index)
            assert abs(dec.score - fresh.score) < 1e-5
            r = rule.readout(dec.index, mem)
            p = mem.prototypes
            assert torch.equal(r, hopfield_retrieve(p[dec.index : dec.index + 1], p, 20.0)[0])
            r.mul_(0.0)  # the caller's copy: the cache is untouched
            assert torch.equal(rule.readout(dec.index, mem), hopfield_retrieve(p[dec.index : dec.index + 1], p,
                                                                                20.0)[0])
        mem.write(q[step], 10 + step)  # a miss: every readout changes


def test_readout_is_bit_identical_at_both_ends_with_warm_and_cold_caches():
    """The transmitter's cache is warm (its decisions filled it), the receiver's cold: same bits."""
    p = unit(300, 16, 8)
    tx, rx = PrototypeMemory.filled(p, m_max=400), PrototypeMemory.filled(p, m_max=400)
    rule_tx, rule_rx = HopfieldRule(0.9, 30.0, 4), HopfieldRule(0.9, 30.0, 4)
    for z in decision_queries(tx, 30, seed=9):
        dec = rule_tx.decide(z, tx)
        if dec.hit:
            assert torch.equal(rule_tx.readout(dec.index, tx), rule_rx.readout(dec.index, rx))


# =========================================================================== the approximate index


def test_link_config_index_field():
    assert LinkConfig().index == "exact" and LinkConfig(index="approx").index == "approx"
    with pytest.raises(ConfigError, match="index"):
        validated(LinkConfig, index="fast")
    with pytest.raises(ValueError):
        PrototypeMemory(4, 4, index="fast")


def test_index_finds_each_stored_prototype_and_never_a_dropped_slot():
    mem = PrototypeMemory.filled(unit(2000, 32, 10), m_max=4000, index="approx")
    js = mem.approx_index().search_batch(mem.prototypes.numpy(), 1)[:, 0]
    assert (js == np.arange(2000)).mean() >= 0.99
    v = unit(1, 32, 11)[0]
    slot = mem.write(v, 1)  # an append
    assert mem.candidates(v, 1)[0] == slot
    mem.write(v.flip(0), 2, slot=17)  # a refresh overwrites a slot in place
    assert mem.candidates(v.flip(0), 1)[0] == 17
    mem.truncate(1000)
    for z in mem.prototypes[[5, 500, 999]]:
        assert set(mem.candidates(z, 4).tolist()) <= set(range(1000))
    assert all(j < 1000 for j in mem.approx_index().search_batch(unit(200, 32, 12).numpy(), 3).ravel())
    mem.write(v, 3)  # slot 1000 comes back with a new vector
    assert mem.candidates(v, 1)[0] == 1000


@pytest.mark.parametrize("rule_cls", [NearestRule, HopfieldRule])
def test_approx_decisions_agree_with_exact_on_a_synthetic_memory(rule_cls):
    """>= 99 % of hit/miss decisions identical (a hit on another slot counts as different) at M = 10^4."""
    exact = filled_memory(10**4, 64, seed=0)
    approx = PrototypeMemory.filled(exact.prototypes, index="approx")
    rule = rule_cls(0.9, 20.0, 4)
    q = decision_queries(exact, 400 if rule_cls is NearestRule else 100, seed=1)
    a, b = rule.decide_batch(q, exact), rule.decide_batch(q, approx)
    same = [x.hit == y.hit and (not x.hit or x.index == y.index) for x, y in zip(a, b)]
    assert np.mean(same) >= 0.99
    assert 0.2 < np.mean([x.hit for x in a]) < 0.8  # the queries straddle the hit/miss boundary
    for x in b:  # an approximate hit is an exact hit of the slot it names
        if x.hit:
            assert float(approx.prototypes[x.index] @ q[b.index(x)]) >= 0.9 - 1e-6


def _stream(rule: str, index: str, frames: int = 300, m_max: int = 40, seed: int = 0):
    cfg = LinkConfig(rule=rule, tau=0.9, beta=20.0, m_max=m_max, index=index, top_k=3)
    tx, rx = Transmitter(cfg), Receiver(cfg)
    packets = []
    for z in scene_stream(frames, 64, scenes=60, stay=0.7, seed=seed):
        packets.append(tx.send_latent(z))
        latent = rx.receive_latent(packets[-1])
        assert torch.equal(latent, tx.last_latent)  # what the receiver decodes, bit for bit
        assert tx.memory == rx.memory  # frame by frame
    return packets, tx


@pytest.mark.parametrize("rule", ["nearest", "hopfield", "paper"])
def test_link_with_approx_index_keeps_both_memories_identical(rule):
    packets, tx = _stream(rule, "approx")
    # the transmitter searched its index (paper needs every score for eq. 4, so it always scans) ...
    assert (tx.memory._ann is None) == (rule == "paper")
    again, _ = _stream(rule, "approx")
    assert again == packets  # ... deterministically: the same latents give the same bits
    exact, _ = _stream(rule, "exact")
    assert np.mean([a == b for a, b in zip(packets, exact)]) >= 0.95


def test_receiver_never_builds_an_index():
    cfg = LinkConfig(rule="hopfield", tau=0.9, beta=20.0, m_max=40, index="approx")
    tx, rx = Transmitter(cfg), Receiver(cfg)
    for z in scene_stream(100, 64, seed=3):
        rx.receive_latent(tx.send_latent(z))
    assert rx.memory._ann is None and tx.memory._ann is not None


def test_cli_index_flag_reaches_the_link_config():
    import argparse

    from semcom.commands._common import add_link_args, link_config

    class Model:
        hparams = {"d": 64, "height": 64, "width": 64}

    p = argparse.ArgumentParser()
    add_link_args(p, multi_rule=False)
    assert link_config(p.parse_args([]), "hopfield", Model()).index == "exact"
    assert link_config(p.parse_args(["--index", "approx"]), "hopfield", Model()).index == "approx"
    with pytest.raises(SystemExit):
        p.parse_args(["--index", "fast"])
