"""Hopfield retrieval (eq. 4), the shared prototype memory and the hit/miss decision rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from semcom.config import LinkConfig
from semcom.memory import (
    RULES,
    HopfieldRule,
    NearestRule,
    PaperRule,
    PrototypeMemory,
    hopfield_retrieve,
    hopfield_weights,
    make_rule,
)
from semcom.quantization import Q

SETTINGS = settings(max_examples=40, deadline=None)
seeds = st.integers(0, 2**32 - 1)


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.normal(size=(n, d))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def t32(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float32))


def eq4(queries: np.ndarray, prototypes: np.ndarray, beta: float) -> np.ndarray:
    """Eq. (4) in float64: w_j = exp(beta <z, mu_j>) / sum_k exp(beta <z, mu_k>), z~ = sum w mu / ||.||."""
    s = beta * queries @ prototypes.T
    w = np.exp(s - s.max(axis=-1, keepdims=True))
    w /= w.sum(axis=-1, keepdims=True)
    r = w @ prototypes
    return r / np.linalg.norm(r, axis=-1, keepdims=True), w, np.linalg.norm(w @ prototypes, axis=-1)


def memory_from(protos: np.ndarray, m_max: int | None = None, policy="lru") -> PrototypeMemory:
    mem = PrototypeMemory(protos.shape[1], m_max or max(1, protos.shape[0]), policy)
    for t, p in enumerate(protos):
        assert mem.write(t32(p), t) == t
    return mem


# =========================================================================== eq. (4)


@SETTINGS
@given(seed=seeds, b=st.integers(1, 5), m=st.integers(1, 20), d=st.integers(1, 32),
       beta=st.floats(0.01, 100.0))
def test_hopfield_retrieve_matches_closed_form_eq4(seed, b, m, d, beta):
    rng = np.random.default_rng(seed)
    q32, p32 = t32(unit_rows(rng, b, d)), t32(unit_rows(rng, m, d))
    # reference in float64 on exactly the float32 values the library sees
    ref, w_ref, raw_norm = eq4(q32.double().numpy(), p32.double().numpy(), beta)
    assume(raw_norm.min() > 0.05)   # a near-cancelling mixture makes the normalisation ill-conditioned
    w = hopfield_weights(q32, p32, beta)
    assert w.shape == (b, m)
    np.testing.assert_allclose(w.double().numpy(), w_ref, atol=2e-5)
    np.testing.assert_allclose(w.sum(-1).numpy(), 1.0, atol=1e-5)
    out = hopfield_retrieve(q32, p32, beta)
    assert out.shape == (b, d) and out.dtype == torch.float32
    np.testing.assert_allclose(out.double().numpy(), ref, atol=5e-4)
    np.testing.assert_allclose(torch.linalg.vector_norm(out, dim=-1).numpy(), 1.0, atol=1e-5)


@SETTINGS
@given(seed=seeds, m=st.integers(1, 20), d=st.integers(2, 32))
def test_large_beta_readout_is_the_nearest_prototype(seed, m, d):
    rng = np.random.default_rng(seed)
    z, p = unit_rows(rng, 1, d), unit_rows(rng, m, d)
    s = np.sort((p @ z[0]))[::-1]
    assume(m == 1 or s[0] - s[1] > 5e-3)           # 1e4 * 5e-3 = 50: the runner-up weighs e^-50
    out = hopfield_retrieve(t32(z), t32(p), 1e4)[0]
    nearest = p[int(np.argmax(p @ z[0]))]
    np.testing.assert_allclose(out.double().numpy(), nearest, atol=1e-5)


@SETTINGS
@given(seed=seeds, m=st.integers(1, 20), d=st.integers(2, 32))
def test_small_beta_readout_is_the_normalised_mean(seed, m, d):
    rng = np.random.default_rng(seed)
    z, p = unit_rows(rng, 1, d), unit_rows(rng, m, d)
    mean = p.mean(axis=0)
    assume(np.linalg.norm(mean) > 0.05)
    out = hopfield_retrieve(t32(z), t32(p), 1e-9)[0]
    np.testing.assert_allclose(out.double().numpy(), mean / np.linalg.norm(mean), atol=1e-4)
    np.testing.assert_allclose(hopfield_weights(t32(z), t32(p), 1e-9).numpy(), 1.0 / m, atol=1e-6)


# =========================================================================== PrototypeMemory


def test_memory_grows_to_m_max_past_the_initial_capacity_then_policy_none_keeps_it():
    rng = np.random.default_rng(0)
    protos = unit_rows(rng, 101, 5)
    mem = PrototypeMemory(5, 100, "none")
    assert mem.size == 0 and len(mem) == 0 and mem.prototypes.shape == (0, 5)
    for t in range(100):
        assert mem.slot_for_write() == t
        assert mem.write(t32(protos[t]), t) == t
        assert mem.size == t + 1
    # data written before the internal buffer grew (64 -> 100) is intact
    np.testing.assert_array_equal(mem.prototypes.numpy(), protos[:100].astype(np.float32))
    before = mem.digest()
    assert mem.slot_for_write() is None
    assert mem.write(t32(protos[100]), 100) is None
    assert mem.size == 100 and mem.digest() == before


def test_memory_m_max_one_policy_none_and_lru():
    a, b = t32([1.0, 0.0]), t32([0.0, 1.0])
    none = PrototypeMemory(2, 1, "none")
    assert none.write(a, 0) == 0 and none.write(b, 1) is None
    assert torch.equal(none.prototypes[0], a)
    lru = PrototypeMemory(2, 1, "lru")
    assert lru.write(a, 0) == 0 and lru.write(b, 1) == 0
    assert torch.equal(lru.prototypes[0], b) and lru.size == 1


def test_lru_replaces_the_least_recently_used_slot_scripted():
    vecs = [t32(np.eye(4)[i % 4] * (1 if i < 4 else -1)) for i in range(8)]
    mem = PrototypeMemory(4, 3, "lru")
    assert [mem.write(vecs[i], t) for i, t in ((0, 0), (1, 1), (2, 2))] == [0, 1, 2]   # used at [0, 1, 2]
    mem.touch(0, 3)                                                                   # [3, 1, 2]
    assert mem.slot_for_write() == 1
    assert mem.write(vecs[3], 4) == 1                                                 # [3, 4, 2]
    assert mem.write(vecs[4], 5) == 2                                                 # [3, 4, 5]
    mem.touch(2, 6)
    mem.touch(1, 7)                                                                   # [3, 7, 6]
    assert mem.write(vecs[5], 8) == 0                                                 # [8, 7, 6]
    assert mem.write(vecs[6], 9) == 2                                                 # [8, 7, 9]
    assert mem.size == 3
    for slot, i in ((0, 5), (1, 3), (2, 6)):
        assert torch.equal(mem.prototypes[slot], vecs[i])


def test_lru_tie_goes_to_the_lowest_slot():
    mem = PrototypeMemory(2, 3, "lru")
    for _ in range(3):
        mem.write(t32([1.0, 0.0]), 0)        # all used at t = 0
    assert mem.slot_for_write() == 0
    mem.touch(0, 1)
    assert mem.slot_for_write() == 1


ops = st.lists(st.one_of(st.tuples(st.just("write"), st.integers(0, 2**16)),
                         st.tuples(st.just("touch"), st.integers(0, 200))), max_size=60)


@SETTINGS
@given(ops=ops, m_max=st.integers(1, 6), policy=st.sampled_from(["none", "lru"]))
def test_memory_against_a_reference_model(ops, m_max, policy):
    d = 3
    mem = PrototypeMemory(d, m_max, policy)
    slots: list[tuple[np.ndarray, int]] = []                  # (vector, last used)
    for t, (op, arg) in enumerate(ops):
        if op == "touch":
            if not slots:
                continue
            j = arg % len(slots)
            mem.touch(j, t)
            slots[j] = (slots[j][0], t)
        else:
            v = unit_rows(np.random.default_rng(arg), 1, d)[0].astype(np.float32)
            if len(slots) < m_max:
                expected = len(slots)
                slots.append((v, t))
            elif policy == "lru":
                expected = min(range(len(slots)), key=lambda j: (slots[j][1], j))
                slots[expected] = (v, t)
            else:
                expected = None
            assert mem.write(torch.from_numpy(v), t) == expected
        assert mem.size == len(slots) <= m_max
        if slots:
            np.testing.assert_array_equal(mem.prototypes.numpy(), np.stack([s[0] for s in slots]))


def test_digest_equality_and_inequality():
    rng = np.random.default_rng(3)
    p = unit_rows(rng, 3, 8)
    a, b = memory_from(p, 5), memory_from(p, 5)
    assert a == b and a.digest() == b.digest()
    assert len(a.digest()) == 64
    # recency is part of the state
    a.touch(1, 10)
    assert a != b
    b.touch(1, 10)
    assert a == b
    # one ulp in one coordinate
    c = memory_from(p, 5)
    c.touch(1, 10)
    v = c.prototypes[2].clone()
    v[0] = torch.nextafter(v[0], torch.tensor(2.0))
    c._data[2] = v
    assert c != a
    # same set, other order
    assert memory_from(p[::-1].copy(), 5) != memory_from(p, 5)
    # the digest does not depend on the internal buffer capacity
    assert memory_from(p, 3) == memory_from(p, 1000)
    assert (a == "not a memory") is False


# =========================================================================== rules


@st.composite
def memories(draw, max_m: int = 20, min_d: int = 2, max_d: int = 32):
    seed = draw(seeds)
    m, d = draw(st.integers(1, max_m)), draw(st.integers(min_d, max_d))
    rng = np.random.default_rng(seed)
    p = unit_rows(rng, m, d)
    if draw(st.booleans()):              # the receiver-side reality: stored latents are Q(z)
        p = Q(torch.from_numpy(p)).double().numpy()
    z = unit_rows(rng, 1, d)[0]
    # bias z toward a prototype half of the time so that hits occur
    if draw(st.booleans()):
        z = p[rng.integers(m)] + draw(st.floats(0.0, 0.6)) * rng.normal(size=d) / np.sqrt(d)
        z /= np.linalg.norm(z)
    return memory_from(p.astype(np.float32)), t32(z)


@pytest.mark.parametrize("name", sorted(RULES))
def test_empty_memory_is_a_miss_for_every_rule(name):
    rule = RULES[name](0.01, 20.0, 4)
    d = rule.decide(t32([1.0, 0.0, 0.0]), PrototypeMemory(3, 4))
    assert d.hit is False and d.index is None and d.score == float("-inf")


def test_make_rule_uses_the_config():
    for name, cls in (("nearest", NearestRule), ("hopfield", HopfieldRule), ("paper", PaperRule)):
        c = LinkConfig(rule=name, tau=0.5, beta=7.0, top_k=3)
        r = make_rule(c)
        assert type(r) is cls and (r.tau, r.beta, r.top_k) == (0.5, 7.0, 3)


@SETTINGS
@given(mz=memories(), tau=st.floats(0.05, 0.95))
def test_nearest_rule_matches_brute_force(mz, tau):
    mem, z = mz
    s = mem.prototypes.double().numpy() @ z.double().numpy()
    order = np.argsort(-s)
    assume(len(s) == 1 or s[order[0]] - s[order[1]] > 1e-5)
    assume(abs(s.max() - tau) > 1e-5)
    dec = NearestRule(tau).decide(z, mem)
    assert dec.index == int(order[0])
    assert dec.hit == bool(s.max() >= tau)
    assert abs(dec.score - s.max()) < 1e-5
    assert torch.equal(NearestRule(tau).readout(dec.index, mem), mem.prototypes[dec.index])


@SETTINGS
@given(seed=seeds, d=st.integers(1, 64), tau=st.floats(0.0, 1.0, exclude_min=True, exclude_max=True),
       beta=st.floats(1e-3, 1e4), quantised=st.booleans())
def test_paper_rule_with_one_prototype_always_hits(seed, d, tau, beta, quantised):
    """Documented degenerate behaviour of Theorem 2's literal rule: z~ = mu_1, so <z~, mu_1> = 1 >= tau."""
    rng = np.random.default_rng(seed)
    mu = unit_rows(rng, 1, d)[0]
    mu = Q(torch.from_numpy(mu)) if quantised else t32(mu)
    mem = PrototypeMemory(d, 4)
    mem.write(mu, 0)
    tau32 = LinkConfig(tau=min(max(tau, 1e-6), 1 - 1e-6)).tau    # what a configured link would use
    for z in (unit_rows(rng, 1, d)[0], -mu.double().numpy()):
        for t in (tau32, min(tau, 0.9999)):
            dec = PaperRule(t, beta).decide(t32(z), mem)
            assert dec.hit and dec.index == 0, (dec, t)


