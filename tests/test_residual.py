"""Residual refinement (eq. 2's epsilon_t): quantiser, messages, endpoints in every framing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from semcom.config import LinkConfig, validated
from semcom.errors import ConfigError
from semcom.link import Receiver, Transmitter
from semcom.link.wire import RefineMessage, decode_message, encode_packet, message_bits, pack_stream, symbol_bits
from semcom.quantization.residual import dequantize_residual, quantize_residual, residual_range


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(1, 8), c=st.floats(1e-3, 1.0), seed=st.integers(0, 1000))
def test_residual_quantiser_error_is_half_a_step_inside_the_range(bits, c, seed):
    e = (torch.rand(64, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * c
    codes = quantize_residual(e, bits, c)
    assert codes.dtype == np.uint8 and int(codes.max()) < 2**bits
    err = (dequantize_residual(codes, bits, c) - e).abs().max()
    assert float(err) <= c / 2**bits * (1 + 1e-5) + 1e-6


def test_residual_range_formula():
    assert residual_range(0.98, 64) == pytest.approx(2.5 * np.sqrt(2 * 0.02 / 64))


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 5000), d=st.integers(1, 80), bits=st.integers(1, 8), data=st.data())
def test_refine_packet_round_trip(m, d, bits, data):
    index = data.draw(st.integers(0, m - 1))
    codes = bytes(data.draw(st.lists(st.integers(0, 2**bits - 1), min_size=d, max_size=d)))
    msg = RefineMessage(index, codes)
    packet = encode_packet(msg, m, bits)
    assert decode_message(packet, m, d, bits) == msg
    assert len(packet) == (symbol_bits(m, True) + 7) // 8 + (d * bits + 7) // 8
    assert message_bits(msg, m, bits) == symbol_bits(m, True) + d * bits


def drifting(seed: int, t: int = 80, d: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = F.normalize(torch.randn(3, d, generator=g), dim=1)
    walk = torch.cumsum(0.04 * torch.randn(t, d, generator=g), dim=0)
    return F.normalize(base[torch.arange(t) * 3 // t] + walk, dim=1)


@pytest.mark.parametrize("coding", ["fixed", "adaptive"])
@pytest.mark.parametrize("rule", ["nearest", "hopfield"])
def test_refined_hits_in_sync_in_every_framing(coding, rule):
    cfg = LinkConfig(rule=rule, coding=coding, d=16, m_max=6, tau=0.85, tau_refine=0.97, residual_bits=3,
                     beta=30.0)
    zs = drifting(4)
    tx, rx_packets = Transmitter(cfg), Receiver(cfg)
    writer, sent, refined = tx.stream_writer(), [], 0
    for z in zs:
        packet = tx.send_latent(z, writer)
        refined += tx.last.refined
        assert torch.equal(rx_packets.receive_latent(packet), tx.last_latent)
        assert rx_packets.memory == tx.memory
        sent.append(tx.last_latent)
    assert refined > 5
    data = pack_stream(tx.header(len(zs)), writer.getvalue())
    rx, h = Receiver.from_header(data)
    assert h.config.residual_bits == 3 and h.config.tau_refine == cfg.tau_refine
    assert all(torch.equal(a, b) for a, b in zip(rx.iter_stream(data, h.frames), sent))
    assert rx.memory == tx.memory


def test_refinement_brings_the_reconstruction_closer():
    base = dict(rule="nearest", d=16, m_max=6, tau=0.85, beta=30.0)
    zs = drifting(5)
    plain = Transmitter(LinkConfig(**base))
    refined = Transmitter(LinkConfig(**base, residual_bits=4, tau_refine=0.999))
    gain, n_refined = [], 0
    for z in zs:
        plain.send_latent(z)
        refined.send_latent(z)
        if refined.last.refined:
            n_refined += 1
            gain.append(float(z @ refined.last_latent - z @ plain.last_latent))
            assert refined.last.paper_bits == plain.last.paper_bits + 16 * 4   # b_res counted in eq. (3)
    assert n_refined > 10 and np.mean(gain) > 0 and min(gain) > -1e-3


def test_tau_refine_must_exceed_tau():
    with pytest.raises(ConfigError, match="tau_refine"):
        validated(LinkConfig, tau=0.99, tau_refine=0.98, residual_bits=2)
    validated(LinkConfig, tau=0.99, tau_refine=0.98, residual_bits=0)  # unused, allowed
