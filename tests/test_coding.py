"""Stream coders: fixed-length (the paper) and adaptive arithmetic coding (semcom.link.coding)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from semcom.config import LinkConfig
from semcom.errors import WireFormatError
from semcom.link import Receiver, StreamHeader, Transmitter
from semcom.link.coding import recency_rank, slot_of_rank
from semcom.link.wire import HEADER_SIZE, pack_stream
from semcom.memory import PrototypeMemory


def drifting_latents(seed: int, t: int = 60, d: int = 16, scenes: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = F.normalize(torch.randn(scenes, d, generator=g), dim=1)
    which = torch.randint(scenes, (t,), generator=g).sort().values  # long runs of one scene
    return F.normalize(base[which] + 0.08 * torch.randn(t, d, generator=g), dim=1)


def stream(cfg: LinkConfig, zs: torch.Tensor) -> tuple[bytes, Transmitter, list[torch.Tensor]]:
    tx = Transmitter(cfg)
    writer = tx.stream_writer()
    sent = []
    for z in zs:
        tx.send_to_stream(z, writer)
        sent.append(tx.last_latent)
    return pack_stream(tx.header(len(zs)), writer.getvalue()), tx, sent


@pytest.mark.parametrize("rule", ["nearest", "hopfield", "paper"])
@pytest.mark.parametrize("policy", ["none", "lru"])
def test_adaptive_stream_decodes_to_the_same_latents_and_memory(rule, policy):
    cfg = LinkConfig(rule=rule, full_policy=policy, coding="adaptive", d=16, m_max=5, tau=0.9, beta=8.0)
    data, tx, sent = stream(cfg, drifting_latents(1))
    rx, header = Receiver.from_header(data)
    assert header.config.coding == "adaptive"
    got = list(rx.iter_stream(data, header.frames))
    assert all(torch.equal(a, b) for a, b in zip(got, sent)) and len(got) == len(sent)
    assert rx.memory == tx.memory


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_adaptive_coding_is_lossless_and_smaller_on_repetitive_content(seed):
    zs = drifting_latents(seed, t=80, d=32)
    fixed, _, _ = stream(LinkConfig(rule="nearest", d=32, tau=0.95), zs)
    adaptive, tx, sent = stream(LinkConfig(rule="nearest", d=32, tau=0.95, coding="adaptive"), zs)
    rx, h = Receiver.from_header(adaptive)
    assert all(torch.equal(a, b) for a, b in zip(rx.iter_stream(adaptive, h.frames), sent))
    assert len(adaptive) < len(fixed)


@settings(max_examples=50, deadline=None)
@given(used=st.lists(st.integers(0, 20), min_size=1, max_size=40))
def test_recency_rank_is_a_permutation_and_inverts(used):
    mem = PrototypeMemory(2, len(used))
    for t in used:
        mem.write(torch.tensor([1.0, 0.0]), t)
    ranks = [recency_rank(mem, s) for s in range(mem.size)]
    assert sorted(ranks) == list(range(mem.size))
    assert all(slot_of_rank(mem, r) == s for s, r in enumerate(ranks))
    # rank 0 is the most recently used slot
    assert used[slot_of_rank(mem, 0)] == max(used)


def test_damaged_adaptive_stream_is_rejected_before_decoding():
    cfg = LinkConfig(rule="hopfield", coding="adaptive", d=16, m_max=5, tau=0.9, beta=8.0)
    data, _, _ = stream(cfg, drifting_latents(2))
    bad = bytearray(data)
    bad[HEADER_SIZE + 2] ^= 1
    rx, h = Receiver.from_header(bytes(bad))
    with pytest.raises(WireFormatError, match="CRC"):
        list(rx.iter_stream(bytes(bad), h.frames))
    assert rx.t == 0 and rx.memory.size == 0


def test_header_carries_the_coding():
    for coding in ("fixed", "adaptive"):
        h = StreamHeader(LinkConfig(coding=coding))
        assert StreamHeader.from_bytes(h.to_bytes()).config.coding == coding


def test_adaptive_payload_must_be_whole_words():
    cfg = LinkConfig(coding="adaptive", d=16)
    data, _, _ = stream(cfg, drifting_latents(3, t=5))
    header, payload = data[:HEADER_SIZE], data[HEADER_SIZE:-4]
    resealed = pack_stream(header, payload + b"\0")
    rx, h = Receiver.from_header(resealed)
    with pytest.raises(WireFormatError, match="32-bit words"):
        list(rx.iter_stream(resealed, h.frames))