@SETTINGS
@given(mz=memories(), tau=st.floats(0.05, 0.95), beta=st.floats(0.5, 60.0), top_k=st.integers(1, 8))
def test_hopfield_rule_score_is_on_the_receiver_readout(mz, tau, beta, top_k):
    mem, z = mz
    rule = HopfieldRule(tau, beta, top_k)
    dec = rule.decide(z, mem)
    r = rule.readout(dec.index, mem)
    assert r.shape == (mem.d,)
    assert abs(float(z @ r) - dec.score) < 1e-5
    # (H1) in float64: r_j = normalize(sum_k softmax_k(beta <mu_j, mu_k>) mu_k)
    p, z64 = mem.prototypes.double().numpy(), z.double().numpy()
    r_all, _, raw = eq4(p, p, beta)
    assume(raw.min() > 0.05)
    np.testing.assert_allclose(r.double().numpy(), r_all[dec.index], atol=5e-4)
    # (H2): argmax of <z, r_j> over the top_k prototypes nearest to z
    s = p @ z64
    order = np.argsort(-s)
    k = min(top_k, len(s))
    assume(k == len(s) or s[order[k - 1]] - s[order[k]] > 1e-5)
    cands = order[:k]
    sc = r_all[cands] @ z64
    best = np.argsort(-sc)
    assume(k == 1 or sc[best[0]] - sc[best[1]] > 1e-4)
    assume(abs(sc[best[0]] - tau) > 1e-4)
    assert dec.index == int(cands[best[0]])
    assert dec.hit == bool(sc[best[0]] >= tau)
    assert dec.hit == bool(float(z @ r) >= tau)


