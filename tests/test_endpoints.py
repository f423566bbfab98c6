"""Transmitter and Receiver over synthetic latent sequences: the memories stay in step, bits are counted."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semcom.config import LinkConfig
from semcom.errors import WeightsError, WireFormatError
from semcom.link import HEADER_SIZE, Receiver, Transmitter
from semcom.link.coding import FixedWriter
from semcom.link.wire import BitWriter, message_bits, pack_stream, symbol_bytes, write_message
from semcom.quantization import dequantize, quantize

D = 16
RULES = ("nearest", "hopfield", "paper")
POLICIES = ("none", "lru")


def synthetic_latents(seed: int, t: int = 40, d: int = D, concepts: int = 3, drift: float = 0.08,
                      p_jump: float = 0.15, p_switch: float = 0.15) -> list[torch.Tensor]:
    """Latents drifting around a few prototypes, with switches between them and random jumps."""
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(concepts, d))
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    cur = protos[0]
    out = []
    for _ in range(t):
        u = rng.random()
        if u < p_jump:
            cur = rng.normal(size=d)                       # a brand-new scene
        elif u < p_jump + p_switch:
            cur = protos[rng.integers(concepts)]           # back to a known concept
        z = cur / np.linalg.norm(cur) + drift * rng.normal(size=d) / np.sqrt(d)
        cur = 0.7 * cur / np.linalg.norm(cur) + 0.3 * z / np.linalg.norm(z)   # slow drift of the concept
        out.append(torch.from_numpy(z / np.linalg.norm(z)).to(torch.float32))
    return out


def ref_symbol_bits(m: int) -> int:
    """ceil(log2(M + 1)): the smallest b with 2**b >= M + 1."""
    b = 0
    while 2**b < m + 1:
        b += 1
    return b


def expected_paper_bits(hit: bool, m_prev: int, d: int) -> int:
    if not hit:
        return 8 * d
    return 0 if m_prev <= 1 else math.ceil(math.log2(m_prev))


def preload(config: LinkConfig, *endpoints, n: int = 2, seed: int = 1234) -> None:
    """Write the same ``n`` quantised prototypes into each endpoint's memory (an offline-learned
    shared memory, Section II-A). Needed for the ``paper`` rule, whose memory never grows past one
    prototype when it starts empty (its documented degenerate behaviour)."""
    rng = np.random.default_rng(seed)
    for j in range(n):
        codes = quantize(torch.from_numpy(rng.normal(size=config.d)).float().div_(4.0))
        for e in endpoints:
            e.memory.write(dequantize(codes), -1 - j)


def run_link(config: LinkConfig, latents, check=True, writer: BitWriter | None = None):
    """Packet framing: one ``send_latent`` packet per frame, decoded by ``receive_latent``.
    With ``writer``, each frame's message is also appended to a bit-packed stream."""
    tx = Transmitter(config)
    rx, _ = Receiver.from_header(tx.header(len(latents)))
    if config.rule == "paper":
        preload(config, tx, rx)
    assert tx.memory == rx.memory
    msgs, recs, outs = [], [], []
    for z in latents:
        m_prev = tx.memory.size
        msg = tx.send_latent(z)
        rec = tx.last
        if writer is not None:
            write_message(writer, tx.last_message, m_prev)
        out = rx.receive_latent(msg)
        msgs.append(msg)
        recs.append(rec)
        outs.append(out)
        if not check:
            continue
        assert tx.memory == rx.memory and tx.memory.digest() == rx.memory.digest()
        assert torch.equal(out, tx.last_latent)
        assert rx.t == tx.t == rec.t + 1
        assert rec.packet_bits == 8 * len(msg)
        assert rec.wire_bits == message_bits(tx.last_message, m_prev)
        assert rec.wire_bits == ref_symbol_bits(m_prev) + (0 if rec.hit else 8 * config.d)
        assert rec.paper_bits == expected_paper_bits(rec.hit, m_prev, config.d)
        assert rec.memory_size == tx.memory.size
        if rec.hit:
            assert 0 <= rec.index < m_prev
            assert len(msg) == symbol_bytes(m_prev)
            assert rec.score >= config.tau and rec.stored_slot is None
            assert rec.memory_size == m_prev
            assert torch.equal(out, tx.rule.readout(rec.index, tx.memory))
        else:
            assert len(msg) == symbol_bytes(m_prev) + config.d
            assert torch.equal(out, dequantize(quantize(z)))
            if m_prev < config.m_max:
                assert rec.stored_slot == m_prev and rec.memory_size == m_prev + 1
            elif config.full_policy == "none":
                assert rec.stored_slot is None and rec.memory_size == m_prev
            else:
                assert rec.stored_slot is not None and rec.memory_size == m_prev
            if rec.stored_slot is not None:
                assert torch.equal(rx.memory.prototypes[rec.stored_slot], out)
        assert abs(float(torch.linalg.vector_norm(out)) - 1.0) < 1e-5
    return tx, rx, msgs, recs, outs


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("rule", RULES)
def test_memories_stay_identical_and_bits_are_counted(rule, policy):
    cfg = LinkConfig(rule=rule, full_policy=policy, d=D, m_max=4, tau=0.9, beta=8.0, top_k=3)
    hits = misses = 0
    filled = full_misses = False
    for seed in range(3):
        tx, rx, msgs, recs, _ = run_link(cfg, synthetic_latents(seed))
        hits += sum(r.hit for r in recs)
        misses += sum(not r.hit for r in recs)
        filled |= tx.memory.size == cfg.m_max
        full_misses |= any(not r.hit and i > 0 and recs[i - 1].memory_size == cfg.m_max
                           for i, r in enumerate(recs))
    # the scenario exercises everything: hits, misses, a full memory and misses while full
    assert hits > 0 and misses > 0 and filled and full_misses


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rule=st.sampled_from(RULES), policy=st.sampled_from(POLICIES),
       m_max=st.integers(1, 5), tau=st.floats(0.3, 0.99), beta=st.floats(0.5, 50.0), top_k=st.integers(1, 4),
       drift=st.floats(0.0, 0.5))
