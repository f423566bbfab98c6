"""Hostile version-1 streams and session files: CRCs resealed after editing, so the edits reach the decoders.

For any bytes, decoding returns frames or raises SemcomError, after at most the frames that
:func:`semcom.link.fuzzing.work_bound` allows (the work bound, counted in frames: no clocks here).
The campaign behind these tests is ``benchmarks/fuzz_campaign.py``; every input that ever crashed or
hung lies in ``tests/corpus/`` and is replayed here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semcom.config import LinkConfig
from semcom.errors import SemcomError, WireFormatError
from semcom.link import Receiver, Transmitter, coding, wire
from semcom.link.fuzzing import decode_v1, mutate, reseal, seed_inputs, set_field, synthetic_latents, work_bound
from semcom.models import fingerprint, load_autoencoder

CORPUS = Path(__file__).parent / "corpus"
FRAMES = 16


@pytest.fixture(scope="module")
def model():
    return load_autoencoder()


@pytest.fixture(scope="module")
def seeds(model):
    return seed_inputs(model, FRAMES)


def check(data: bytes, model) -> tuple[int, Exception | None]:
    """Decode ``data``; a non-SemcomError propagates (the test fails); the frames decoded stay within the
    work bound. Returns (frames decoded, the rejecting error or None)."""
    counter = [0]
    out = decode_v1(data, model, counter=counter)
    assert counter[0] <= work_bound(data), (counter[0], work_bound(data))
    if out.error is None:
        assert out.frames == out.declared >= 1
    else:
        assert isinstance(out.error, SemcomError)
    return out.frames, out.error


def test_seed_inputs_decode(seeds, model):
    assert set(seeds) >= {"fixed", "adaptive", "session_cues", "session_faults"}
    for name, data in seeds.items():
        frames, error = check(data, model)
        assert error is None, (name, error)
        assert frames == FRAMES


def test_reseal_makes_edits_reach_the_decoder(seeds, model):
    data = bytearray(seeds["fixed"])
    data[wire.HEADER_SIZE + 3] ^= 0x10
    _, unsealed = check(bytes(data), model)
    assert "CRC" in str(unsealed)
    _, sealed = check(reseal(bytes(data)), model)
    assert sealed is None or "CRC" not in str(sealed)
    for name in ("session_cues", "fixed", "adaptive"):
        assert reseal(seeds[name]) == seeds[name]


@settings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["fixed", "adaptive", "fixed_residual", "adaptive_residual", "adaptive_m2",
                             "session_cues", "session_faults"]),
       seed=st.integers(0, 2**32 - 1), other=st.sampled_from(["fixed", "adaptive", "session_faults"]))
def test_mutated_inputs_give_frames_or_semcom_errors(seeds, model, name, seed, other):
    check(mutate(seeds[name], np.random.default_rng(seed), seeds[other]), model)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["fixed", "adaptive", "adaptive_m2", "session_cues"]),
       at=st.integers(0, 10_000), junk=st.binary(min_size=1, max_size=48))
def test_overwritten_bytes_give_frames_or_semcom_errors(seeds, model, name, at, junk):
    data = bytearray(seeds[name])
    at %= len(data)
    data[at : at + len(junk)] = junk
    check(reseal(bytes(data)), model)


def test_every_payload_bit_flip_of_an_adaptive_stream(seeds, model):
    """(a) of issue 12: a flipped payload bit with both CRCs resealed was an AssertionError from constriction."""
    data = seeds["adaptive"]
    rejected_by_coder = 0
    for bit in range(8 * wire.HEADER_SIZE, 8 * (len(data) - wire.TRAILER_SIZE), 3):
        x = bytearray(data)
        x[bit // 8] ^= 1 << (bit % 8)
        x = reseal(bytes(x))
        rx, h = Receiver.from_header(x[: wire.HEADER_SIZE])
        n = 0
        try:
            for _ in rx.iter_stream(x, h.frames):
                n += 1
        except WireFormatError as exc:
            rejected_by_coder += "range decoder rejects" in str(exc)
        assert n <= h.frames
    assert rejected_by_coder > 0  # the case that used to crash is exercised


@pytest.mark.parametrize("field,value", [("d", 65), ("d", 63), ("d", 1), ("height", 80), ("width", 48)])
def test_header_dimensions_are_checked_against_the_model(seeds, model, field, value):
    """(b) of issue 12: a header whose d differs from the model's gave a traceback from a matrix product."""
    data = reseal(set_field(seeds["fixed"], field, value))
    with pytest.raises(WireFormatError, match="this receiver's model has d=64 and 64x64"):
        Receiver.from_header(data[: wire.HEADER_SIZE], model.decoder, fingerprint(model))
    frames, error = check(data, model)
    assert frames == 0 and isinstance(error, WireFormatError)


