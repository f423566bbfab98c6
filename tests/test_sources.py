"""Frame sources: the eight content regimes, video files and image folders."""

from __future__ import annotations

import wave
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semcom.errors import SemcomError, SourceError
from semcom.sources import (
    DEFAULT_FRAMES,
    REGIMES,
    SCENARIOS,
    Source,
    fit_frame,
    open_source,
    read_folder,
    read_video,
    regime_clip,
    scenario_of,
    write_folder,
    write_video,
)


@lru_cache(maxsize=None)
def clip(name: str, seed: int = 0) -> np.ndarray:
    out = regime_clip(name, seed=seed)
    out.setflags(write=False)
    return out


def frame_mad(c: np.ndarray) -> np.ndarray:
    """Mean absolute difference between consecutive frames, per step."""
    return np.abs(np.diff(c.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10.0 * np.log10(255.0**2 / max(mse, 1e-12))


def one_line_error(excinfo, *needles: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip()
    for needle in needles:
        assert needle in msg, (needle, msg)
    assert isinstance(excinfo.value, SemcomError)
    return msg


# ----------------------------------------------------------------- regimes: API


def test_regimes_and_scenarios_cover_each_other():
    assert len(REGIMES) == 8 and len(set(REGIMES)) == 8
    members = [r for regs in SCENARIOS.values() for r in regs]
    assert sorted(members) == sorted(REGIMES)
    assert scenario_of("illum_change") == "GRADUAL_DRIFT"
    assert scenario_of("static") == "STABLE"
    assert scenario_of("high_texture") == "MODERATE"
    assert scenario_of("scene_change") == "SCENE_CHANGE"
    assert len(set(DEFAULT_FRAMES.values())) > 3  # lengths vary between regimes


@pytest.mark.parametrize("name", REGIMES)
def test_regime_shape_dtype_and_default_length(name):
    c = clip(name)
    t = DEFAULT_FRAMES[name]
    assert 36 <= t <= 80
    assert c.shape == (t, 64, 64, 3) and c.dtype == np.uint8
    # real photographs, not flat fields: every frame has contrast
    assert c.reshape(t, -1).std(axis=1).min() > 10


@pytest.mark.parametrize("name", REGIMES)
def test_regime_is_deterministic_per_seed(name):
    a = regime_clip(name, seed=3, frames=12)
    b = regime_clip(name, seed=3, frames=12)
    c = regime_clip(name, seed=4, frames=12)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(REGIMES),
       height=st.sampled_from(range(16, 129, 16)),
       width=st.sampled_from(range(16, 129, 16)),
       seed=st.integers(0, 2**31 - 1),
       frames=st.integers(1, 10))
def test_regime_any_size_and_seed(name, height, width, seed, frames):
    c = regime_clip(name, seed=seed, frames=frames, height=height, width=width)
    assert c.shape == (frames, height, width, 3) and c.dtype == np.uint8
    assert c.std() > 5


def test_same_content_at_every_size():
    """Motion is relative to the crop window, so a 32x32 render is a downscaled 64x64 one."""
    big = regime_clip("low_motion", seed=1, frames=6, height=64, width=64).astype(np.float32)
    small = regime_clip("low_motion", seed=1, frames=6, height=32, width=32).astype(np.float32)
    pooled = big.reshape(6, 32, 2, 32, 2, 3).mean(axis=(2, 4))
    assert np.abs(pooled - small).mean() < 4.0


# ----------------------------------------------------------------- regimes: behaviour


def test_static_changes_only_by_sensor_noise():
    c = clip("static")
    assert frame_mad(c).max() < 2.0  # sigma-1 noise: about 1.1 grey levels
    assert mad(c[0], c[-1]) < 2.0
    means = c.mean(axis=(1, 2, 3))
    assert np.ptp(means) < 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_motion_ordering(seed):
    static = frame_mad(clip("static", seed)).mean()
    low = frame_mad(clip("low_motion", seed)).mean()
    high = frame_mad(clip("high_motion", seed)).mean()
    assert low > 2.0 * static
    assert high > 3.0 * low
    # low motion keeps most of the view over the clip: first and last frames overlap
    c = clip("low_motion", seed).astype(np.float32)
    assert np.corrcoef(c[0].ravel(), c[-1].ravel())[0, 1] > 0.2 or mad(c[0], c[-1]) < 45
    # high motion covers different content: far-apart frames are very different
    h = clip("high_motion", seed)
    assert max(mad(h[0], h[i]) for i in range(len(h))) > 40


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scene_change_has_a_few_hard_cuts(seed):
    d = frame_mad(clip("scene_change", seed))
    cuts = np.flatnonzero(d > 25)
    assert 2 <= len(cuts) <= 3
    assert np.delete(d, cuts).max() < 12  # within a segment: slight motion only
    assert np.diff(cuts).min() >= 8  # segments are not tiny


@pytest.mark.parametrize("seed", [0, 1])
def test_repetitive_return_revisits_earlier_scenes(seed):
    c = clip("repetitive_return", seed).astype(np.float32)
    t = len(c)
    flat = c.reshape(t, -1)
    dist = np.stack([np.abs(flat - flat[i]).mean(axis=1) for i in range(t)])
    found = False
    for i in range(t):
        for j in range(i + 10, t):
            # a later frame nearly repeats an earlier one although the clip left that scene in between
            if dist[i, j] < 4.0 and dist[i, i + 1:j].max() > 30.0:
                found = True
                break
        if found:
            break
    assert found
    d = frame_mad(c.astype(np.uint8))
    assert (d > 25).sum() >= 4  # several scene switches (A B A C ...)


def test_cam_shake_jitters_around_a_fixed_view():
    c = clip("cam_shake").astype(np.float32)
    d = frame_mad(c.astype(np.uint8))
    assert d.mean() > 5.0 * frame_mad(clip("static")).mean()
    assert d.max() < 30  # no cuts
    mean = c.mean(axis=0).ravel()
    assert min(np.corrcoef(mean, f.ravel())[0, 1] for f in c) > 0.4


def test_high_texture_is_detailed_and_moving():
    def grad(x):
        x = x.astype(np.float32)
        return (np.abs(np.diff(x, axis=1)).mean() + np.abs(np.diff(x, axis=2)).mean()) / 2

    for seed in (0, 1):
        tex = clip("high_texture", seed)
        assert grad(tex) > 1.5 * grad(clip("low_motion", seed))
        assert grad(tex) > 1.5 * grad(clip("illum_change", seed))
        assert frame_mad(tex).mean() > 2.0 * frame_mad(clip("static", seed)).mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_illum_change_drifts_brightness_monotonically(seed):
    c = clip("illum_change", seed)
    means = c.mean(axis=(1, 2, 3))
    drift = means[-1] - means[0]
    assert abs(drift) > 30
    steps = np.diff(means[::4])
    assert (np.sign(steps) == np.sign(drift)).mean() >= 0.9
    # geometry stays put: frame-to-frame change is small
    assert frame_mad(c).max() < 4.0
    assert np.ptp(clip("static", seed).mean(axis=(1, 2, 3))) < 1.0


# ----------------------------------------------------------------- resize


def test_fit_frame_centre_crops_then_resizes():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :50] = (255, 0, 0)
    img[:, 50:150] = (0, 255, 0)
    img[:, 150:] = (0, 0, 255)
    out = fit_frame(img, 32, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    # only the green centre survives (up to filter ringing at the crop edges)
    assert out[..., 1].min() > 220 and out[..., 0].max() < 40 and out[..., 2].max() < 40
    wide = fit_frame(img, 16, 64)  # aspect 4: keep the full width, crop rows
    assert wide.shape == (16, 64, 3)
    assert wide[:, 0, 0].min() > 200 and wide[:, -1, 2].min() > 200
    same = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert np.array_equal(fit_frame(same, 4, 4), same)


# ----------------------------------------------------------------- video files


def test_video_round_trip_mp4(tmp_path):
    frames = regime_clip("low_motion", seed=2, frames=10)
    path = tmp_path / "clip.mp4"
    assert write_video(path, frames, fps=12) == 10
    back = np.stack(list(read_video(path, 64, 64)))
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert psnr(frames, back) > 25.0
    assert len(list(read_video(path, 64, 64, max_frames=4))) == 4
    src = open_source(str(path), frames=7)
    assert isinstance(src, Source) and src.kind == "video" and src.name == "clip.mp4"
    assert len(src) == 7 and src.frames.shape == (7, 64, 64, 3)


def test_video_odd_size_avi_and_resize(tmp_path):
    frames = regime_clip("static", seed=1, frames=5, height=47, width=63)  # odd height and width
    path = tmp_path / "odd.avi"
    assert write_video(path, frames) == 5
    native = np.stack(list(read_video(path, 48, 64)))  # padded to even by repeating the edge
    padded = np.pad(frames, ((0, 0), (0, 1), (0, 1), (0, 0)), mode="edge")
    assert psnr(padded, native) > 25.0
    back = np.stack(list(read_video(path, 32, 32)))
    assert back.shape == (5, 32, 32, 3)
    expect = np.stack([fit_frame(f, 32, 32) for f in padded])
    assert psnr(expect, back) > 25.0


def test_write_video_rejects_bad_input(tmp_path):
    with pytest.raises(SourceError) as e:
        write_video(tmp_path / "x.mp4", [])
    one_line_error(e, "x.mp4")
    with pytest.raises(SourceError) as e:
        write_video(tmp_path / "x.xyz", [np.zeros((8, 8, 3), np.uint8)])
    one_line_error(e, "x.xyz")
    with pytest.raises(SourceError) as e:
        write_video(tmp_path / "y.mp4", [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)])
    one_line_error(e, "y.mp4")


# ----------------------------------------------------------------- image folders


def test_folder_round_trip_is_exact(tmp_path):
    frames = regime_clip("cam_shake", seed=1, frames=5, height=32, width=48)
    folder = tmp_path / "frames"
    assert write_folder(folder, frames) == 5
    assert sorted(p.name for p in folder.iterdir())[0] == "frame_00000.png"
    back = np.stack(list(read_folder(folder, 32, 48)))
    assert np.array_equal(back, frames)
    src = open_source(str(folder), height=32, width=48, frames=3)
    assert src.kind == "folder" and src.name == "frames" and len(src) == 3
    assert np.array_equal(src.frames, frames[:3])
    assert np.array_equal(np.stack(list(src)), frames[:3])


def test_folder_natural_order_and_resize(tmp_path):
    from PIL import Image

    for i in (10, 2, 1):
        Image.fromarray(np.full((20, 30, 3), i * 20, np.uint8)).save(tmp_path / f"img{i}.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    out = list(read_folder(tmp_path, 16, 16))
    assert [int(round(f.mean() / 20)) for f in out] == [1, 2, 10]
    assert all(f.shape == (16, 16, 3) for f in out)


# ----------------------------------------------------------------- open_source


def test_open_source_regime():
    src = open_source("illum_change", height=32, width=32, frames=40, seed=5)
    assert src.kind == "regime" and src.name == "illum_change" and len(src) == 40
    assert src.frames.shape == (40, 32, 32, 3) and src.scenario == "GRADUAL_DRIFT"
    assert np.array_equal(src.frames, regime_clip("illum_change", seed=5, frames=40, height=32, width=32))


# ----------------------------------------------------------------- errors


def test_error_missing_video_file(tmp_path):
    path = str(tmp_path / "missing.mp4")
    with pytest.raises(SourceError) as e:
        read_video(path)
    one_line_error(e, path)
    with pytest.raises(SourceError) as e:
        open_source(path)
    one_line_error(e, path)


def test_error_text_file_named_mp4(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_text("this is not a video\n" * 20)
    with pytest.raises(SourceError) as e:
        read_video(path)
    one_line_error(e, str(path))
    with pytest.raises(SourceError) as e:
        open_source(str(path))
    one_line_error(e, str(path))


def test_error_audio_only_file(tmp_path):
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(800, np.int16).tobytes())
    with pytest.raises(SourceError) as e:
        read_video(path)
    one_line_error(e, str(path), "no video stream")


def test_error_empty_folder(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images here")
    with pytest.raises(SourceError) as e:
        read_folder(folder)
    one_line_error(e, str(folder))
    with pytest.raises(SourceError) as e:
        open_source(str(folder))
    one_line_error(e, str(folder))
    with pytest.raises(SourceError) as e:
        read_folder(tmp_path / "nope")
    one_line_error(e, str(tmp_path / "nope"))


def test_error_undecodable_image(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(SourceError) as e:
        list(read_folder(tmp_path))
    one_line_error(e, str(tmp_path / "a.png"))


def test_error_unknown_regime_and_bad_arguments():
    with pytest.raises(SourceError) as e:
        regime_clip("slow_motion")
    one_line_error(e, "slow_motion", "static")
    with pytest.raises(SourceError) as e:
        open_source("slow_motion")
    one_line_error(e, "no such regime, video file or image folder", "slow_motion")
    with pytest.raises(SourceError) as e:
        scenario_of("slow_motion")
    one_line_error(e, "slow_motion")
    for kwargs in ({"frames": 0}, {"frames": -3}, {"height": 0}, {"width": -1}, {"height": 2.5}):
        with pytest.raises(SourceError) as e:
            regime_clip("static", **kwargs)
        one_line_error(e)
    assert regime_clip("static", frames=1).shape == (1, 64, 64, 3)
