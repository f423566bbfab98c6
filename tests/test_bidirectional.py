"""B-frames: bidirectional prediction (semcom.prediction.bidirectional) and the codec link's groups."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semcom.errors import ConfigError, WireFormatError
from semcom.models.zoo import load_model
from semcom.prediction.bidirectional import BACKWARD, BI, FORWARD, ScaledMotionCoder, bi_prediction, pyramid
from semcom.prediction.global_motion import LIMIT, PARAMS, STEP, inside
from semcom.schemes.codec_link import CodecHeader, CodecLinkConfig, decode_stream, encode_clip, link_stats
from semcom.sources import regime_clip


@pytest.fixture(scope="module")
def model():
    return load_model("hyperprior")


def _k(tx: float = 0.0, ty: float = 0.0) -> np.ndarray:
    k = np.zeros(len(PARAMS), np.int64)
    k[0], k[1] = round(tx / float(STEP[0])), round(ty / float(STEP[1]))
    return k


def test_inside_is_where_a_translation_samples_within_the_frame():
    """A shift of ``t`` pixels samples column ``c`` at ``c + t``: the last ``t`` columns fall outside (closed form)."""
    mask = inside(16, 20, torch.tensor(_k(tx=3.0), dtype=torch.float64) * STEP)
    assert mask[:, :17].all() and not mask[:, 17:].any()
    assert inside(16, 20, torch.zeros(10)).all()


def test_forward_and_backward_are_the_warps_and_bi_their_average():
    rng = np.random.default_rng(0)
    refs = tuple(torch.from_numpy(rng.random((1, 3, 16, 16), dtype=np.float32)) for _ in range(2))
    still = (_k(), _k())
    as_uint8 = lambda t: np.clip(np.rint(t[0].permute(1, 2, 0).numpy() * 255.0), 0, 255)  # noqa: E731
    assert np.array_equal(bi_prediction(FORWARD, refs, (still[0], None)), as_uint8(refs[0]))
    assert np.array_equal(bi_prediction(BACKWARD, refs, (None, still[1])), as_uint8(refs[1]))
    both = bi_prediction(BI, refs, still).astype(float)
    assert np.abs(both - as_uint8((refs[0] + refs[1]) / 2)).max() <= 1


def test_bi_takes_content_that_enters_from_the_reference_that_has_it():
    """Past and future shifted one pixel either way: the frame's first column lies outside the past and its last
    outside the future; (2) takes each from the other reference alone, so every pixel is exact (integer shifts)."""
    rng = np.random.default_rng(1)
    scene = torch.from_numpy(rng.random((1, 3, 16, 24), dtype=np.float32))
    past, future = scene[..., :, 2:22], scene[..., :, 0:20]  # the frame is scene[..., 1:21]
    out = bi_prediction(BI, (past, future), (_k(tx=-1.0), _k(tx=1.0))).astype(float)
    truth = np.rint(scene[0, :, :, 1:21].permute(1, 2, 0).numpy() * 255)
    assert np.abs(out - truth).max() <= 1
    future_alone = bi_prediction(BACKWARD, (past, future), (None, _k(tx=1.0))).astype(float)
    assert np.abs(future_alone[:, -1] - truth[:, -1]).max() > 20  # the future replicates its border there


@pytest.mark.parametrize("n", range(8))
def test_the_pyramid_codes_every_b_frame_once_after_both_its_references(n):
    order = pyramid(n)
    assert sorted(i for i, _, _ in order) == list(range(1, n + 1))
    coded = {0, n + 1}
    for i, lo, hi in order:
        assert lo in coded and hi in coded and lo < i < hi
        assert not any(lo < j < hi for j in coded), "the nearest coded frames on either side"
        coded.add(i)
    assert pyramid(3) == [(2, 0, 4), (1, 0, 2), (3, 2, 4)]


def test_the_motion_prediction_is_linear_in_the_distance():
    coder = ScaledMotionCoder()
    coder.distance = -2
    errors = coder.errors(_k(tx=-3.0))  # 1.5 px per frame, against the past
    coder.update(errors)
    coder.distance = 3
    assert np.array_equal(coder.prediction(), _k(tx=4.5))
    assert coder.information(coder.errors(_k(tx=4.5))) < coder.information(coder.errors(_k(tx=4.0)))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.lists(st.integers(-4 * LIMIT, 4 * LIMIT), min_size=10, max_size=10)),
                min_size=1, max_size=6))
def test_scaled_motions_round_trip_through_the_range_coder(motions):
    import constriction

    tx, rx = ScaledMotionCoder(), ScaledMotionCoder()
    enc = constriction.stream.queue.RangeEncoder()
    for distance, errors in motions:
        tx.distance = distance
        tx.encode(np.array(errors), enc)
        tx.update(np.array(errors))
    dec = constriction.stream.queue.RangeDecoder(enc.get_compressed())
    for distance, errors in motions:
        rx.distance = distance
        got = rx.decode(dec)
        assert np.array_equal(got, errors)
        rx.update(got)
    assert np.array_equal(rx.unit, tx.unit) and np.array_equal(rx.counts, tx.counts)


@pytest.mark.parametrize("frames", [1, 2, 5, 9])
def test_groups_decode_bit_exactly_in_display_order(model, frames):
    """Any clip length (the last group is shorter), frames shown in display order at both ends."""
    clip = regime_clip("high_texture", frames=frames)
    data, tx = encode_clip(clip, CodecLinkConfig(quality=5, tau=0.95, bframes=3), model)
    assert [r.t for r in tx.records] == list(range(frames)) and len(tx.decoded) == frames
    out, rx = decode_stream(data, model)
    assert np.array_equal(out, np.stack(tx.decoded))
    assert rx.memory.digest() == tx.memory.digest() and np.array_equal(rx.mode_counts, tx.mode_counts)
    assert np.array_equal(rx.bi_motion.unit, tx.bi_motion.unit)
    assert rx.bi_refinement.step == pytest.approx(2**0.5 * rx.refinement.step)  # B-frames: a coarser step
    assert CodecHeader.from_bytes(data).config.bframes == 3


def test_b_frames_save_bits_on_a_textured_pan_and_the_count_matches_the_stream(model):
    """On ``high_texture`` the groups take B-frames and cost far less at the same PSNR; the records' information
    adds up to the payload."""
    from semcom.metrics import psnr
    from semcom.schemes.codec_link import HEADER_SIZE

    clip = regime_clip("high_texture", frames=12)
    plain, tx0 = encode_clip(clip, CodecLinkConfig(quality=5, tau=0.95), model)
    grouped, tx = encode_clip(clip, CodecLinkConfig(quality=5, tau=0.95, bframes=3), model)
    assert link_stats(tx.records)["bi_rate"] >= 0.5
    assert len(grouped) < 0.92 * len(plain)  # 12 frames, the first intra: the B-frames save 20-40 % of the rest
    assert psnr(clip, np.stack(tx.decoded)) > psnr(clip, np.stack(tx0.decoded)) - 0.3
    info = sum(r.bits for r in tx.records)
    assert abs(8 * (len(grouped) - HEADER_SIZE - 4) - info) <= 0.01 * info + 64


@pytest.mark.parametrize("regime,quality", [("high_motion", 2), ("high_motion", 5), ("high_texture", 5)])
def test_a_group_is_taken_only_where_it_costs_less(model, regime, quality):
    """One group (five frames): the link's Lagrangian ``bits + lambda 255^2 SSE / 3`` is the lesser of coding the
    four frames as a group and coding each alone, which is the link without B-frames plus a group symbol per frame
    (at most 2 bits each here)."""
    from semcom.frames import to_tensor

    clip = regime_clip(regime, frames=5)
    frames = [to_tensor(f) for f in clip]
    _, plain = encode_clip(clip, CodecLinkConfig(quality=quality, tau=0.95), model)
    _, grouped = encode_clip(clip, CodecLinkConfig(quality=quality, tau=0.95, bframes=3), model)
    assert grouped._lagrangian(frames) <= plain._lagrangian(frames) + 4 * 2.0 + 1e-6


def test_bframes_need_motion_frames():
    with pytest.raises(ConfigError, match="bframes=2 needs motion"):
        from semcom.config import validated

        validated(CodecLinkConfig, bframes=2, motion=False)


def test_a_group_that_runs_past_the_declared_frames_is_refused(model):
    data, tx = encode_clip(regime_clip("high_texture", frames=5), CodecLinkConfig(quality=5, bframes=3), model)
    assert link_stats(tx.records)["bi_rate"] > 0, "frames 1-4 are one group"
    header = CodecHeader.from_bytes(data)
    from semcom.link.wire import pack_stream, stream_payload
    from semcom.schemes.codec_link import HEADER_SIZE

    short = pack_stream(CodecHeader(header.config, 3, header.weights).to_bytes(), stream_payload(data, HEADER_SIZE))
    with pytest.raises(WireFormatError, match="runs past the 3 frames declared"):
        decode_stream(short, model)


def test_cli_encode_takes_bframes_and_the_live_link_refuses_them(tmp_path, model):
    import json
    import subprocess
    import sys

    from semcom.live.schemes import codec_sender

    run = lambda *a: subprocess.run([sys.executable, "-m", "semcom.cli", *map(str, a)],  # noqa: E731
                                    capture_output=True, text=True)
    out = run("encode", "high_texture", "-o", tmp_path / "s.bin", "--frames", 6, "-q", 5, "--json")
    summary = json.loads(out.stdout)
    assert summary["bframes"] == 3 and summary["bi_rate"] > 0, "B-frames are the default of a file"
    assert [r["t"] for r in summary["records"]] == list(range(6))
    assert run("decode", tmp_path / "s.bin", "-o", tmp_path / "out").returncode == 0
    assert len(list((tmp_path / "out").glob("*.png"))) == 6
    none = json.loads(run("encode", "high_texture", "-o", tmp_path / "t.bin", "--frames", 6, "-q", 5, "--json",
                          "--bframes", 0).stdout)
    assert none["bframes"] == 0 and none["bi_rate"] == 0
    plain = json.loads(run("encode", "static", "-o", tmp_path / "u.bin", "--frames", 2, "--json", "--no-motion").stdout)
    assert plain["bframes"] == 0, "no motion frames, no B-frames"
    for bad in (["--bframes", 9], ["-m", "sphere64", "--bframes", 2], ["--scheme", "codebook", "--bframes", 2]):
        res = run("encode", "static", "-o", tmp_path / "v.bin", "--frames", 2, *bad)
        assert res.returncode != 0 and res.stderr.strip().count("\n") == 0 and "bframes" in res.stderr, res.stderr
    with pytest.raises(ConfigError, match="live link codes each frame as it comes"):
        codec_sender(model, CodecLinkConfig(quality=2, bframes=2))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.floats(0.0625, 0.9375, width=32), st.integers(1, 4096), st.sampled_from(["none", "lru"]),
       st.integers(1, 16), st.booleans(), st.booleans(), st.booleans(), st.integers(0, 7), st.integers(1, 1 << 16))
def test_the_header_round_trips_every_config(quality, tau, m_max, policy, tile, motion, refine, inter, bframes,
                                              frames):
    from semcom.config import validated

    bframes = bframes if motion and inter else 0
    config = validated(CodecLinkConfig, quality=quality, tau=tau, m_max=m_max, full_policy=policy, tile=tile,
                       motion=motion, refine=refine, inter=inter, bframes=bframes, height=16, width=16)
    header = CodecHeader(config, frames, b"\x01\x02\x03\x04")
    assert CodecHeader.from_bytes(header.to_bytes()) == header
