"""Classical codec anchors: real bits, decodes from those bits, and matched PSNR."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from semcom.anchors import CODECS, EncodedClip, PillowCodec, PyAVCodec, get_codec, match_psnr
from semcom.anchors.codecs import strip_h264_user_data_sei
from semcom.anchors.survey import anchor_table
from semcom.errors import ConfigError, SourceError
from semcom.metrics import psnr
from semcom.sources import regime_clip

NAMES = sorted(CODECS)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return regime_clip("low_motion", frames=12)


def test_registry_has_the_issue_codecs():
    # Pillow's JPEG and PyAV's x264 are always built in the wheels this project pins
    assert {"jpeg", "h264"} <= set(CODECS)
    assert set(CODECS) <= {"jpeg", "webp", "h264", "hevc", "av1"}
    with pytest.raises(ConfigError, match="unknown codec"):
        get_codec("mpeg2")


def _ladder(codec) -> list[float]:
    """Three knob values from low to high fidelity."""
    lo, hi = codec.param_range
    values = [lo, (lo + hi) / 2, hi - (hi - lo) / 10]
    if codec.integer:
        values = [round(v) for v in values]
    return values if codec.higher_is_better else values[::-1]


@pytest.mark.parametrize("name", NAMES)
def test_higher_quality_more_bits_higher_psnr(name, clip):
    codec = CODECS[name]
    encoded = [codec.encode(clip, q) for q in _ladder(codec)]
    bits = [e.bits_total for e in encoded]
    psnrs = [psnr(clip, e.decoded) for e in encoded]
    assert bits[0] < bits[1] < bits[2], bits
    assert psnrs[0] < psnrs[1] + 0.1 and psnrs[1] < psnrs[2] + 0.1, psnrs
    assert psnrs[2] > psnrs[0] + 5, psnrs
    for e in encoded:
        assert isinstance(e, EncodedClip)
        assert e.decoded.shape == clip.shape and e.decoded.dtype == np.uint8
        assert e.bits_total % 8 == 0 and e.bits_per_frame == e.bits_total / len(clip)


@pytest.mark.parametrize("name", NAMES)
def test_bits_are_the_real_bytes(name, clip):
    codec = CODECS[name]
    q = _ladder(codec)[1]
    enc = codec.encode(clip, q)
    assert enc.bits_total == 8 * sum(len(d) for d in enc.data)
    if isinstance(codec, PillowCodec):
        files = [codec.encode_frame(f, q) for f in clip]  # re-encode: the same files again
        assert list(enc.data) == files
        with Image.open(io.BytesIO(files[3])) as im:  # decoded by Pillow from the very bytes counted
            assert np.array_equal(np.asarray(im.convert("RGB")), enc.decoded[3])
        assert 0 < enc.param["header_bytes"] < enc.param["bytes"]
    else:
        assert isinstance(codec, PyAVCodec)
        stream, packets, _ = codec.encode_stream(clip, q)
        assert enc.data == (stream,)  # single-threaded encoders: the same bytes again
        assert np.array_equal(np.stack(codec.decode_stream(stream)), enc.decoded)
        assert enc.param["container_bytes"] > enc.param["bytes"]


@pytest.mark.skipif("hevc" not in CODECS, reason="libx265 not available")
@pytest.mark.parametrize("size", [(64, 64), (64, 48)])
def test_x265_small_frames_are_deterministic(size):
    # libx265 4.1 at its default CTU: run-to-run different bytes at 64 x 64, heap overflow at width 48
    frames = regime_clip("high_motion", frames=8, height=size[0], width=size[1])
    codec = CODECS["hevc"]
    streams = {codec.encode_stream(frames, 20.0)[0] for _ in range(4)}
    assert len(streams) == 1


@pytest.mark.skipif("h264" not in CODECS, reason="libx264 not available")
def test_x264_version_sei_is_stripped_and_decodes_the_same(clip):
    codec = CODECS["h264"]
    stripped, packets, param = codec.encode_stream(clip, 30.0)
    raw = b"".join(bytes(p) for p in packets)
    assert b"x264 - core" in raw and b"x264 - core" not in stripped
    assert len(raw) - len(stripped) == param["sei_bytes_stripped"] > 100
    assert np.array_equal(np.stack(codec.decode_stream(raw)), np.stack(codec.decode_stream(stripped)))
    # only the user-data SEI goes: a synthetic stream with a recovery-point SEI (type 6) keeps it
    sps = b"\x00\x00\x00\x01\x67\x64"
    sei5, sei6 = b"\x00\x00\x01\x06\x05\x01\xaa\x80", b"\x00\x00\x01\x06\x06\x01\x00\x80"
    assert strip_h264_user_data_sei(sps + sei5 + sei6) == (sps + sei6, len(sei5))


@pytest.mark.parametrize("name", [n for n in NAMES if isinstance(CODECS[n], PyAVCodec)])
def test_video_codecs_pad_odd_and_tiny_sizes(name):
    frames = regime_clip("high_motion", frames=3, height=18, width=30)[:, :13, :11]
    enc = CODECS[name].encode(frames, _ladder(CODECS[name])[1])
    assert enc.decoded.shape == frames.shape
    assert psnr(frames, enc.decoded) > 20


@pytest.mark.parametrize("name", NAMES)
def test_match_psnr_hits_a_reachable_target(name, clip):
    r = match_psnr(name, clip, 32.0)
    assert r.matched and r.reason is None, r.reason
    assert abs(r.psnr_db - 32.0) <= 0.2
    assert r.codec == name and r.frames == len(clip) and r.bits_per_frame == r.bits_total / len(clip)
    assert 0 < r.ssim < 1 and r.at_least_target is None


@pytest.mark.parametrize("name", NAMES)
def test_match_psnr_reports_unreachable_targets(name, clip):
    cache: dict = {}
    high = match_psnr(name, clip, 80.0, cache=cache)
    assert not high.matched and "cannot reach 80 dB" in high.reason
    assert high.param == CODECS[name].best
    low = match_psnr(name, clip, 5.0, cache=cache)
    assert not low.matched and "cannot go down to 5 dB" in low.reason
    assert low.param == CODECS[name].worst and low.psnr_db > 5.2
    assert low.at_least_target is not None and low.at_least_target.bits_per_frame == low.bits_per_frame


def test_bad_inputs_are_clear_errors(clip):
    jpeg = CODECS["jpeg"]
    with pytest.raises(ConfigError, match="quality must be in"):
        jpeg.encode(clip, 0)
    with pytest.raises(ConfigError, match="integer"):
        jpeg.encode(clip, 50.5)
    with pytest.raises(SourceError):
        jpeg.encode(clip.astype(np.float32), 50)
    with pytest.raises(ConfigError, match="tol_db"):
        match_psnr("jpeg", clip, 30.0, tol_db=0)


def test_anchor_table_rows(clip):
    rows = anchor_table(["static"], targets=(30.0, 80.0), codecs=["jpeg"], frames=4)
    assert [r["target_db"] for r in rows] == [30.0, 80.0]
    keys = {"regime", "codec", "target_db", "param", "psnr_db", "ssim", "bits_per_frame", "matched", "reason"}
    assert all(keys <= set(r) for r in rows)
    assert rows[0]["matched"] and not rows[1]["matched"] and rows[1]["reason"]
    assert rows[0]["encodes"] == rows[1]["encodes"] and rows[0]["seconds_per_encode"] > 0
