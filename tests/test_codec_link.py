"""The memory link over a spatial codec: bit-exact endpoints, identical memories, hits, refusals, fuzz."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semcom.errors import ConfigError, SemcomError, WeightsError, WireFormatError
from semcom.models.zoo import load_model
from semcom.schemes import stream_version
from semcom.schemes.codec_link import (
    HEADER_SIZE,
    CodecHeader,
    CodecLinkConfig,
    CodecReceiver,
    CodecTransmitter,
    decode_stream,
    encode_clip,
)
from semcom.sources import regime_clip


@pytest.fixture(scope="module")
def model():
    return load_model("hyperprior")


@pytest.fixture(scope="module")
def clip():
    return regime_clip("scene_change", frames=24)


@pytest.mark.parametrize("quality,tau", [(2, 0.9), (7, 0.5), (8, 0.99)])
def test_memories_identical_frame_by_frame(model, clip, quality, tau):
    cfg = CodecLinkConfig(quality=quality, tau=tau, m_max=6)
    tx = CodecTransmitter(cfg, model)
    digests = []
    for frame in clip:
        tx.send(frame)
        digests.append(tx.memory.digest())
    data = tx.finish()
    assert stream_version(data) == 2
    rx, header = CodecReceiver.open(data, model)
    assert header.frames == len(clip) and header.config == cfg
    for t, frame in enumerate(rx.frames(data, header.frames)):
        assert np.array_equal(frame, tx.decoded[t])      # what the receiver decodes is what Tx computed
        assert rx.memory.digest() == digests[t]          # and both memories agree after every frame
    assert rx.memory.size <= 6


def test_static_scene_hits_and_costs_less(model):
    frames = regime_clip("static", frames=24)
    data, tx = encode_clip(frames, CodecLinkConfig(quality=4, tau=0.9), model)
    kinds = [r.kind for r in tx.records]
    assert kinds[0] == "intra" and kinds.count("hit") >= 20
    intra_only, _ = encode_clip(frames, CodecLinkConfig(quality=4, tau=0.9, m_max=1, full_policy="none"), model)
    assert len(data) < len(intra_only) or kinds.count("hit") == len(kinds) - 1


def test_information_content_adds_up_to_the_file(model, clip):
    data, tx = encode_clip(clip, CodecLinkConfig(quality=5), model)
    payload_bits = 8 * (len(data) - HEADER_SIZE - 4)
    info = sum(r.bits for r in tx.records)
    assert abs(payload_bits - info) <= 0.01 * info + 64  # the model's -log2 p is what the coder spends


def test_refusals(model, clip, tmp_path):
    data, _ = encode_clip(clip[:4], CodecLinkConfig(quality=3), model)
    other = load_model("hyperprior")
    with np.errstate(all="ignore"):
        other.log_gain.data += 0.01
    with pytest.raises(WeightsError, match="weights"):
        decode_stream(data, other)
    with pytest.raises(WireFormatError, match="truncated"):
        decode_stream(data[:10], model)
    flipped = bytearray(data)
    flipped[HEADER_SIZE + 2] ^= 1
    with pytest.raises(WireFormatError, match="CRC"):
        decode_stream(bytes(flipped), model)
    with pytest.raises(ConfigError, match="quality"):
        CodecTransmitter(CodecLinkConfig(quality=9), model)
    with pytest.raises(ConfigError, match="spatial"):
        CodecTransmitter(CodecLinkConfig(model="sphere64"), model)
    with pytest.raises(ConfigError, match="frame of 32x32"):
        CodecTransmitter(CodecLinkConfig(), model).send(np.zeros((32, 32, 3), np.uint8))


def _reseal(data: bytes) -> bytes:
    """Recompute both CRCs, as anyone crafting a stream would."""
    body = data[: HEADER_SIZE - 4]
    payload = data[HEADER_SIZE:-4]
    return body + zlib.crc32(body).to_bytes(4, "big") + payload + zlib.crc32(payload).to_bytes(4, "big")


@pytest.fixture(scope="module")
def shaken(model) -> bytes:
    """A valid stream of a hand-held camera: an intra frame, then mostly motion frames."""
    return encode_clip(regime_clip("cam_shake", frames=6), CodecLinkConfig(quality=3, m_max=4), model)[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4))
def test_crafted_streams_decode_or_fail_cleanly(model, shaken, edits):
    data = bytearray(shaken)
    for pos, val in edits:
        data[pos % len(data)] = val
    try:
        out, rx = decode_stream(_reseal(bytes(data)), model)
    except SemcomError:
        return
    assert out.dtype == np.uint8 and out.shape[1:] == (64, 64, 3) and rx.memory.size <= 4


def test_header_declares_bounded_frames(model, clip):
    data, _ = encode_clip(clip[:3], CodecLinkConfig(quality=3), model)
    h = CodecHeader.from_bytes(data)
    big = CodecHeader(h.config, 2**31, h.weights).to_bytes() + data[HEADER_SIZE:]
    with pytest.raises(WireFormatError, match="frames"):
        decode_stream(big, model)


def _semcom(*args, check=True):
    return subprocess.run([sys.executable, "-m", "semcom.cli", *map(str, args)], capture_output=True, text=True,
                          check=check)


def test_cli_encode_decode_with_model_and_quality(tmp_path):
    stream, out = tmp_path / "s.bin", tmp_path / "frames"
    rep = json.loads(_semcom("encode", "low_motion", "-o", stream, "--frames", "12", "-m", "hyperprior",
                             "-q", "3", "--json").stdout)
    for key in ("frames", "bytes", "bits_per_frame_wire", "psnr_db", "hit_rate", "model", "quality", "ms_ssim"):
        assert key in rep
    assert rep["model"] == "hyperprior" and rep["quality"] == 3 and rep["bytes"] == stream.stat().st_size
    dec = json.loads(_semcom("decode", stream, "-o", out, "--json").stdout)   # no model flags: the header says
    assert dec["frames"] == 12 and dec["model"] == "hyperprior" and len(list(out.glob("*.png"))) == 12
    off = json.loads(_semcom("encode", "low_motion", "-o", tmp_path / "off.bin", "--frames", "12", "-q", "3",
                             "--no-memory", "--json").stdout)
    assert off["memory"] is False and off["intra_rate"] == 1.0 and off["bytes"] > rep["bytes"]
    assert json.loads(_semcom("decode", tmp_path / "off.bin", "-o", tmp_path / "off", "--json").stdout)["frames"] == 12
    bad = _semcom("encode", "static", "-o", tmp_path / "x.bin", "-m", "sphere64", "--no-memory", check=False)
    assert bad.returncode != 0 and "--no-memory" in bad.stderr
    bad = _semcom("encode", "static", "-o", tmp_path / "x.bin", "-m", "hyperprior", "-q", "0", check=False)
    assert bad.returncode != 0 and bad.stderr.strip().count("\n") == 0 and "1..8" in bad.stderr
    bad = _semcom("encode", "static", "-o", tmp_path / "x.bin", "-m", "nope", check=False)
    assert "sphere64, hyperprior" in bad.stderr
    bad = _semcom("encode", "static", "-o", tmp_path / "x.bin", "--rule", "nearest", check=False)  # default model
    assert bad.returncode != 0 and "--rule applies to -m sphere64" in bad.stderr


def test_cli_run_with_a_spatial_model(tmp_path):
    out = tmp_path / "run"
    res = json.loads(_semcom("run", "-m", "hyperprior", "-q", "2", "--regimes", "static", "cam_shake", "--frames", "8",
                             "--out", out, "--json").stdout)
    rows = {(r["regime"], r["memory"]): r for r in res["rows"]}
    assert set(rows) == {("static", "on"), ("static", "off"), ("cam_shake", "on"), ("cam_shake", "off")}
    assert rows[("static", "off")]["intra_rate"] == 1.0 and rows[("static", "on")]["hit_rate"] > 0.5
    assert rows[("static", "on")]["bits_per_frame_wire"] < rows[("static", "off")]["bits_per_frame_wire"]
    for name in ("config.json", "results.json", "report.html", "frames.png"):
        assert (out / name).is_file()
    bad = _semcom("run", "-m", "hyperprior", "--ber", "0.01", "--out", tmp_path / "r2", check=False)
    assert bad.returncode != 0 and "sphere64" in bad.stderr
    bad = _semcom("run", "--rules", "nearest", "--out", tmp_path / "r3", check=False)   # the default model
    assert bad.returncode != 0 and "--rules applies to -m sphere64" in bad.stderr and not (tmp_path / "r3").exists()
