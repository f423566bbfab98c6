"""Motion frames of the codec link: global motion compensation of the anchor, per tile, bit-exact at both ends."""

from __future__ import annotations

import numpy as np
import pytest

from semcom.errors import WireFormatError
from semcom.models.zoo import load_model
from semcom.schemes.codec_link import MOTION, CodecHeader, CodecLinkConfig, decode_stream, encode_clip, link_stats
from semcom.sources import regime_clip


@pytest.fixture(scope="module")
def model():
    return load_model("hyperprior")


@pytest.fixture(scope="module")
def pan():
    return regime_clip("high_motion", frames=16)


def test_a_pan_is_coded_by_motion_frames_and_decoded_bit_exactly(model, pan):
    data, tx = encode_clip(pan, CodecLinkConfig(quality=4, tau=0.95), model)
    kinds = [r.kind for r in tx.records]
    assert kinds[0] == "intra" and kinds.count("motion") >= 4
    mixed = [r for r in tx.records if r.kind == "motion" and 0 < r.tiles_predicted < r.tiles]
    assert mixed, "a fast pan brings new content in at the borders: some tiles must be coded"
    assert tx.base_counts[1] > 1, "some coded tiles are coded given the prediction's latent"
    out, rx = decode_stream(data, model)
    assert np.array_equal(out, np.stack(tx.decoded))
    assert rx.memory.digest() == tx.memory.digest()
    assert np.array_equal(rx.motion.counts, tx.motion.counts) and np.array_equal(rx.tile_counts, tx.tile_counts)
    stats = link_stats(tx.records)
    assert stats["motion_rate"] == kinds.count("motion") / len(kinds) and 0 < stats["tile_predicted_rate"] < 1


def test_motion_costs_fewer_bits_on_slow_motion(model):
    """On a slow pan the rate-distortion decision takes motion frames, and the stream shrinks against the memory
    alone, at no more than 1 dB of PSNR."""
    from semcom.metrics import psnr

    frames = regime_clip("low_motion", frames=16)
    with_motion, tx = encode_clip(frames, CodecLinkConfig(quality=4, tau=0.95), model)
    without, tx0 = encode_clip(frames, CodecLinkConfig(quality=4, tau=0.95, motion=False), model)
    assert "motion" not in [r.kind for r in tx0.records]
    assert len(with_motion) < 0.6 * len(without)
    assert psnr(frames, np.stack(tx.decoded)) > psnr(frames, np.stack(tx0.decoded)) - 1.0


@pytest.mark.parametrize("motion", [True, False])
def test_the_header_says_whether_motion_frames_may_come(model, motion):
    data, _ = encode_clip(regime_clip("static", frames=2), CodecLinkConfig(quality=2, motion=motion), model)
    assert CodecHeader.from_bytes(data).config.motion is motion


def _stream(config: CodecLinkConfig, kinds: list[int], model) -> bytes:
    """A stream whose payload codes ``kinds`` under the receiver's initial kind counts, then zeros."""
    import constriction

    from semcom.link.coding import categorical
    from semcom.link.wire import pack_stream
    from semcom.models.weights import fingerprint

    enc = constriction.stream.queue.RangeEncoder()
    enc.encode(np.array(kinds, np.int32), categorical(np.ones(4)))
    payload = enc.get_compressed().astype(">u4").tobytes() + bytes(64)
    return pack_stream(CodecHeader(config, len(kinds), fingerprint(model)).to_bytes(), payload)


def test_a_motion_frame_with_nothing_to_predict_from_is_refused(model):
    with pytest.raises(WireFormatError, match="frame 0: motion frame before any frame"):
        decode_stream(_stream(CodecLinkConfig(quality=2), [MOTION], model), model)


def test_a_stream_without_motion_cannot_carry_a_motion_frame(model):
    """With the flag clear the kind alphabet has three letters: the same payload decodes as something else or fails,
    and never as a motion frame."""
    data = _stream(CodecLinkConfig(quality=2, motion=False), [MOTION], model)
    try:
        _, rx = decode_stream(data, model)
    except WireFormatError:
        return
    assert len(rx.kind_counts) == 3


def test_the_live_link_carries_motion_frames_and_rolls_a_bad_packet_back(model, pan):
    """Frame by frame over the live link's session objects: motion frames decode to what the sender showed; a
    packet that does not decode leaves the receiver's memory, counts and motion state as they were; a sender
    restored from its state continues with the same bytes."""
    from semcom.live.framing import PacketError
    from semcom.live.schemes import codec_sender, codec_session

    sender = codec_sender(model, CodecLinkConfig(quality=4, tau=0.95))
    session = codec_session(sender.header(), {}, model)
    kinds = []
    for t, frame in enumerate(pan[:8]):
        if t == 5:
            saved = sender.state()
        data, shown, kind = sender.payload(frame)
        kinds.append(kind)
        if t == 6:
            before = session.digest(), {k: v.copy() for k, v in session.rx.extra_state().items()}
            with pytest.raises(PacketError):
                session.on_data(t, data[:4] + bytes(b ^ 0xFF for b in data[4:8]) + data[8:])
            assert session.digest() == before[0]
            after = session.rx.extra_state()
            assert all(np.array_equal(after[k], v) for k, v in before[1].items())
        _, decoded = session.on_data(t, data)
        assert np.array_equal(decoded.frame, shown) and session.digest() == sender.digest()
        if t == 6:
            sixth = data
    assert "motion" in kinds
    again = codec_sender(model, CodecLinkConfig(quality=4, tau=0.95))
    again.restore(saved)
    again.payload(pan[5])
    assert again.payload(pan[6])[0] == sixth