def test_memories_stay_identical_on_random_links(seed, rule, policy, m_max, tau, beta, top_k, drift):
    cfg = LinkConfig(rule=rule, full_policy=policy, d=8, m_max=m_max, tau=tau, beta=beta, top_k=top_k)
    run_link(cfg, synthetic_latents(seed, t=25, d=8, drift=drift))


@pytest.mark.parametrize("m_max", [1, 4])
def test_paper_rule_from_an_empty_memory_hits_everything_after_the_first_frame(m_max):
    """Documented degenerate behaviour: with one prototype z~ = mu_1, so every later frame is a hit
    (0 paper bits, 1 wire byte) whatever its content, and the memory never grows."""
    cfg = LinkConfig(rule="paper", d=D, m_max=m_max, tau=0.99, full_policy="lru")
    tx = Transmitter(cfg)
    rx, _ = Receiver.from_header(tx.header())
    recs = []
    for z in synthetic_latents(7, p_jump=0.5):
        rx.receive_latent(tx.send_latent(z))
        recs.append(tx.last)
    assert not recs[0].hit
    assert all(r.hit and r.index == 0 and r.paper_bits == 0 and r.packet_bits == 8 and r.wire_bits == 1
               for r in recs[1:])
    assert tx.memory.size == 1 and tx.memory == rx.memory


def _in_step_receiver(seed=0, frames=20, **kw):
    cfg = LinkConfig(d=D, m_max=4, tau=0.9, beta=8.0, **kw)
    tx, rx, msgs, _, _ = run_link(cfg, synthetic_latents(seed, t=frames))
    return cfg, tx, rx


@pytest.mark.parametrize("rule", RULES)
def test_rejected_messages_leave_the_receiver_untouched(rule):
    cfg, tx, rx = _in_step_receiver(rule=rule)
    m = rx.memory.size
    assert tx.memory == rx.memory and tx.t == rx.t
    n = symbol_bytes(m)
    assert m == 4 and n == 1
    bad = {
        "empty": b"",
        "truncated miss": m.to_bytes(n, "big") + bytes(cfg.d - 1),
        "symbol out of range": (m + 1).to_bytes(n, "big"),
        "symbol out of range with codes": (m + 1).to_bytes(n, "big") + bytes(cfg.d),
        "hit with trailing byte": (0).to_bytes(n, "big") + b"\0",
        "miss with trailing byte": m.to_bytes(n, "big") + bytes(cfg.d + 1),
    }
    digest, t = rx.memory.digest(), rx.t
    for what, msg in bad.items():
        with pytest.raises(WireFormatError):
            rx.receive_latent(msg)
        assert rx.memory.digest() == digest and rx.t == t, what
    # and the link goes on in step
    for z in synthetic_latents(99, t=10):
        out = rx.receive_latent(tx.send_latent(z))
        assert torch.equal(out, tx.last_latent) and tx.memory == rx.memory