@SETTINGS
@given(mz=memories(), tau=st.floats(0.05, 0.95), top_k=st.integers(1, 8))
def test_hopfield_rule_tends_to_nearest_rule_as_beta_grows(mz, tau, top_k):
    mem, z = mz
    p = mem.prototypes.double().numpy()
    g = p @ p.T
    np.fill_diagonal(g, -np.inf)
    assume(len(p) == 1 or 1.0 - g.max() > 5e-3)           # separated prototypes: r_j ~ mu_j at beta 1e4
    s = p @ z.double().numpy()
    srt = np.sort(s)[::-1]
    assume(len(s) == 1 or srt[0] - srt[1] > 1e-4)
    assume(abs(srt[0] - tau) > 1e-4)
    h = HopfieldRule(tau, 1e4, top_k).decide(z, mem)
    n = NearestRule(tau, 1e4, top_k).decide(z, mem)
    assert (h.hit, h.index) == (n.hit, n.index)
    assert abs(h.score - n.score) < 1e-4
    np.testing.assert_allclose(HopfieldRule(tau, 1e4).readout(h.index, mem).numpy(),
                               mem.prototypes[h.index].numpy(), atol=1e-5)


def test_readout_does_not_alias_the_memory():
    mem = memory_from(unit_rows(np.random.default_rng(5), 3, 4).astype(np.float32))
    before = mem.digest()
    for name in RULES:
        r = RULES[name](0.5).readout(1, mem)
        r.mul_(0.0)
    assert mem.digest() == before


def test_dequantised_prototype_is_retrieved_by_its_own_latent():
    """A miss stores Q(z); the same z must then hit that prototype (tau below cos(Q(z), z))."""
    rng = np.random.default_rng(9)
    for name in RULES:
        mem = PrototypeMemory(64, 8)
        zs = [t32(v) for v in unit_rows(rng, 5, 64)]
        for t, z in enumerate(zs):
            mem.write(Q(z), t)
        for j, z in enumerate(zs):
            dec = RULES[name](0.99, 20.0, 4).decide(z, mem)
            assert dec.index == j and dec.hit, (name, j, dec)


def test_failed_write_leaves_the_memory_unchanged():
    mem = PrototypeMemory(4, 4)
    mem.write(t32([1.0, 0.0, 0.0, 0.0]), 0)
    before = (mem.size, mem.digest())
    with pytest.raises(Exception):
        mem.write(torch.ones(5) / 5**0.5, 1)
    assert (mem.size, mem.digest()) == before
    with pytest.raises(Exception):
        mem.write(torch.ones(1), 2)
    assert (mem.size, mem.digest()) == before
