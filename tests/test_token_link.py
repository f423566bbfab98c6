"""The memory link over the codebook's token grid (semcom.schemes.token_link, stream version 4)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.test_cli import _fails, semcom

from semcom.errors import SemcomError, WeightsError, WireFormatError
from semcom.schemes.codebook import CodebookReceiver, CodebookTransmitter, load_variant
from semcom.schemes.token_link import HEADER_SIZE, TokenHeader, TokenLinkConfig, decode_stream, encode_clip
from semcom.sources import regime_clip


@pytest.fixture(scope="module")
def model():
    return load_variant("vqvae+channel")


@pytest.fixture(scope="module")
def clip():
    return regime_clip("illum_change", frames=16)


def _plain(model, frames):
    return CodebookReceiver(model).frames(CodebookTransmitter(model).indices(frames))


def test_tau_one_is_lossless_against_the_codebook_and_spends_fewer_bits(model, clip):
    data, tx = encode_clip(clip, TokenLinkConfig(variant="vqvae+channel"), model)
    shown, rx = decode_stream(data, model)
    assert np.array_equal(shown, _plain(model, clip))  # the memory saves bits, never fidelity
    assert torch.equal(rx.memory.prototypes, tx.memory.prototypes)  # both ends hold the same grids
    plain = CodebookTransmitter(model).encode(clip)
    assert len(data) < len(plain)
    assert {r.kind for r in tx.records} >= {"intra", "inter"}


def test_a_static_clip_is_mostly_indices(model):
    frames = regime_clip("static", frames=20)
    data, tx = encode_clip(frames, TokenLinkConfig(variant="vqvae+channel"), model)
    assert sum(r.kind == "hit" for r in tx.records) >= 10
    assert 8 * len(data) / 20 < 0.25 * 512


def test_lossy_tiles_decode_to_what_the_transmitter_shows(model, clip):
    data, tx = encode_clip(clip, TokenLinkConfig(variant="vqvae+channel", tau=0.5, m_max=4), model)
    shown, rx = decode_stream(data, model)
    assert np.array_equal(shown, CodebookReceiver(model).frames(torch.stack(tx.shown)))
    assert rx.memory.size == tx.memory.size <= 4
    bits = sum(r.bits for r in tx.records)
    payload = len(data) - HEADER_SIZE - 4
    assert bits <= 8 * payload <= 1.01 * bits + 64  # the records' information is what the coder wrote


def test_header_round_trip_and_refusals(model, clip):
    data, _ = encode_clip(clip[:3], TokenLinkConfig(variant="vqvae+channel", tau=0.8, m_max=7, tile=1), model)
    h = TokenHeader.from_bytes(data)
    assert (h.frames, h.J, h.config.m_max, h.config.tile) == (3, 256, 7, 1)
    assert h.config.tau == pytest.approx(0.8)
    with pytest.raises(WeightsError, match="stream is for vqvae\\+channel"):
        decode_stream(data, load_variant("vqvae"))
    with pytest.raises(WireFormatError, match="CRC"):
        decode_stream(data[:-1], model)


@pytest.fixture(scope="module")
def token_stream(model, clip):
    return encode_clip(clip[:4], TokenLinkConfig(variant="vqvae+channel", tau=0.75), model)[0]


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255), st.integers(0, 3)), min_size=1, max_size=4))
def test_resealed_mutations_give_frames_or_semcom_errors(model, token_stream, edits):
    from semcom.link.fuzzing import edit, reseal_framed

    x = reseal_framed(edit(token_stream, edits), HEADER_SIZE)
    try:
        header = TokenHeader.from_bytes(x)
        frames, _ = decode_stream(x, model)
    except SemcomError:
        return
    assert frames.shape == (header.frames, header.config.height, header.config.width, 3)


def test_through_the_cli(tmp_path):
    stream = tmp_path / "t.bin"
    rep = json.loads(semcom("encode", "static", "--scheme", "codebook-memory", "--variant", "proposed", "--frames",
                            "12", "-o", stream, "--json").stdout)
    assert rep["scheme"] == "codebook-memory" and rep["tau"] == 1.0 and rep["hit_rate"] > 0
    assert rep["bytes"] == stream.stat().st_size
    dec = json.loads(semcom("decode", stream, "-o", tmp_path / "out", "--json").stdout)
    assert dec["scheme"] == "codebook-memory" and dec["frames"] == 12
    _fails(semcom("encode", "static", "--scheme", "codebook", "--tau", "0.5", "-o", stream, check=False),
           "--tau applies to --scheme memory or codebook-memory")


@pytest.mark.parametrize("path", sorted((Path(__file__).parent / "corpus").glob("v4-*.bin")), ids=lambda p: p.name)
def test_corpus_replays_as_frames_or_semcom_errors(path):
    """Every version-4 input that ever crashed or hung (benchmarks/fuzz_codec_link.py --target tokens), with the
    weights fingerprint set to the shipped weights' and the CRCs resealed so that it still reaches the decoder."""
    from semcom.link.fuzzing import reseal_framed
    from semcom.models.weights import fingerprint

    model = load_variant("proposed")
    data = bytearray(path.read_bytes())
    data[6:10] = fingerprint(model)
    data = reseal_framed(bytes(data), HEADER_SIZE)
    try:
        header = TokenHeader.from_bytes(data)
        frames, _ = decode_stream(data, model)
    except SemcomError:
        return
    assert frames.shape[0] == header.frames