def test_receiver_from_header_checks_the_weights():
    cfg = LinkConfig(d=D, m_max=4, tau=0.9, beta=8.0)
    tx = Transmitter(cfg, weights_id=b"\x01\x02\x03\x04")
    header = tx.header(12)
    with pytest.raises(WeightsError):
        Receiver.from_header(header, weights_id=b"\x01\x02\x03\x05")
    rx, h = Receiver.from_header(header, weights_id=b"\x01\x02\x03\x04")
    assert rx.config == cfg and h.frames == 12 and h.weights == b"\x01\x02\x03\x04"
    rx, h = Receiver.from_header(header)          # no weights to compare: accepted
    assert rx.config == cfg
    with pytest.raises(WireFormatError):
        Receiver.from_header(header[:-1])


def test_transmitter_without_encoder_and_receiver_without_decoder():
    cfg = LinkConfig(d=D, m_max=4, height=16, width=16)
    with pytest.raises(WeightsError):
        Transmitter(cfg).send(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(WeightsError):
        Receiver(cfg).decode(torch.zeros(1, D))


def _stream(rule="hopfield", policy="lru", seed=1, frames=30):
    """A bit-packed stream (header + messages back to back) and the packets of the same frames."""
    cfg = LinkConfig(rule=rule, full_policy=policy, d=D, m_max=4, tau=0.9, beta=8.0)
    writer = BitWriter()
    tx, rx, msgs, recs, outs = run_link(cfg, synthetic_latents(seed, t=frames), writer=writer)
    body = writer.getvalue()
    assert writer.bits == sum(r.wire_bits for r in recs)
    assert len(body) == -(-writer.bits // 8)
    return tx.header(frames) + body, msgs, recs, outs, tx


def _seal(data):
    """Header + payload -> a stream file with its payload CRC-32 trailer."""
    return pack_stream(data[:HEADER_SIZE], data[HEADER_SIZE:])


def _rx(data):
    rx, h = Receiver.from_header(data)
    if rx.config.rule == "paper":
        preload(rx.config, rx)
    return rx, h


def _msg_start_bits(recs):
    return np.cumsum([8 * HEADER_SIZE] + [r.wire_bits for r in recs])


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("rule", RULES)
def test_iter_stream_yields_the_same_latents(rule, policy):
    data, msgs, recs, outs, tx = _stream(rule, policy)
    rx, h = _rx(data)
    got = list(rx.iter_stream(_seal(data), h.frames))
    assert len(got) == len(outs) == h.frames == 30
    assert all(torch.equal(a, b) for a, b in zip(got, outs))
    assert rx.memory == tx.memory and rx.t == tx.t


def test_send_to_stream_writes_the_same_stream():
    cfg = LinkConfig(rule="hopfield", d=D, m_max=4, tau=0.9, beta=8.0)
    zs = synthetic_latents(11, t=30)
    a, b, writer, ref = Transmitter(cfg), Transmitter(cfg), FixedWriter(), BitWriter()
    for z in zs:
        m_prev = a.memory.size
        a.send_latent(z)
        write_message(ref, a.last_message, m_prev)
        b.send_to_stream(z, writer)
        assert a.last == b.last and torch.equal(a.last_latent, b.last_latent)
    assert writer.getvalue() == ref.getvalue() and writer.bits.bits == ref.bits
    assert a.memory == b.memory


def test_stream_is_shorter_than_the_packets():
    data, msgs, recs, _, _ = _stream(seed=4)
    assert len(data) - HEADER_SIZE <= sum(len(m) for m in msgs)
    assert 8 * (len(data) - HEADER_SIZE) - sum(r.wire_bits for r in recs) in range(8)


def test_iter_stream_reports_the_frame_of_a_truncated_message():
    data, msgs, recs, outs, _ = _stream(seed=2)
    starts = _msg_start_bits(recs)
    misses = [k for k, r in enumerate(recs) if not r.hit and k > 0]
    assert misses
    for k in (misses[len(misses) // 2], misses[-1]):
        cut = (int(starts[k]) + recs[k].wire_bits // 2) // 8     # stop in the middle of frame k's miss
        rx, h = _rx(data)
        got = []
        with pytest.raises(WireFormatError, match=rf"frame {k}\b.*truncated"):
            for z in rx.iter_stream(_seal(data[:cut]), h.frames):
                got.append(z)
        assert len(got) == k and all(torch.equal(a, b) for a, b in zip(got, outs))
        assert rx.t == k


def test_iter_stream_reports_the_frame_of_a_symbol_out_of_range():
    data, msgs, recs, outs, _ = _stream(seed=3)
    starts = _msg_start_bits(recs)
    k = next(k for k in range(len(recs)) if k > 0 and recs[k - 1].memory_size == 4)
    bits = ref_symbol_bits(4)                           # 3 bits; memory of 4: symbols 5..7 are invalid
    value = int.from_bytes(data, "big")
    shift = 8 * len(data) - int(starts[k]) - bits
    bad = (value | (((1 << bits) - 1) << shift)).to_bytes(len(data), "big")   # symbol := 0b111
    rx, h = _rx(bad)
    with pytest.raises(WireFormatError, match=rf"frame {k}\b.*out of range"):
        list(rx.iter_stream(_seal(bad), h.frames))


def test_iter_stream_rejects_a_wrong_frame_count_and_trailing_data():
    data, msgs, recs, outs, _ = _stream(seed=5)
    n = len(recs)
    pad = 8 * (len(data) - HEADER_SIZE) - sum(r.wire_bits for r in recs)
    assert pad < ref_symbol_bits(4) * 2
    for bad, frames in ((data + b"\0", n), (data + b"\xff", n), (data, n + 2), (data, n + 10), (data, 0), (data, -1)):
        rx, _ = _rx(data)
        with pytest.raises(WireFormatError):
            list(rx.iter_stream(_seal(bad), frames))
    # fewer frames than the stream holds: the rest is rejected unless it fits in the padding
    rx, _ = _rx(data)
    if recs[-1].wire_bits + pad >= 8:
        with pytest.raises(WireFormatError, match="unexpected"):
            list(rx.iter_stream(_seal(data), n - 1))
    # non-zero padding bits are rejected
    if pad:
        rx, _ = _rx(data)
        bad = data[:-1] + bytes([data[-1] | 1])
        with pytest.raises(WireFormatError):
            list(rx.iter_stream(_seal(bad), n))


def test_iter_stream_rejects_a_stream_with_fewer_frames_than_announced():
    data, msgs, recs, outs, _ = _stream(seed=5)
    n = len(recs)
    pad = 8 * (len(data) - HEADER_SIZE) - sum(r.wire_bits for r in recs)
    assert recs[-1].memory_size == 4 and pad >= ref_symbol_bits(4)      # the situation this test is about
    rx, _ = _rx(data)
    with pytest.raises(WireFormatError):   # the payload CRC trailer is missing: rejected before decoding
        list(rx.iter_stream(data, n + 1))


def test_stream_crc_trailer_rejects_damage_and_truncation():
    data, msgs, recs, outs, _ = _stream(seed=6)
    sealed = _seal(data)
    rx, h = _rx(sealed)
    assert len(list(rx.iter_stream(sealed, h.frames))) == h.frames
    for bad in (sealed[:-1], sealed[:-5] + sealed[-4:], sealed[:HEADER_SIZE + 3] + bytes([sealed[HEADER_SIZE + 3] ^ 4])
                + sealed[HEADER_SIZE + 4:]):
        rx, h = _rx(sealed)
        with pytest.raises(WireFormatError, match="CRC|truncated"):
            list(rx.iter_stream(bad, h.frames))
        assert rx.t == 0 and rx.memory.size == 0          # nothing decoded from a damaged stream


@pytest.mark.parametrize("rule", RULES)
def test_float64_latents_are_handled(rule):
    from semcom.errors import SemcomError
    cfg = LinkConfig(rule=rule, d=D, m_max=4, tau=0.9, beta=8.0)
    zs = synthetic_latents(5, t=5)
    ref = Transmitter(cfg)
    expected = [ref.send_latent(z) for z in zs]
    tx = Transmitter(cfg)
    try:
        got = [tx.send_latent(z.double()) for z in zs]
    except SemcomError:
        return
    assert got == expected