@pytest.mark.parametrize("flag", [[], ["--no-motion"]])
def test_cli_encode_reports_motion_frames_and_decodes(tmp_path, flag):
    import json
    import subprocess
    import sys

    run = lambda *a: subprocess.run([sys.executable, "-m", "semcom.cli", *map(str, a)],  # noqa: E731
                                    capture_output=True, text=True, check=True)
    out = json.loads(run("encode", "low_motion", "-o", tmp_path / "s.bin", "--frames", 6, "-q", 3, "--json", *flag)
                     .stdout)
    assert out["motion"] is (not flag)
    assert (out["motion_rate"] > 0) is (not flag) and out["motion_rate"] == sum(
        r["kind"] == "motion" for r in out["records"]) / 6
    run("decode", tmp_path / "s.bin", "-o", tmp_path / "out")
    assert len(list((tmp_path / "out").glob("*.png"))) == 6


def test_a_state_without_the_motion_arrays_is_refused_in_one_line(model):
    from semcom.errors import SemcomError
    from semcom.live.schemes import codec_sender

    sender = codec_sender(model, CodecLinkConfig(quality=2))
    sender.payload(regime_clip("static", frames=1)[0])
    state = sender.state()
    for name in ("tile_counts", "motion_counts", "refine_band_sum"):
        old = {k: v for k, v in state.items() if k != name}
        with pytest.raises(SemcomError, match=name):
            codec_sender(model, CodecLinkConfig(quality=2)).restore(old)


@pytest.mark.parametrize("refine", [True, False])
def test_the_header_says_whether_frames_are_refined(model, refine):
    data, _ = encode_clip(regime_clip("static", frames=2), CodecLinkConfig(quality=2, refine=refine), model)
    assert CodecHeader.from_bytes(data).config.refine is refine


def test_refinement_lifts_the_ceiling_on_texture_and_decodes_bit_exactly(model):
    """At the top quality the learned codec stops near 28 dB on fine texture; the pixel refinement goes well past
    it, the receiver shows the same frames bit for bit, and its refinement statistics equal the sender's."""
    from semcom.metrics import psnr

    frames = regime_clip("high_texture", frames=6)
    plain, tx0 = encode_clip(frames, CodecLinkConfig(quality=8, tau=0.95, refine=False), model)
    refined, tx = encode_clip(frames, CodecLinkConfig(quality=8, tau=0.95), model)
    p0, p1 = psnr(frames, np.stack(tx0.decoded)), psnr(frames, np.stack(tx.decoded))
    assert p1 > p0 + 3.0, (p0, p1)
    out, rx = decode_stream(refined, model)
    assert np.array_equal(out, np.stack(tx.decoded))
    assert all(np.array_equal(v, rx.refinement.state()[k]) for k, v in tx.refinement.state().items())
    assert tx.refinement.frame_counts[1] > 1, "frames were refined"
    from semcom.schemes.codec_link import HEADER_SIZE

    info = sum(r.bits for r in tx.records)  # the refinement's -log2 p is what the coder spends on it too
    assert abs(8 * (len(refined) - HEADER_SIZE - 4) - info) <= 0.01 * info + 64
    # at the lowest quality refinement does not pay: the stream is (almost) the plain one
    low0, _ = encode_clip(frames, CodecLinkConfig(quality=1, tau=0.95, refine=False), model)
    low1, _ = encode_clip(frames, CodecLinkConfig(quality=1, tau=0.95), model)
    assert len(low1) <= len(low0) + 4


def test_cli_no_refine_and_its_misuse(tmp_path):
    import json
    import subprocess
    import sys

    run = lambda *a: subprocess.run([sys.executable, "-m", "semcom.cli", *map(str, a)],  # noqa: E731
                                    capture_output=True, text=True)
    out = run("encode", "static", "-o", tmp_path / "s.bin", "--frames", 2, "-q", 2, "--json", "--no-refine")
    assert out.returncode == 0 and json.loads(out.stdout)["refine"] is False
    bad = run("encode", "static", "-o", tmp_path / "t.bin", "--frames", 2, "-m", "sphere64", "--no-refine")
    assert bad.returncode != 0 and bad.stderr.strip().count("\n") == 0 and "--no-refine" in bad.stderr