@pytest.mark.parametrize("name", ["adaptive", "adaptive_m2", "fixed", "session_cues"])
@pytest.mark.parametrize("frames", [wire.MAX_FRAMES + 1, 2**31, 2**32 - 1])
def test_declared_frames_over_the_limit_are_refused_before_decoding(seeds, model, name, frames):
    """(c) of issue 12: a 113-byte adaptive stream declaring 2^31 frames ran for ever."""
    data = reseal(set_field(seeds[name], "frames", frames))
    counter = [0]
    out = decode_v1(data, model, counter=counter)
    assert counter[0] == 0
    assert isinstance(out.error, WireFormatError) and str(wire.MAX_FRAMES) in str(out.error)


def test_a_fixed_stream_cannot_declare_more_frames_than_its_bits(seeds, model):
    data = seeds["fixed"]
    payload_bits = 8 * (len(data) - wire.HEADER_SIZE - wire.TRAILER_SIZE)
    bound = 1 + payload_bits - 8 * 64
    assert work_bound(reseal(set_field(data, "frames", bound + 1))) == bound
    counter = [0]
    out = decode_v1(reseal(set_field(data, "frames", bound + 1)), model, counter=counter)
    assert counter[0] == 0 and f"at most {bound}" in str(out.error)
    counter = [0]
    out = decode_v1(reseal(set_field(data, "frames", bound)), model, counter=counter)
    assert FRAMES <= counter[0] <= bound and isinstance(out.error, WireFormatError)


def test_an_adaptive_stream_stops_once_its_data_has_run_out(seeds, model):
    data = reseal(set_field(seeds["adaptive"], "frames", wire.MAX_FRAMES))
    counter = [0]
    out = decode_v1(data, model, counter=counter)
    assert isinstance(out.error, WireFormatError)
    assert FRAMES <= counter[0] < FRAMES + 64  # stopped soon after the real frames, not at MAX_FRAMES
    assert "ends before" in str(out.error) or "rejects" in str(out.error)


def test_a_long_static_adaptive_stream_is_not_mistaken_for_a_runaway():
    """Hits of a static scene cost a fraction of a bit: thousands of frames after the decoder has used up its
    words are legitimate, and the information decoded past them stays within the coder's 64-bit state."""
    cfg = LinkConfig(coding="adaptive", m_max=2, residual_bits=2, tau=0.97, tau_refine=0.999, rule="nearest")
    z = torch.cat([synthetic_latents(30, seed=1), synthetic_latents(1, seed=2).repeat(1500, 1)])
    tx = Transmitter(cfg)
    writer = tx.stream_writer()
    for zt in z:
        tx.send_to_stream(zt, writer)
    data = wire.pack_stream(tx.header(len(z)), writer.getvalue())
    assert len(data) < 8 * len(z)  # well under a byte per frame
    rx, h = Receiver.from_header(data[: wire.HEADER_SIZE])
    reader = coding.AdaptiveReader(wire.stream_payload(data), cfg.residual_bits)
    for _ in range(h.frames):
        rx._receive(reader.read(rx.memory, cfg.d))
    reader.finish()
    assert reader.exhausted_bits is not None and reader.exhausted_bits <= 64
    assert rx.memory == tx.memory


def test_fixed_reader_bound_is_exact_for_a_miss_then_one_bit_hits():
    """The bound is tight: one miss, then 1-bit hits of a one-slot memory, fill the payload exactly."""
    cfg = LinkConfig(m_max=1, rule="nearest")
    z = synthetic_latents(1, seed=3).repeat(9, 1)
    tx = Transmitter(cfg)
    writer = tx.stream_writer()
    for zt in z:
        tx.send_to_stream(zt, writer)
    payload = writer.getvalue()
    assert coding.FixedReader(payload).max_frames(cfg.d) == 8 * len(payload) - 8 * cfg.d + 1 >= len(z)
    assert coding.FixedReader(payload[:63]).max_frames(cfg.d) == 0


def _corpus() -> list[Path]:
    """The version-1 inputs (``v<N>-*`` files belong to the other stream versions' tests)."""
    return sorted(p for p in CORPUS.glob("*.bin") if not p.name.startswith("v"))


def test_the_corpus_is_there():
    names = [p.name for p in _corpus()]
    assert any(n.startswith("crash-") for n in names) and any(n.startswith("hang-") for n in names)


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: p.name)
def test_corpus_replays_as_frames_or_semcom_errors(path, model):
    """Every input that ever crashed or hung. The weights fingerprint is set to the model's and the CRCs
    resealed, so the input still reaches the decoders after the shipped weights change."""
    data = path.read_bytes()
    if len(data) >= wire.HEADER_SIZE:
        hs = wire._HEADER.size
        fields = list(wire._HEADER.unpack(data[:hs]))
        fields[11] = fingerprint(model)
        data = reseal(wire._HEADER.pack(*fields) + data[hs:])
    check(data, model)
    check(path.read_bytes(), model)
