"""Issue 12, item 4: bad input is a one-line ``semcom: error:`` naming the flag or file, or handled correctly."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from semcom.commands._common import MAX_CLIP_FRAMES
from semcom.errors import SourceError, WeightsError
from semcom.link import wire
from semcom.models import load_autoencoder
from semcom.models.weights import shipped_weights_path
from semcom.sources import read_folder
from semcom.sources.resize import scale_to_uint8


def semcom(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "semcom.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("semcom: error:"), proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_the_cli_frame_limit_is_the_stream_limit():
    assert MAX_CLIP_FRAMES == wire.MAX_FRAMES


@pytest.mark.parametrize("flag,value", [("--frames", "1000000000"), ("--frames", "0"), ("--seed", "-1"),
                                        ("--seed", "1099511627776")])
def test_out_of_range_frames_and_seeds_name_their_flag(tmp_path, flag, value):
    out = tmp_path / "s.bin"
    extra = ["--ber", "0.01"] if flag == "--seed" else []  # a seed with a fault flag ended in struct.error
    one_line_error(semcom("encode", "cam_shake", "-m", "sphere64", "-o", out, flag, value, *extra), flag)
    assert not out.exists()


def test_decode_refuses_an_unknown_output_extension_before_writing(tmp_path):
    stream = tmp_path / "s.bin"
    assert semcom("encode", "static", "-m", "sphere64", "-o", stream, "--frames", "4").returncode == 0
    one_line_error(semcom("decode", stream, "-o", tmp_path / "out.xyz"), "out.xyz", "--output")
    assert not (tmp_path / "out.xyz").exists()
    assert semcom("decode", stream, "-o", tmp_path / "frames").returncode == 0
    assert len(list((tmp_path / "frames").glob("*.png"))) == 4


def test_a_link_that_loses_most_frames_says_so_and_exits_non_zero(tmp_path):
    out = tmp_path / "s.bin"
    line = one_line_error(semcom("encode", "static", "-m", "sphere64", "-o", out, "--frames", "6", "--ber", "0.5"),
                          "lost 6 of 6", "--allow-loss")
    assert "nothing written" in line and not out.exists()
    proc = semcom("encode", "static", "-m", "sphere64", "-o", out, "--frames", "6", "--ber", "0.5", "--allow-loss")
    assert proc.returncode == 0 and out.exists()


def _weights_with(tmp_path, **meta):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(shipped_weights_path()), framework="pt") as f:
        old = f.metadata()
    path = tmp_path / "w.safetensors"
    save_file(load_file(str(shipped_weights_path())), str(path), metadata={**old, **meta})
    return path


@pytest.mark.parametrize("meta,words", [({"d": "1000000000"}, "d=1000000000"), ({"d": "65"}, "do not fit"),
                                        ({"height": "30"}, "multiple of 16"), ({"base": "0"}, "base=0")])
def test_weights_metadata_is_checked_before_allocating(tmp_path, meta, words):
    path = _weights_with(tmp_path, **meta)
    with pytest.raises(WeightsError, match=words.replace("=", "=")):
        load_autoencoder(path)


def test_cli_names_bad_weights(tmp_path):
    path = _weights_with(tmp_path, d="1000000000")
    one_line_error(semcom("encode", "static", "-m", "sphere64", "-o", tmp_path / "s.bin", "--weights", path),
                   str(path), "d=")


def test_a_16_bit_png_is_scaled_not_saturated(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode.startswith("I;16")
    frame = next(read_folder(tmp_path, 64, 64))
    expected = np.rint(ramp / 257.0).astype(np.uint8)
    assert np.abs(frame[..., 0].astype(int) - expected).max() <= 1
    assert (frame == 255).mean() < 0.01  # it was 99.7 % saturated


def test_a_float_image_in_0_1_is_scaled(tmp_path):
    Image.fromarray(np.full((64, 64), 0.5, np.float32)).save(tmp_path / "a.tif")
    assert next(read_folder(tmp_path, 64, 64))[0, 0, 0] == 128


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_is_refused_naming_file_and_frame(tmp_path, bad):
    Image.fromarray(np.zeros((64, 64), np.float32)).save(tmp_path / "a.tif")
    img = np.zeros((64, 64), np.float32)
    img[3, 5] = bad
    Image.fromarray(img).save(tmp_path / "b.tif")
    frames = read_folder(tmp_path, 64, 64)
    next(frames)
    with pytest.raises(SourceError, match=r"b\.tif \(frame 1\)"):
        next(frames)
    one_line_error(semcom("encode", tmp_path, "-m", "sphere64", "-o", tmp_path / "s.bin"), "b.tif", "frame 1")


def test_scale_to_uint8():
    assert scale_to_uint8(np.array([0, 257, 65535], np.uint16), "x").tolist() == [0, 1, 255]
    assert scale_to_uint8(np.array([0.0, 1.0]), "x").tolist() == [0, 255]
    assert scale_to_uint8(np.array([0.0, 200.0]), "x").tolist() == [0, 200]
    with pytest.raises(SourceError, match="outside"):
        scale_to_uint8(np.array([-1.0]), "x")
    with pytest.raises(SourceError, match="outside"):
        scale_to_uint8(np.array([70000], np.int32), "x")
